"""Dense-prediction heads on any backbone's C3..C5 taps: LR-ASPP segmentation and
CenterNet/PoseNet-style key points, with their targets, losses, decoding and metrics.

Backbones: every registry classifier whose builder takes ``features_only`` (EfficientNet-B/Lite,
EfficientNet-EdgeTPU, MobileNetV2) gives C3, C4, C5 at strides 8, 16, 32. Input height and width
must be multiples of 32, so every 2x upsampling lands exactly on the next tap (no crops).

Segmentation head: LR-ASPP (Howard et al., "Searching for MobileNetV3", Sec. 6.3) with the global
pooling gate of the TF Model Garden implementation, plus a C4 skip::

    x = ReLU(BN(1x1(C5)))  *  sigmoid(1x1(GlobalAvgPool(C5)))       stride 32
    x = ReLU(up2(x) + BN(1x1(C4)))                                  stride 16
    logits = 1x1(up2(x)) + 1x1(C3)                                  stride 8
    logits = up(logits, 8 / output_stride)                          bilinear, to the output stride

Key-point head: the same top-down path (C5 -> C4 -> C3, then optionally one more 2x to stride 4),
a 3x3 depthwise + 1x1 conv, then a per-key-point heat map (sigmoid, CenterNet's -2.19 prior bias)
and two offset channels (dx, dy in cells, interleaved per key point). A key point at pixel (x, y)
(pixel-edge coordinates, as the boxes of `nlighten_tf.data.shapes`) peaks at cell
(floor(x / s), floor(y / s)) with offset (x / s - floor(x / s), ...); `decode_keypoints` inverts
this exactly.

Every layer is a standard Keras layer TFMOT wraps: UpSampling2D (bilinear) converts to
RESIZE_BILINEAR, GlobalAveragePooling2D to MEAN, the gate to LOGISTIC + MUL (``Multiply`` gets
`nlighten_tf.optimize.quantize`'s output-only QAT config); all are on the Edge TPU's op list, with
constant sizes and batch 1 in exported files (see docs/models.md for what maps and the caveats).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import layers

# The backbone families `_register` looks up while this module loads.
from nlighten_tf.models import edgetpu, efficientnet, mobilenet_v2, registry  # noqa: F401
from nlighten_tf.models.block_table import batch_norm, conv_initializer

SEGMENTATION_OUTPUT = "segmentation_logits"
HEATMAP_OUTPUT = "heatmaps"
OFFSET_OUTPUT = "offsets"
OUTPUT_STRIDES = (1, 2, 4, 8)  # segmentation logits
KEYPOINT_STRIDES = (4, 8)
HEATMAP_PRIOR_BIAS = -2.19  # CenterNet: sigmoid(-2.19) = 0.1, a low initial heat everywhere
FOCAL_EPSILON = 1e-4  # CenterNet clamps heat-map probabilities to [1e-4, 1 - 1e-4]
# Backbone builder options the heads set themselves.


# ---------------------------------------------------------------------------------------------
# Shared pieces


def backbone_names() -> list[str]:
    """Registry names that can carry a head (builders with ``features_only``)."""
    return [n for n in registry.names() if "features_only" in registry.info(n).options]


def _dense_input_shape(input_shape: Any) -> tuple[int, int, int]:
    height, width, channels = registry.validate_input_shape(input_shape)
    if height % 32 or width % 32:
        raise ValueError(
            f"input_shape {tuple(input_shape)!r}: height and width must be multiples of 32 for a dense "
            "head (the C5 tap is at stride 32 and each 2x upsampling must land on the next tap)"
        )
    return height, width, channels


def _backbone(
    backbone: str,
    input_shape: tuple[int, int, int],
    backbone_weights: str | None,
    backbone_options: Mapping[str, Any] | None,
) -> tf_keras.Model:
    valid = backbone_names()
    if backbone not in valid:
        raise ValueError(
            f"backbone {backbone!r} has no features_only taps; valid backbones: {', '.join(valid)}"
        )
    return registry.build_feature_taps(backbone, input_shape, backbone_weights, backbone_options, "the head")


def _conv_bn_relu(x, filters: int, name: str):
    x = layers.Conv2D(filters, 1, use_bias=False, kernel_initializer=conv_initializer(), name=f"{name}_conv")(
        x
    )
    x = batch_norm(f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _top_down(c4, c5, filters: int, name: str):
    """LR-ASPP's gated C5 branch brought to stride 8 through a C4 skip."""
    x = _conv_bn_relu(c5, filters, f"{name}_c5")
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(c5)
    gate = layers.Conv2D(filters, 1, kernel_initializer=conv_initializer(), name=f"{name}_gate_conv")(gate)
    gate = layers.Activation("sigmoid", name=f"{name}_gate")(gate)
    x = layers.Multiply(name=f"{name}_gated")([x, gate])
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up16")(x)
    skip = layers.Conv2D(
        filters, 1, use_bias=False, kernel_initializer=conv_initializer(), name=f"{name}_c4_conv"
    )(c4)
    skip = batch_norm(f"{name}_c4_bn")(skip)
    x = layers.Add(name=f"{name}_c4_add")([x, skip])
    x = layers.ReLU(name=f"{name}_c4_relu")(x)
    return layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up8")(x)


# ---------------------------------------------------------------------------------------------
# Segmentation


def build_segmenter(
    backbone: str = "efficientnet_lite0",
    num_classes: int = 21,
    input_shape: Sequence[int] = (224, 224, 3),
    head_filters: int = 128,
    output_stride: int = 1,
    backbone_weights: str | None = None,
    backbone_options: Mapping[str, Any] | None = None,
) -> tf_keras.Model:
    """LR-ASPP segmenter: logits ``[B, H / output_stride, W / output_stride, num_classes]``
    (output `SEGMENTATION_OUTPUT`). ``output_stride`` 1 gives logits at input resolution (one
    bilinear 8x resize of the stride-8 logits); 8 skips the resize (resize outside the model)."""
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2 (background + at least one class), got {num_classes}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    if int(head_filters) < 1:
        raise ValueError(f"head_filters must be >= 1, got {head_filters}")
    input_shape = _dense_input_shape(input_shape)
    features = _backbone(backbone, input_shape, backbone_weights, backbone_options)
    c3, c4, c5 = features.outputs
    x = _top_down(c4, c5, int(head_filters), "seg")
    high_logits = layers.Conv2D(
        num_classes, 1, kernel_initializer=conv_initializer(), name="seg_high_logits"
    )(x)
    low_logits = layers.Conv2D(num_classes, 1, kernel_initializer=conv_initializer(), name="seg_low_logits")(
        c3
    )
    name = SEGMENTATION_OUTPUT if output_stride == 8 else "seg_logits_s8"
    logits = layers.Add(name=name)([high_logits, low_logits])
    if output_stride != 8:
        logits = layers.UpSampling2D(8 // output_stride, interpolation="bilinear", name=SEGMENTATION_OUTPUT)(
            logits
        )
    return tf_keras.Model(features.inputs, logits, name=f"lraspp_{backbone}")


def validate_masks(
    masks: np.ndarray,
    num_classes: int,
    image_shape: Sequence[int] | None = None,
    ignore_label: int | None = None,
) -> np.ndarray:
    """Checks integer class masks ``[N, H, W]`` (or ``[N, H, W, 1]``) and returns them as
    ``[N, H, W]`` int32. ``image_shape``: the images' ``[N, H, W, C]`` (or ``(H, W)``) the masks
    must match. Values must lie in ``[0, num_classes)`` or equal ``ignore_label``."""
    masks = np.asarray(masks)
    if masks.ndim == 4 and masks.shape[-1] == 1:
        masks = masks[..., 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W] (or [N, H, W, 1]) class ids, got shape {masks.shape}")
    if not (np.issubdtype(masks.dtype, np.integer) or np.array_equal(masks, np.round(masks))):
        raise ValueError(f"masks must hold integer class ids, got {masks.dtype} values with fractions")
    if image_shape is not None:
        image_shape = tuple(int(d) for d in image_shape)
        expected = image_shape[1:3] if len(image_shape) == 4 else image_shape[:2]
        if masks.shape[1:3] != expected:
            raise ValueError(
                f"masks are {masks.shape[1]}x{masks.shape[2]} but the images are {expected[0]}x{expected[1]}"
            )
        if len(image_shape) == 4 and masks.shape[0] != image_shape[0]:
            raise ValueError(f"{masks.shape[0]} masks for {image_shape[0]} images")
    bad = (masks < 0) | (masks >= num_classes)
    if ignore_label is not None:
        bad &= masks != ignore_label
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        allowed = f"[0, {num_classes})" + (
            f" or the ignore label {ignore_label}" if ignore_label is not None else ""
        )
        raise ValueError(
            f"mask value {masks[index]} at (image, row, column) {index} is outside {allowed}; "
            f"{int(bad.sum())} such pixels"
        )
    return masks.astype(np.int32)


def segmentation_compile_options(num_classes: int, ignore_label: int | None = None) -> dict[str, Any]:
    """``model.compile`` keyword arguments (besides the optimizer) for a segmenter trained on
    ``(images, masks [B, H, W])``: per-pixel cross-entropy on the logits and a mean-IoU metric,
    both skipping ``ignore_label`` pixels. Pass as ``compile_options`` to
    `nlighten_tf.optimize.training.fit` / `quantize.qat`."""
    return {
        "loss": tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_label),
        "metrics": [
            tf_keras.metrics.MeanIoU(
                num_classes, name="mean_iou", sparse_y_pred=False, ignore_class=ignore_label
            )
        ],
    }


def confusion_matrix(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_label: int | None = None
) -> np.ndarray:
    """``[num_classes, num_classes]`` pixel counts (row: true class, column: predicted class).
    ``predictions`` are class ids ``[N, H, W]`` or logits ``[N, H, W, num_classes]``."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if predictions.ndim == labels.ndim + 1:
        if predictions.shape[-1] != num_classes:
            raise ValueError(
                f"logits have {predictions.shape[-1]} channels, expected num_classes={num_classes}"
            )
        predictions = predictions.argmax(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    if predictions.size and (predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(
            f"predicted class ids must lie in [0, {num_classes}), got {predictions.min()}..{predictions.max()}"
        )
    keep = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    labels = validate_masks(
        labels[None] if labels.ndim == 2 else labels, num_classes, ignore_label=ignore_label
    )
    labels = labels.reshape(keep.shape)
    index = labels[keep].astype(np.int64) * num_classes + predictions[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def mean_iou(
    labels: np.ndarray, predictions: np.ndarray, num_classes: int, ignore_label: int | None = None
) -> float:
    """Mean over classes of intersection / union, over the classes present in labels or
    predictions (as ``tf_keras.metrics.MeanIoU``: a class with an empty union is left out)."""
    matrix = confusion_matrix(labels, predictions, num_classes, ignore_label).astype(np.float64)
    intersection = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - intersection
    present = union > 0
    return float((intersection[present] / union[present]).mean()) if present.any() else float("nan")


# ---------------------------------------------------------------------------------------------
# Key points


def build_keypoint_model(
    backbone: str = "efficientnet_lite0",
    num_keypoints: int = 17,
    input_shape: Sequence[int] = (224, 224, 3),
    head_filters: int = 64,
    stride: int = 8,
    backbone_weights: str | None = None,
    backbone_options: Mapping[str, Any] | None = None,
) -> tf_keras.Model:
    """Heat map + offset key-point model. Outputs `HEATMAP_OUTPUT` ``[B, H/s, W/s, K]``
    (sigmoid) and `OFFSET_OUTPUT` ``[B, H/s, W/s, 2K]`` (dx, dy per key point, in cells)."""
    if int(num_keypoints) < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    if stride not in KEYPOINT_STRIDES:
        raise ValueError(f"stride must be one of {KEYPOINT_STRIDES}, got {stride}")
    if int(head_filters) < 1:
        raise ValueError(f"head_filters must be >= 1, got {head_filters}")
    input_shape = _dense_input_shape(input_shape)
    features = _backbone(backbone, input_shape, backbone_weights, backbone_options)
    c3, c4, c5 = features.outputs
    x = _top_down(c4, c5, int(head_filters), "kp")
    low = layers.Conv2D(
        int(head_filters), 1, use_bias=False, kernel_initializer=conv_initializer(), name="kp_c3_conv"
    )(c3)
    x = layers.Add(name="kp_c3_add")([x, batch_norm("kp_c3_bn")(low)])
    x = layers.ReLU(name="kp_c3_relu")(x)
    if stride == 4:
        x = layers.UpSampling2D(2, interpolation="bilinear", name="kp_up4")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, depthwise_initializer=conv_initializer(),
                               name="kp_dw")(x)  # fmt: skip
    x = batch_norm("kp_dw_bn")(x)
    x = _conv_bn_relu(x, int(head_filters), "kp_pw")
    heat = layers.Conv2D(
        num_keypoints, 1, kernel_initializer=conv_initializer(),
        bias_initializer=tf_keras.initializers.Constant(HEATMAP_PRIOR_BIAS), name="kp_heat_logits",
    )(x)  # fmt: skip
    heat = layers.Activation("sigmoid", name=HEATMAP_OUTPUT)(heat)
    offsets = layers.Conv2D(2 * num_keypoints, 1, kernel_initializer=conv_initializer(), name=OFFSET_OUTPUT)(
        x
    )
    return tf_keras.Model(features.inputs, [heat, offsets], name=f"keypoints_{backbone}")


def _as_instances(keypoints: np.ndarray, visible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    keypoints = np.asarray(keypoints, np.float32)
    if keypoints.ndim == 3:
        keypoints = keypoints[:, None]
    if keypoints.ndim != 4 or keypoints.shape[-1] != 2:
        raise ValueError(
            f"keypoints must be [N, K, 2] or [N, instances, K, 2] xy pixels, got shape {keypoints.shape}"
        )
    if visible is None:
        visible = np.ones(keypoints.shape[:-1], bool)
    visible = np.asarray(visible).astype(bool)
    if visible.ndim == 2 and keypoints.shape[1] == 1:
        visible = visible[:, None]
    if visible.shape != keypoints.shape[:-1]:
        raise ValueError(
            f"visible must be {list(keypoints.shape[:-1])} (one flag per key point), got {list(visible.shape)}"
        )
    return keypoints, visible


def validate_keypoints(
    keypoints: np.ndarray, visible: np.ndarray | None, image_size: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Checks ``[N, K, 2]`` (or ``[N, instances, K, 2]``) xy pixel key points and their visibility
    flags: visible points must lie inside the ``(height, width)`` image (pixel edges, so x = width
    is the right border). Returns them as ``[N, instances, K, 2]`` and ``[N, instances, K]``."""
    keypoints, visible = _as_instances(keypoints, visible)
    height, width = (int(d) for d in image_size)
    x, y = keypoints[..., 0], keypoints[..., 1]
    outside = visible & ~(
        (x >= 0) & (x <= width) & (y >= 0) & (y <= height) & np.isfinite(x) & np.isfinite(y)
    )
    if outside.any():
        image, instance, point = (int(i) for i in np.argwhere(outside)[0])
        raise ValueError(
            f"visible key point {point} of instance {instance} in image {image} is at "
            f"({x[image, instance, point]:g}, {y[image, instance, point]:g}), outside the {width}x{height} "
            f"image; mark it invisible or fix it ({int(outside.sum())} such points)"
        )
    return keypoints, visible


def keypoint_targets(
    keypoints: np.ndarray,
    visible: np.ndarray | None,
    image_size: Sequence[int],
    stride: int = 8,
    sigma: float = 1.0,
) -> dict[str, np.ndarray]:
    """Training targets keyed by output name: `HEATMAP_OUTPUT` ``[N, h, w, K]`` Gaussians
    (``sigma`` in cells, exactly 1 at each visible key point's cell, max over instances) and
    `OFFSET_OUTPUT` ``[N, h, w, 3K]``: (dx, dy) per key point, then K masks marking the peaks."""
    if stride not in KEYPOINT_STRIDES:
        raise ValueError(f"stride must be one of {KEYPOINT_STRIDES}, got {stride}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 cells, got {sigma}")
    height, width = (int(d) for d in image_size)
    if height % stride or width % stride:
        raise ValueError(f"image size {height}x{width} is not a multiple of the stride {stride}")
    keypoints, visible = validate_keypoints(keypoints, visible, (height, width))
    n, instances, k, _ = keypoints.shape
    h, w = height // stride, width // stride
    heat = np.zeros((n, h, w, k), np.float32)
    offsets = np.zeros((n, h, w, 3 * k), np.float32)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    for i, j, p in np.argwhere(visible):
        fx, fy = keypoints[i, j, p] / stride
        cx, cy = min(int(fx), w - 1), min(int(fy), h - 1)  # x = width belongs to the last cell
        gauss = np.exp(-((cols - cx) ** 2 + (rows - cy) ** 2) / (2 * sigma**2))
        heat[i, :, :, p] = np.maximum(heat[i, :, :, p], gauss)
        offsets[i, cy, cx, 2 * p : 2 * p + 2] = (fx - cx, fy - cy)
        offsets[i, cy, cx, 2 * k + p] = 1.0
    return {HEATMAP_OUTPUT: heat, OFFSET_OUTPUT: offsets}


def heatmap_focal_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """CenterNet's penalty-reduced focal loss on sigmoid heat maps, per image, normalised by the
    number of peaks (alpha 2, beta 4)."""
    y_true = tf.cast(y_true, y_pred.dtype)
    p = tf.clip_by_value(y_pred, FOCAL_EPSILON, 1 - FOCAL_EPSILON)
    positive = tf.cast(tf.equal(y_true, 1.0), p.dtype)
    pos_loss = positive * tf.square(1 - p) * tf.math.log(p)
    neg_loss = (1 - positive) * tf.pow(1 - y_true, 4) * tf.square(p) * tf.math.log(1 - p)
    peaks = tf.reduce_sum(positive, axis=[1, 2, 3])
    return -tf.reduce_sum(pos_loss + neg_loss, axis=[1, 2, 3]) / tf.maximum(peaks, 1.0)


def offset_l1_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """L1 between predicted and true (dx, dy) at the peak cells only, per image, per peak."""
    k = tf.shape(y_pred)[-1] // 2
    target, mask = y_true[..., : 2 * k], y_true[..., 2 * k :]
    mask2 = tf.repeat(mask, 2, axis=-1)  # (dx, dy) of key point p sit at channels 2p, 2p + 1
    error = tf.reduce_sum(mask2 * tf.abs(tf.cast(target, y_pred.dtype) - y_pred), axis=[1, 2, 3])
    return error / tf.maximum(tf.reduce_sum(mask, axis=[1, 2, 3]), 1.0)


def keypoint_compile_options(offset_weight: float = 1.0) -> dict[str, Any]:
    """``model.compile`` keyword arguments (besides the optimizer) for a key-point model trained
    on ``(images, keypoint_targets(...))``."""
    return {
        "loss": {HEATMAP_OUTPUT: heatmap_focal_loss, OFFSET_OUTPUT: offset_l1_loss},
        "loss_weights": {HEATMAP_OUTPUT: 1.0, OFFSET_OUTPUT: float(offset_weight)},
    }


def decode_keypoints(heatmaps: np.ndarray, offsets: np.ndarray, stride: int) -> np.ndarray:
    """``[N, K, 3]`` (x, y, score) per key point per image: the hottest cell of each heat map
    (first in row-major order on ties) moved by its offset, in input pixels; score = its heat."""
    heatmaps, offsets = np.asarray(heatmaps, np.float32), np.asarray(offsets, np.float32)
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps must be [N, h, w, K], got shape {heatmaps.shape}")
    n, h, w, k = heatmaps.shape
    if offsets.shape != (n, h, w, 2 * k):
        raise ValueError(
            f"offsets must be [N, h, w, 2K] = {[n, h, w, 2 * k]} for these heatmaps, got {list(offsets.shape)}"
        )
    flat = heatmaps.reshape(n, h * w, k).argmax(axis=1)  # [N, K]
    cy, cx = np.divmod(flat, w)
    images, points = np.arange(n)[:, None], np.arange(k)[None, :]
    dx = offsets[images, cy, cx, 2 * points]
    dy = offsets[images, cy, cx, 2 * points + 1]
    score = heatmaps[images, cy, cx, points]
    return np.stack([(cx + dx) * stride, (cy + dy) * stride, score], axis=-1).astype(np.float32)


def pck(
    predicted: np.ndarray,
    truth: np.ndarray,
    visible: np.ndarray | None,
    reference: float | np.ndarray,
    alpha: float = 0.1,
) -> float:
    """Percentage of correct key points: the fraction of visible true key points ``[N, K, 2]``
    with a prediction (``[N, K, 2+]``, extra columns such as the score ignored) within
    ``alpha * reference`` pixels. ``reference``: one length or one per image, e.g. the object's
    longest box side (PCK@alpha of a box) or the image size."""
    truth = np.asarray(truth, np.float32)
    predicted = np.asarray(predicted, np.float32)
    if truth.ndim != 3 or truth.shape[-1] != 2:
        raise ValueError(f"truth must be [N, K, 2] xy pixels, got shape {truth.shape}")
    if predicted.shape[:2] != truth.shape[:2] or predicted.ndim != 3 or predicted.shape[-1] < 2:
        raise ValueError(
            f"predicted must be [N, K, 2 or 3] matching truth {truth.shape}, got {predicted.shape}"
        )
    visible = np.ones(truth.shape[:2], bool) if visible is None else np.asarray(visible).astype(bool)
    if visible.shape != truth.shape[:2]:
        raise ValueError(f"visible must be {list(truth.shape[:2])}, got {list(visible.shape)}")
    if not 0 < alpha:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    reference = np.broadcast_to(np.asarray(reference, np.float32).reshape(-1, 1), (len(truth), 1))
    if (reference <= 0).any():
        raise ValueError("reference lengths must be > 0 pixels")
    if not visible.any():
        raise ValueError("no visible key points: PCK is undefined")
    distance = np.linalg.norm(predicted[..., :2] - truth, axis=-1)
    return float((distance <= alpha * reference)[visible].mean())


def keypoint_box_size(keypoints: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """Per image, the longest side of the box around its visible key points ``[N, K, 2]``: the
    usual PCK reference length when no object box is at hand."""
    keypoints = np.asarray(keypoints, np.float32)
    visible = np.ones(keypoints.shape[:2], bool) if visible is None else np.asarray(visible).astype(bool)
    lo = np.where(visible[..., None], keypoints, np.inf).min(axis=1)
    hi = np.where(visible[..., None], keypoints, -np.inf).max(axis=1)
    return np.maximum(hi - lo, 0).max(axis=-1)


# ---------------------------------------------------------------------------------------------
# Registry: `models.build("lraspp_lite0", num_classes=..., input_shape=...)`


def _segmenter_builder(backbone: str):
    def build(
        input_shape: tuple[int, int, int],
        num_classes: int = 21,
        head_filters: int = 128,
        output_stride: int = 1,
        backbone_weights: str | None = None,
        backbone_options: Mapping[str, Any] | None = None,
    ) -> tf_keras.Model:
        return build_segmenter(
            backbone,
            num_classes,
            input_shape,
            head_filters,
            output_stride,
            backbone_weights,
            backbone_options,
        )

    return build


def _keypoint_builder(backbone: str):
    def build(
        input_shape: tuple[int, int, int],
        num_classes: int = 17,
        head_filters: int = 64,
        stride: int = 8,
        backbone_weights: str | None = None,
        backbone_options: Mapping[str, Any] | None = None,
    ) -> tf_keras.Model:
        """num_classes: the number of key points (the registry's name for output channels)."""
        return build_keypoint_model(
            backbone, num_classes, input_shape, head_filters, stride, backbone_weights, backbone_options
        )

    return build


# name -> backbone. 21 classes (PASCAL VOC) and 17 key points (COCO persons) by default.
SEGMENTERS = {
    "lraspp_lite0": "efficientnet_lite0",
    "lraspp_edgetpu_s": "efficientnet_edgetpu_s",
    "lraspp_mobilenet_v2": "mobilenet_v2",
}
KEYPOINT_MODELS = {
    "keypoints_lite0": "efficientnet_lite0",
    "keypoints_mobilenet_v2": "mobilenet_v2",
}


def _register() -> None:
    for task, table, classes, make in (
        ("segmentation", SEGMENTERS, 21, _segmenter_builder),
        ("keypoints", KEYPOINT_MODELS, 17, _keypoint_builder),
    ):
        for name, backbone in table.items():
            backbone_info = registry.info(backbone)
            registry.register(
                registry.ModelInfo(
                    name=name,
                    family=task,
                    default_resolution=backbone_info.default_resolution,
                    default_num_classes=classes,
                    preprocessing=backbone_info.preprocessing,
                    published=None,
                    builder=make(backbone),
                    fixed_options={},
                    task=task,
                )
            )


_register()
