"""Anchor-based detection plumbing: anchors, annotation checks, target assignment, losses, decoding.

Shared by every anchor-based detector head (EfficientDet first). Conventions:

* Box formats are named in `nlighten_tf.boxes`: annotations may come in any
  `keras_cv.bounding_box` format (``"xyxy"``, ``"rel_yxyx"``, ``"xywh"``, ...) and are converted
  with `keras_cv.bounding_box.convert_format`. Internally anchors and decoded boxes are
  ``ANCHOR_FORMAT`` (``"yxyx"``) in absolute pixels, the format TensorFlow's NMS ops use.
* Annotations are keras-cv bounding-box dicts ``{"boxes": [B, M, 4], "classes": [B, M]}``, dense
  with rows of -1 as padding (`keras_cv.bounding_box.to_dense`) or ragged.
* Anchor order (the order of the model's concatenated outputs): level P3..P7, then feature-map
  row, then column, then the anchor at that location: ``scale_octave * len(aspect_ratios) +
  aspect_index`` (google/automl efficientdet ``anchors.py``).
* Training targets are one tensor per image, ``[B, N_anchors, 5]`` = box deltas
  ``(ty, tx, th, tw)`` (automl's FasterRcnnBoxCoder without scale factors) and the class column:
  the class id for a positive anchor, ``BACKGROUND`` (-1) or ``IGNORE`` (-2). Both model outputs
  are compiled against this same tensor (see `compile_losses` and `training_targets`).

Loss and matching follow google/automl efficientdet (``det_model_fn.py``, ``anchors.py``):
sigmoid focal loss (alpha 0.25, gamma 1.5) normalised by the number of positive anchors + 1,
Huber box loss (delta 0.1) normalised by 4 x that number, weighted 50; IoU >= 0.5 positive,
< 0.4 background, ignored between (RetinaNet paper), and every ground-truth box force-matched to
its best anchor (automl's ``force_match_for_each_row``) so that small boxes are never lost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf.boxes import ANCHOR_FORMAT, ANNOTATION_FORMAT, CODER_FORMAT
from nlighten_tf.errors import NlightenError

CLASS_OUTPUT = "class_logits"
BOX_OUTPUT = "box_regression"
BACKGROUND = -1
IGNORE = -2
# automl FasterRcnnBoxCoder guards divisions and logs with this.
_EPSILON = 1e-8
# Boxes may overhang the image border by this fraction of its size (rounding in converters).
_BORDER_TOLERANCE = 1e-3


class AnnotationError(NlightenError, ValueError):
    """Ground-truth boxes or classes that cannot be trained on; the message names the image and
    box indices at fault and what is wrong with them."""


# ---------------------------------------------------------------------------------------------
# Anchors


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """automl ``hparams_config``: levels 3..7, 3 octave scales x 3 aspect ratios per location."""

    min_level: int = 3
    max_level: int = 7
    num_scales: int = 3
    # (width, height) multipliers, automl's convention (not keras-cv's area-preserving ratios).
    aspect_ratios: tuple[tuple[float, float], ...] = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))
    anchor_scale: float = 4.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_level <= self.max_level:
            raise ValueError(f"need 1 <= min_level <= max_level, got {self.min_level}..{self.max_level}")
        if self.num_scales < 1 or not self.aspect_ratios:
            raise ValueError("need at least one scale and one aspect ratio")
        if any(len(r) != 2 or min(r) <= 0 for r in self.aspect_ratios):
            raise ValueError(
                f"aspect_ratios must be positive (width, height) pairs, got {self.aspect_ratios}"
            )
        if self.anchor_scale <= 0:
            raise ValueError(f"anchor_scale must be > 0, got {self.anchor_scale}")

    @property
    def anchors_per_location(self) -> int:
        return self.num_scales * len(self.aspect_ratios)

    @property
    def levels(self) -> range:
        return range(self.min_level, self.max_level + 1)


def feature_sizes(image_shape: Sequence[int], max_level: int) -> list[tuple[int, int]]:
    """(height, width) of the feature map at levels 0..max_level: each level halves, rounding up
    (TF 'SAME' strided convs and pools; automl ``utils.get_feat_sizes``)."""
    height, width = int(image_shape[0]), int(image_shape[1])
    sizes = [(height, width)]
    for _ in range(max_level):
        height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
        sizes.append((height, width))
    return sizes


def generate_anchors(image_shape: Sequence[int], config: AnchorConfig = AnchorConfig()) -> np.ndarray:
    """All anchors of an image, ``[N, 4]`` float32 ``yxyx`` pixels, in the model's output order.

    As automl ``anchors.Anchors``: a level's stride is image size / feature size (2**level when
    the image divides by 2**max_level), anchors are centred on stride/2 + k*stride and their
    base size is ``anchor_scale * stride * 2**(octave / num_scales)`` times the (w, h) ratio.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    sizes = feature_sizes((height, width), config.max_level)
    per_level = []
    for level in config.levels:
        feat_h, feat_w = sizes[level]
        stride_y, stride_x = height / feat_h, width / feat_w
        centre_y = (np.arange(feat_h) + 0.5) * stride_y
        centre_x = (np.arange(feat_w) + 0.5) * stride_x
        cy, cx = np.meshgrid(centre_y, centre_x, indexing="ij")  # [feat_h, feat_w]
        half_sizes = []
        for octave in range(config.num_scales):
            multiplier = config.anchor_scale * 2 ** (octave / config.num_scales)
            for ratio_w, ratio_h in config.aspect_ratios:
                half_sizes.append((multiplier * stride_y * ratio_h / 2, multiplier * stride_x * ratio_w / 2))
        half = np.asarray(half_sizes)  # [A, 2]
        cy, cx = cy[..., None], cx[..., None]  # [feat_h, feat_w, 1]
        boxes = np.stack([cy - half[:, 0], cx - half[:, 1], cy + half[:, 0], cx + half[:, 1]], axis=-1)
        per_level.append(boxes.reshape(-1, 4))
    return np.concatenate(per_level).astype(np.float32)


def num_anchors(image_shape: Sequence[int], config: AnchorConfig = AnchorConfig()) -> int:
    sizes = feature_sizes(image_shape, config.max_level)
    return sum(sizes[level][0] * sizes[level][1] for level in config.levels) * config.anchors_per_location


# ---------------------------------------------------------------------------------------------
# Box coding (automl FasterRcnnBoxCoder, no scale factors)


def _centre_size(boxes):
    from keras_cv import bounding_box

    return tf.unstack(bounding_box.convert_format(boxes, source=ANCHOR_FORMAT, target=CODER_FORMAT), axis=-1)


def encode_boxes(boxes, anchors) -> tf.Tensor:
    """Deltas ``(ty, tx, th, tw)`` of ``yxyx`` boxes relative to ``yxyx`` anchors (broadcasting)."""
    y, x, h, w = _centre_size(boxes)
    ya, xa, ha, wa = _centre_size(tf.cast(anchors, tf.float32))
    ha, wa = ha + _EPSILON, wa + _EPSILON
    h, w = h + _EPSILON, w + _EPSILON
    return tf.stack([(y - ya) / ha, (x - xa) / wa, tf.math.log(h / ha), tf.math.log(w / wa)], axis=-1)


def decode_boxes(deltas, anchors) -> tf.Tensor:
    """Inverse of `encode_boxes`: ``yxyx`` boxes from deltas ``[..., N, 4]`` and anchors ``[N, 4]``."""
    from keras_cv import bounding_box

    ty, tx, th, tw = tf.unstack(tf.cast(deltas, tf.float32), axis=-1)
    ya, xa, ha, wa = _centre_size(tf.cast(anchors, tf.float32))
    centre = tf.stack([ty * ha + ya, tx * wa + xa, tf.exp(th) * ha, tf.exp(tw) * wa], axis=-1)
    return bounding_box.convert_format(centre, source=CODER_FORMAT, target=ANCHOR_FORMAT)


# ---------------------------------------------------------------------------------------------
# Annotation checks


def _per_image(bounding_boxes: Mapping[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes [M, 4], classes [M]) per image, padding rows (class -1) dropped."""
    if not isinstance(bounding_boxes, Mapping) or not {"boxes", "classes"} <= set(bounding_boxes):
        raise AnnotationError(
            "annotations must be a keras-cv bounding-box dict {'boxes': [B, M, 4], 'classes': [B, M]}, "
            f"got {type(bounding_boxes).__name__}"
            + (f" with keys {sorted(bounding_boxes)}" if isinstance(bounding_boxes, Mapping) else "")
        )

    def rows(value) -> list[np.ndarray]:
        if isinstance(value, tf.RaggedTensor):
            return [np.asarray(v, dtype=np.float64) for v in value.to_list()]
        if isinstance(value, list | tuple) and value and not np.isscalar(value[0]):
            return [np.asarray(v, dtype=np.float64) for v in value]
        return list(np.asarray(value, dtype=np.float64))

    boxes, classes = rows(bounding_boxes["boxes"]), rows(bounding_boxes["classes"])
    if len(boxes) != len(classes):
        raise AnnotationError(
            f"annotations hold boxes for {len(boxes)} images but classes for {len(classes)}"
        )
    images = []
    for index, (image_boxes, image_classes) in enumerate(zip(boxes, classes, strict=True)):
        image_boxes = image_boxes.reshape(-1, 4) if image_boxes.size == 0 else image_boxes
        image_classes = image_classes.reshape(-1)
        if image_boxes.ndim != 2 or image_boxes.shape[-1] != 4 or len(image_boxes) != len(image_classes):
            raise AnnotationError(
                f"image {index}: boxes must be [M, 4] with one class per box, "
                f"got boxes {image_boxes.shape} and classes {image_classes.shape}"
            )
        keep = image_classes != -1  # keras-cv dense padding
        images.append((image_boxes[keep], image_classes[keep]))
    return images


def validate_annotations(
    bounding_boxes: Mapping[str, Any],
    image_shape: Sequence[int],
    bounding_box_format: str,
    num_classes: int | None = None,
    allow_empty: bool = False,
) -> None:
    """Raises AnnotationError listing every image/box that cannot be trained on.

    Refused: boxes with a non-finite coordinate, ``ymin >= ymax`` or ``xmin >= xmax`` (also zero
    area), boxes reaching outside the ``image_shape`` image, class ids that are not integers in
    ``[0, num_classes)``, and (unless ``allow_empty``) images without any box: an empty
    annotation is far more often a broken label file than a deliberate background-only image.
    """
    from keras_cv import bounding_box

    height, width = float(image_shape[0]), float(image_shape[1])
    problems: list[str] = []
    for index, (boxes, classes) in enumerate(_per_image(bounding_boxes)):
        if len(boxes) == 0:
            if not allow_empty:
                problems.append(
                    f"image {index} has no boxes (empty annotations); pass allow_empty=True to train "
                    "on it as a background-only image"
                )
            continue
        for j, value in enumerate(classes):
            if value != int(value) or value < 0 or (num_classes is not None and value >= num_classes):
                valid = f"[0, {num_classes})" if num_classes is not None else "non-negative integers"
                problems.append(f"image {index} box {j}: class {value:g} is not in {valid}")
        finite = np.isfinite(boxes).all(axis=-1)
        for j in np.flatnonzero(~finite):
            problems.append(f"image {index} box {j}: non-finite coordinates {boxes[j].tolist()}")
        yxyx = np.asarray(
            bounding_box.convert_format(
                np.where(finite[:, None], boxes, 0.0).astype(np.float32),
                source=bounding_box_format,
                target=ANCHOR_FORMAT,
                image_shape=(int(height), int(width), 3),
            ),
            dtype=np.float64,
        )
        for j in np.flatnonzero(finite):
            ymin, xmin, ymax, xmax = yxyx[j]
            where = (
                f"image {index} box {j} ({bounding_box_format} {boxes[j].tolist()}, "
                f"yxyx pixels [{ymin:g}, {xmin:g}, {ymax:g}, {xmax:g}])"
            )
            if ymin >= ymax or xmin >= xmax:
                problems.append(f"{where}: ymin >= ymax or xmin >= xmax (empty or inverted box)")
            elif (
                ymin < -_BORDER_TOLERANCE * height
                or xmin < -_BORDER_TOLERANCE * width
                or ymax > height * (1 + _BORDER_TOLERANCE)
                or xmax > width * (1 + _BORDER_TOLERANCE)
            ):
                problems.append(f"{where}: outside the {int(height)}x{int(width)} image")
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise AnnotationError(f"{len(problems)} bad annotation(s): {shown}{more}")


# ---------------------------------------------------------------------------------------------
# Target assignment


def encode_targets(
    bounding_boxes: Mapping[str, Any],
    anchors,
    image_shape: Sequence[int],
    bounding_box_format: str,
    num_classes: int | None = None,
    positive_threshold: float = 0.5,
    negative_threshold: float = 0.4,
    force_match: bool = True,
    allow_empty: bool = False,
    validate: bool = True,
) -> tf.Tensor:
    """Per-anchor training targets ``[B, N_anchors, 5]`` (deltas + class column, module doc).

    Each anchor takes the ground-truth box of highest IoU: IoU >= ``positive_threshold`` makes it
    positive, < ``negative_threshold`` background, in between ignored. With ``force_match`` every
    box is also assigned to its best anchor. Eagerly, ``validate`` runs `validate_annotations`
    (clear per-image errors); inside a ``tf.function`` / ``tf.data`` map it adds runtime
    assertions with a shorter message.
    """
    from keras_cv import bounding_box

    if not 0 < negative_threshold <= positive_threshold <= 1:
        raise ValueError(
            "need 0 < negative_threshold <= positive_threshold <= 1, "
            f"got {negative_threshold}, {positive_threshold}"
        )
    eager = tf.executing_eagerly()
    if validate and eager:
        validate_annotations(bounding_boxes, image_shape, bounding_box_format, num_classes, allow_empty)
    dense = bounding_box.to_dense(dict(bounding_boxes))
    boxes = tf.cast(dense["boxes"], tf.float32)
    classes = tf.cast(dense["classes"], tf.float32)
    if boxes.shape.rank != 3:
        raise AnnotationError(f"boxes must be batched [B, M, 4], got shape {boxes.shape}")
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    valid = tf.not_equal(classes, -1.0)  # [B, M]
    image_shape3 = (int(image_shape[0]), int(image_shape[1]), 3)
    boxes = bounding_box.convert_format(
        tf.where(valid[..., None], boxes, 0.0),
        source=bounding_box_format,
        target=ANCHOR_FORMAT,
        image_shape=image_shape3,
    )
    if validate and not eager:
        boxes = _assert_valid(boxes, valid, image_shape3, allow_empty)

    batch = tf.shape(boxes)[0]
    # A dummy invalid column keeps argmax/gather defined for images without boxes.
    boxes = tf.concat([boxes, tf.zeros([batch, 1, 4])], axis=1)
    classes = tf.concat([classes, -tf.ones([batch, 1])], axis=1)
    valid = tf.concat([valid, tf.zeros([batch, 1], tf.bool)], axis=1)

    iou = bounding_box.compute_iou(anchors, boxes, bounding_box_format=ANCHOR_FORMAT)  # [B, N, M+1]
    iou = tf.where(valid[:, None, :], iou, -1.0)
    matched = tf.argmax(iou, axis=-1, output_type=tf.int32)  # [B, N]
    best_iou = tf.reduce_max(iou, axis=-1)
    positive = best_iou >= positive_threshold
    ignored = tf.logical_and(~positive, best_iou >= negative_threshold)
    if force_match:
        num = tf.shape(anchors)[0]
        best_anchor = tf.argmax(iou, axis=1, output_type=tf.int32)  # [B, M+1]
        matchable = tf.logical_and(valid, tf.reduce_max(iou, axis=1) > 0.0)
        forced = (
            tf.one_hot(best_anchor, num, axis=1) * tf.cast(matchable, tf.float32)[:, None, :]
        )  # [B, N, M+1]
        is_forced = tf.reduce_max(forced, axis=-1) > 0
        matched = tf.where(is_forced, tf.argmax(forced, axis=-1, output_type=tf.int32), matched)
        positive = tf.logical_or(positive, is_forced)
        ignored = tf.logical_and(ignored, ~is_forced)

    matched_boxes = tf.gather(boxes, matched, batch_dims=1)  # [B, N, 4]
    matched_boxes = tf.where(positive[..., None], matched_boxes, anchors)  # zero deltas elsewhere
    deltas = encode_boxes(matched_boxes, anchors)
    class_target = tf.where(
        positive,
        tf.gather(classes, matched, batch_dims=1),
        tf.where(ignored, float(IGNORE), float(BACKGROUND)),
    )
    return tf.concat([deltas, class_target[..., None]], axis=-1)


def _assert_valid(boxes, valid, image_shape3, allow_empty):
    height, width = float(image_shape3[0]), float(image_shape3[1])
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    ok = tf.logical_and(ymin < ymax, xmin < xmax)
    ok = tf.logical_and(
        ok, tf.logical_and(ymin >= -_BORDER_TOLERANCE * height, xmin >= -_BORDER_TOLERANCE * width)
    )
    ok = tf.logical_and(
        ok, tf.logical_and(ymax <= height * (1 + _BORDER_TOLERANCE), xmax <= width * (1 + _BORDER_TOLERANCE))
    )
    checks = [
        tf.debugging.assert_equal(
            tf.reduce_all(tf.logical_or(ok, ~valid)),
            True,
            message=f"annotations hold boxes outside the {int(height)}x{int(width)} image or with "
            "ymin >= ymax / xmin >= xmax; run nlighten_tf.models.detection.validate_annotations "
            "on them to see which",
        )
    ]
    if not allow_empty:
        checks.append(
            tf.debugging.assert_equal(
                tf.reduce_all(tf.reduce_any(valid, axis=-1)),
                True,
                message="an image has no boxes (empty annotations); pass allow_empty=True to train on "
                "background-only images",
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(boxes)


def training_targets(labels) -> dict[str, tf.Tensor]:
    """The ``y`` for ``model.fit``: both outputs are scored against the same per-anchor labels."""
    return {CLASS_OUTPUT: labels, BOX_OUTPUT: labels}


def training_dataset(
    dataset: tf.data.Dataset,
    anchors,
    bounding_box_format: str = ANNOTATION_FORMAT,
    allow_empty: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(images, box dict)`` (`nlighten_tf.data.load` of a detection spec) ->
    ``(images, training_targets(encode_targets(...)))`` for ``model.fit``.

    Bad boxes stop the pipeline with `encode_targets`' runtime assertion (inside tf.data the
    per-box message of `validate_annotations` is not available).
    """
    images_spec = dataset.element_spec[0]
    if images_spec.shape.rank != 4 or images_spec.shape[1] is None or images_spec.shape[2] is None:
        raise ValueError(f"expected batched images [B, H, W, C] of a fixed size, got {images_spec.shape}")
    image_shape = (int(images_spec.shape[1]), int(images_spec.shape[2]))
    anchors = tf.constant(np.asarray(anchors, np.float32))

    def encode(images, boxes):
        labels = encode_targets(boxes, anchors, image_shape, bounding_box_format, allow_empty=allow_empty)
        return images, training_targets(labels)

    return dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------------
# Losses


class FocalLoss(tf_keras.losses.Loss):
    """Sigmoid focal loss over all anchors and classes, normalised by (positive anchors + 1).

    ``y_true`` are the ``[B, N, 5]`` labels of `encode_targets` (column 4 is read), ``y_pred``
    the ``[B, N, C]`` class logits. The per-element term is keras-cv's `FocalLoss`; ignored
    anchors contribute nothing. Returns one value per image whose sum is automl's class loss,
    hence the SUM reduction.
    """

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 1.5,
        label_smoothing: float = 0.0,
        name: str = "focal_loss",
        **kwargs,
    ):
        kwargs.setdefault("reduction", tf_keras.losses.Reduction.SUM)
        super().__init__(name=name, **kwargs)
        self.alpha, self.gamma, self.label_smoothing = float(alpha), float(gamma), float(label_smoothing)

    def call(self, y_true, y_pred):
        import keras_cv

        y_pred = tf.convert_to_tensor(y_pred)
        target = tf.cast(y_true[..., 4], tf.int32)
        one_hot = tf.one_hot(target, tf.shape(y_pred)[-1], dtype=y_pred.dtype)  # all-zero for -1 / -2
        per_anchor = keras_cv.losses.FocalLoss(
            alpha=self.alpha,
            gamma=self.gamma,
            from_logits=True,
            label_smoothing=self.label_smoothing,
            reduction="none",
        )(one_hot, y_pred)  # [B, N], summed over classes
        # keras-cv's alpha factor comes out float64 when run eagerly.
        per_anchor = tf.cast(per_anchor, y_pred.dtype)
        per_anchor *= tf.cast(target != IGNORE, per_anchor.dtype)
        positives = tf.reduce_sum(tf.cast(target >= 0, per_anchor.dtype))
        return tf.reduce_sum(per_anchor, axis=-1) / (positives + 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "gamma": self.gamma,
            "label_smoothing": self.label_smoothing,
        }


class BoxLoss(tf_keras.losses.Loss):
    """Huber loss (delta 0.1) on the deltas of positive anchors, normalised by 4 (positives + 1).

    ``y_true`` are the ``[B, N, 5]`` labels of `encode_targets`, ``y_pred`` the ``[B, N, 4]``
    box regressions. One value per image; SUM reduction gives automl's box loss.
    """

    def __init__(self, delta: float = 0.1, name: str = "box_loss", **kwargs):
        kwargs.setdefault("reduction", tf_keras.losses.Reduction.SUM)
        super().__init__(name=name, **kwargs)
        self.delta = float(delta)

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        y_true = tf.cast(y_true, y_pred.dtype)
        positive = tf.cast(y_true[..., 4] >= 0, y_pred.dtype)
        error = tf.abs(y_true[..., :4] - y_pred)
        quadratic = tf.minimum(error, self.delta)
        huber = 0.5 * quadratic**2 + self.delta * (error - quadratic)  # [B, N, 4]
        per_anchor = tf.reduce_sum(huber, axis=-1) * positive
        positives = tf.reduce_sum(positive)
        return tf.reduce_sum(per_anchor, axis=-1) / (4.0 * (positives + 1.0))

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


def compile_losses(
    alpha: float = 0.25, gamma: float = 1.5, delta: float = 0.1, box_loss_weight: float = 50.0
) -> dict[str, dict[str, Any]]:
    """``model.compile(optimizer, **compile_losses())`` for a detector with our two outputs."""
    return {
        "loss": {CLASS_OUTPUT: FocalLoss(alpha, gamma), BOX_OUTPUT: BoxLoss(delta)},
        "loss_weights": {CLASS_OUTPUT: 1.0, BOX_OUTPUT: box_loss_weight},
    }


def detection_loss(
    labels,
    class_logits,
    box_regression,
    alpha: float = 0.25,
    gamma: float = 1.5,
    delta: float = 0.1,
    box_loss_weight: float = 50.0,
) -> dict[str, tf.Tensor]:
    """The same losses for a custom training loop: ``{"loss", "class_loss", "box_loss"}`` scalars."""
    class_loss = FocalLoss(alpha, gamma)(labels, class_logits)
    box_loss = BoxLoss(delta)(labels, box_regression)
    return {"loss": class_loss + box_loss_weight * box_loss, "class_loss": class_loss, "box_loss": box_loss}


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_detections(
    class_logits,
    box_regression,
    anchors,
    image_shape: Sequence[int],
    bounding_box_format: str = ANCHOR_FORMAT,
    iou_threshold: float = 0.5,
    confidence_threshold: float = 0.05,
    max_detections: int = 100,
    max_detections_per_class: int = 100,
) -> dict[str, tf.Tensor]:
    """Boxes clipped to the image, then keras-cv's `MultiClassNonMaxSuppression`.

    Returns a keras-cv bounding-box dict: ``boxes`` ``[B, max_detections, 4]`` in
    ``bounding_box_format``, ``confidence`` (sigmoid scores), ``classes``, ``num_detections``
    ``[B]``; rows past ``num_detections`` are -1. The dict feeds `keras_cv.metrics.BoxCOCOMetrics`
    (COCO mAP; needs pycocotools) as ``y_pred``.
    """
    import keras_cv

    height, width = float(image_shape[0]), float(image_shape[1])
    boxes = decode_boxes(box_regression, anchors)
    boxes = tf.minimum(tf.maximum(boxes, 0.0), [height, width, height, width])
    image_shape3 = (int(height), int(width), 3)
    boxes = keras_cv.bounding_box.convert_format(
        boxes, source=ANCHOR_FORMAT, target=bounding_box_format, image_shape=image_shape3
    )
    nms = keras_cv.layers.MultiClassNonMaxSuppression(
        bounding_box_format=bounding_box_format,
        from_logits=True,
        iou_threshold=iou_threshold,
        confidence_threshold=confidence_threshold,
        max_detections=max_detections,
        max_detections_per_class=max_detections_per_class,
    )
    return nms(boxes, tf.cast(class_logits, tf.float32), image_shape=image_shape3)


def prior_probability_bias(probability: float = 0.01) -> float:
    """Initial class-logit bias so every anchor starts at ``probability`` (RetinaNet, automl)."""
    return -math.log((1 - probability) / probability)
