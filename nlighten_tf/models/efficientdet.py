"""EfficientDet-D0..D2 and EfficientDet-Lite0..4: BiFPN + shared class/box nets on EfficientNet.

Follows google/automl ``efficientdet`` (``hparams_config.py``, ``efficientdet_keras.py``,
``fpn_configs.py``) layer for layer, so parameter counts match the published ones:

* Backbone: EfficientNet-B (swish, SE) or -Lite (ReLU6, no SE) from this package's registry with
  ``features_only=True``: taps C3, C4, C5 (strides 8, 16, 32; no 1280-wide head).
* P6 = max-pool(BN(1x1 conv(C5))), P7 = max-pool(P6): 3x3 stride-2 'same' pools.
* BiFPN cells (``fpn_cell_repeats``): top-down nodes P6..P3 fuse (P_l, up(P_l+1)), bottom-up
  nodes P4..P7 fuse (P_l, td_l, down(out_l-1)) (P7: (P7, down(out6))). An input whose width is
  not ``fpn_num_filters`` (backbone taps, first cell only) gets its own 1x1 conv + BN per node.
  Up = nearest 2x upsampling (cropped when the level above was rounded up), down = max-pool.
  Fusion: fast normalised weighted fusion (``"fastattn"``, sum relu(w_i) x_i / (sum relu(w) +
  1e-4)) for D, a plain ``Add`` (``"sum"``) for Lite. After fusion: activation, separable conv
  (3x3 depthwise + 1x1 pointwise with bias), BatchNorm.
* Class and box nets: ``box_class_repeats`` x (separable conv -> BN -> activation), then a
  separable conv to ``anchors x classes`` (bias at the 0.01 prior) or ``anchors x 4``. The conv
  layers are shared by all five levels (one layer called five times), the BatchNorms are per
  level, as in automl.

Separable convs are built as ``DepthwiseConv2D`` + 1x1 ``Conv2D`` (same parameters as Keras'
``SeparableConv2D``) so pruning and QAT see the standard layers they know, and XNNPACK's sparse
kernels see plain 1x1 convolutions.

Outputs (`detection.CLASS_OUTPUT`, `detection.BOX_OUTPUT`): class logits ``[B, N, num_classes]``
and box deltas ``[B, N, 4]`` over all anchors of P3..P7, in the order of `anchors()` (see
`nlighten_tf.models.detection`). Losses, target encoding and NMS live in `detection`.

Sharing and TFMOT (measured with TFMOT 0.8.1): ``prune_low_magnitude`` and ``cluster_weights``
wrap whole D and Lite models (shared layers are cloned once and stay shared;
``FastNormalizedFusion`` declares no prunable/clusterable weights). ``quantize_model`` refuses
them: its Conv+BatchNorm fold only matches a conv with a single consumer, so the heads'
per-level BatchNorms are lone BatchNorms without a QuantizeConfig, and ``FastNormalizedFusion``
has none either. An output-only config for those layers
(``nlighten_tf.optimize.quantize.OutputQuantizeConfig``) is enough (tests/models/
test_efficientdet.py). ``nlighten_tf.optimize.graph`` (channel pruning) refuses shared layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import layers

from nlighten_tf.models import detection, registry
from nlighten_tf.models.block_table import activation_layer, batch_norm

MIN_LEVEL, MAX_LEVEL = 3, 7
FUSION_EPSILON = 1e-4  # automl fuse_features 'fastattn'
WEIGHT_METHODS = ("fastattn", "sum")
# Backbone builder options the detector sets itself.


@dataclasses.dataclass(frozen=True)
class EfficientDetConfig:
    """One EfficientDet variant (automl ``efficientdet_model_param_dict`` and
    ``efficientdet_lite_param_dict``)."""

    name: str
    backbone: str  # a registry name with features_only support, e.g. "efficientnet_lite0"
    image_size: int
    fpn_num_filters: int
    fpn_cell_repeats: int
    box_class_repeats: int
    activation: str = "swish"
    fpn_weight_method: str = "fastattn"
    anchors: detection.AnchorConfig = detection.AnchorConfig()

    def __post_init__(self) -> None:
        for what in ("image_size", "fpn_num_filters", "fpn_cell_repeats", "box_class_repeats"):
            if int(getattr(self, what)) < 1:
                raise ValueError(f"{self.name}: {what} must be >= 1, got {getattr(self, what)}")
        if self.fpn_weight_method not in WEIGHT_METHODS:
            raise ValueError(
                f"{self.name}: fpn_weight_method must be one of {', '.join(WEIGHT_METHODS)}, "
                f"got {self.fpn_weight_method!r}"
            )
        if (self.anchors.min_level, self.anchors.max_level) != (MIN_LEVEL, MAX_LEVEL):
            raise ValueError(
                f"{self.name}: EfficientDet predicts on levels {MIN_LEVEL}..{MAX_LEVEL}, anchors are "
                f"configured for {self.anchors.min_level}..{self.anchors.max_level}"
            )


@dataclasses.dataclass(frozen=True)
class _Variant:
    config: EfficientDetConfig
    family: str
    published: registry.PublishedFigures


_LITE_ANCHORS = detection.AnchorConfig(anchor_scale=3.0)  # automl lite0..2; lite3/4 keep 4.0


def _d(index, backbone, size, filters, cells, repeats, params, madds, ap):
    return _Variant(
        EfficientDetConfig(
            f"efficientdet_d{index}", backbone, size, filters, cells, repeats, "swish", "fastattn"
        ),
        "efficientdet",
        registry.PublishedFigures(params, 90, madds, None, f"EfficientDet paper, Table 2 (COCO AP {ap})"),
    )


def _lite(index, size, filters, cells, repeats, anchors, params, ap):
    return _Variant(
        EfficientDetConfig(
            f"efficientdet_lite{index}",
            f"efficientnet_lite{index}",
            size,
            filters,
            cells,
            repeats,
            "relu6",
            "sum",
            anchors,
        ),
        "efficientdet_lite",
        registry.PublishedFigures(
            params, 90, None, None, f"automl EfficientDet-Lite README (int8 COCO AP {ap})"
        ),
    )


# (backbone, image size, BiFPN width, BiFPN cells, head repeats) from automl hparams_config;
# published params/MAdds: EfficientDet paper Table 2 and the automl README (docs/facts.md).
VARIANTS: dict[str, _Variant] = {
    v.config.name: v
    for v in (
        _d(0, "efficientnet_b0", 512, 64, 3, 3, 3.9e6, 2.5e9, 34.3),
        _d(1, "efficientnet_b1", 640, 88, 4, 3, 6.6e6, 6.1e9, 40.2),
        _d(2, "efficientnet_b2", 768, 112, 5, 3, 8.1e6, 11e9, 43.5),
        _lite(0, 320, 64, 3, 3, _LITE_ANCHORS, 3.2e6, 25.7),
        _lite(1, 384, 88, 4, 3, _LITE_ANCHORS, 4.3e6, 30.6),
        _lite(2, 448, 112, 5, 3, _LITE_ANCHORS, 5.3e6, 34.0),
        _lite(3, 512, 160, 6, 4, detection.AnchorConfig(), 8.4e6, 37.7),
        _lite(4, 640, 224, 7, 4, detection.AnchorConfig(), 15.2e6, 42.0),
    )
}


def get_config(variant: str | EfficientDetConfig) -> EfficientDetConfig:
    if isinstance(variant, EfficientDetConfig):
        return variant
    try:
        return VARIANTS[variant].config
    except KeyError:
        raise ValueError(f"unknown EfficientDet variant {variant!r}; valid: {', '.join(VARIANTS)}") from None


def anchors(image_size: int | Sequence[int], config: str | EfficientDetConfig) -> np.ndarray:
    """Anchors ``[N, 4]`` (``yxyx`` pixels) matching the outputs of the model built for this size."""
    size = (image_size, image_size) if isinstance(image_size, int | np.integer) else tuple(image_size)[:2]
    return detection.generate_anchors(size, get_config(config).anchors)


# ---------------------------------------------------------------------------------------------
# Layers


@tf_keras.utils.register_keras_serializable("nlighten_tf")
class FastNormalizedFusion(layers.Layer):
    """EfficientDet's fast normalised fusion: ``sum_i relu(w_i) x_i / (sum_j relu(w_j) + eps)``.

    Custom because no standard Keras layer holds one learnable scalar per input. The weights
    start at 1 (a plain average). It declares no prunable or clusterable weights (duck-typed
    ``get_prunable_weights``; registered as a TFMOT ``ClusterableLayer`` when a model using it
    is built), so TFMOT wraps it and leaves it alone.
    """

    def __init__(self, epsilon: float = FUSION_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if not isinstance(input_shape, list | tuple) or len(input_shape) < 2:
            raise ValueError(f"{self.name} fuses a list of at least two tensors, got {input_shape}")
        self.fusion_weights = self.add_weight(
            name="fusion_weights", shape=(len(input_shape),), initializer="ones", trainable=True
        )
        super().build(input_shape)

    def call(self, inputs):
        weights = tf.nn.relu(self.fusion_weights)
        weights = weights / (tf.reduce_sum(weights) + self.epsilon)
        return tf.add_n([weights[i] * tf.cast(x, self.compute_dtype) for i, x in enumerate(inputs)])

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_prunable_weights(self):
        return []

    def get_clusterable_weights(self):
        return []

    def get_clusterable_algorithm(self, weight_name):
        return None

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


_TFMOT_REGISTERED = False


def _register_fusion_with_tfmot() -> None:
    """Makes `FastNormalizedFusion` a (virtual) TFMOT ClusterableLayer; TFMOT is imported only
    when a model that needs it is built."""
    global _TFMOT_REGISTERED
    if not _TFMOT_REGISTERED:
        from tensorflow_model_optimization.python.core.clustering.keras import clusterable_layer

        clusterable_layer.ClusterableLayer.register(FastNormalizedFusion)
        _TFMOT_REGISTERED = True


def _separable_conv(filters: int, name: str, head: bool = False, bias_initializer="zeros"):
    """(depthwise 3x3 without bias, pointwise 1x1 with bias) = Keras SeparableConv2D's weights.

    automl initialises the heads' separable convs with variance scaling and the BiFPN's with
    Keras defaults (Glorot uniform)."""
    init = tf_keras.initializers.VarianceScaling if head else tf_keras.initializers.GlorotUniform
    depthwise = layers.DepthwiseConv2D(
        3, padding="same", use_bias=False, depthwise_initializer=init(), name=f"{name}_dw"
    )
    pointwise = layers.Conv2D(
        filters,
        1,
        use_bias=True,
        kernel_initializer=init(),
        bias_initializer=bias_initializer,
        name=f"{name}_pw",
    )
    return depthwise, pointwise


def _spatial(x) -> tuple[int, int]:
    return int(x.shape[1]), int(x.shape[2])


def _resample(x, from_level: int, to_level: int, size: tuple[int, int], filters: int, name: str):
    """automl ResampleFeatureMap: 1x1 conv + BN when the width differs, then max-pool down or
    nearest-upsample (cropped to the target size) one level."""
    if x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, padding="same", name=f"{name}_conv")(x)
        x = batch_norm(f"{name}_bn")(x)
    if to_level == from_level + 1:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_down")(x)
    elif to_level == from_level - 1:
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_up")(x)
        extra_h, extra_w = _spatial(x)[0] - size[0], _spatial(x)[1] - size[1]
        if extra_h or extra_w:
            x = layers.Cropping2D(((0, extra_h), (0, extra_w)), name=f"{name}_crop")(x)
    elif to_level != from_level:
        raise ValueError(f"BiFPN resamples one level at a time, got P{from_level} -> P{to_level}")
    if _spatial(x) != tuple(size):
        raise ValueError(f"{name}: resampled to {_spatial(x)}, expected {size}")
    return x


def _fuse(inputs, config: EfficientDetConfig, name: str):
    if config.fpn_weight_method == "sum":
        x = layers.Add(name=f"{name}_sum")(inputs)
    else:
        x = FastNormalizedFusion(name=f"{name}_fusion")(inputs)
    x = activation_layer(config.activation, f"{name}_act")(x)
    depthwise, pointwise = _separable_conv(config.fpn_num_filters, f"{name}_conv")
    x = pointwise(depthwise(x))
    return batch_norm(f"{name}_bn")(x)


def _bifpn_cell(feats: dict[int, Any], sizes, config: EfficientDetConfig, cell: int) -> dict[int, Any]:
    filters = config.fpn_num_filters
    top_down = {MAX_LEVEL: feats[MAX_LEVEL]}
    for level in range(MAX_LEVEL - 1, MIN_LEVEL - 1, -1):
        name = f"fpn_cell{cell}_td_p{level}"
        inputs = [
            _resample(feats[level], level, level, sizes[level], filters, f"{name}_in0"),
            _resample(top_down[level + 1], level + 1, level, sizes[level], filters, f"{name}_in1"),
        ]
        top_down[level] = _fuse(inputs, config, name)
    out = {MIN_LEVEL: top_down[MIN_LEVEL]}
    for level in range(MIN_LEVEL + 1, MAX_LEVEL + 1):
        name = f"fpn_cell{cell}_out_p{level}"
        inputs = [_resample(feats[level], level, level, sizes[level], filters, f"{name}_in0")]
        if level < MAX_LEVEL:
            inputs.append(top_down[level])
        inputs.append(
            _resample(out[level - 1], level - 1, level, sizes[level], filters, f"{name}_in{len(inputs)}")
        )
        out[level] = _fuse(inputs, config, name)
    return out


def _head(
    feats: dict[int, Any],
    outputs_per_anchor: int,
    config: EfficientDetConfig,
    name: str,
    output_name: str,
    bias_initializer="zeros",
):
    """automl ClassNet/BoxNet: conv layers shared across levels, BatchNorm per level."""
    num_anchors = config.anchors.anchors_per_location
    convs = [
        _separable_conv(config.fpn_num_filters, f"{name}_conv{i}", head=True)
        for i in range(config.box_class_repeats)
    ]
    predict = _separable_conv(
        num_anchors * outputs_per_anchor, f"{name}_predict", head=True, bias_initializer=bias_initializer
    )
    per_level = []
    for level in range(MIN_LEVEL, MAX_LEVEL + 1):
        x = feats[level]
        for i, (depthwise, pointwise) in enumerate(convs):
            x = pointwise(depthwise(x))
            x = batch_norm(f"{name}_conv{i}_bn_p{level}")(x)
            x = activation_layer(config.activation, f"{name}_conv{i}_act_p{level}")(x)
        x = predict[1](predict[0](x))
        height, width = _spatial(x)
        per_level.append(
            layers.Reshape(
                (height * width * num_anchors, outputs_per_anchor), name=f"{name}_reshape_p{level}"
            )(x)
        )
    return layers.Concatenate(axis=1, name=output_name)(per_level)


# ---------------------------------------------------------------------------------------------
# Builder


def build_efficientdet(
    config: str | EfficientDetConfig,
    num_classes: int = 90,
    input_shape: Sequence[int] | None = None,
    backbone_weights: str | None = None,
    backbone_options: Mapping[str, Any] | None = None,
    fpn_num_filters: int | None = None,
    fpn_cell_repeats: int | None = None,
    box_class_repeats: int | None = None,
) -> tf_keras.Model:
    """Builds an EfficientDet as a functional ``tf_keras.Model`` of standard layers.

    ``config`` is a variant name (`VARIANTS`) or an `EfficientDetConfig`; the ``fpn_*`` and
    ``box_class_repeats`` arguments override it (e.g. to size a detector for a CPU).
    ``input_shape`` defaults to the variant's square image size; any size of at least 32 works
    (levels round up, as TF 'SAME'). ``backbone_weights`` (e.g. ``"imagenet"`` or an ``.h5``
    path) is loaded into the backbone as ``registry.build(backbone, weights=...)`` would;
    ``backbone_options`` go to the backbone builder too (e.g. ``width_coefficient``,
    ``depth_coefficient``, ``sparse_ready``, ``drop_connect_rate``).
    """
    config = get_config(config)
    overrides = {
        k: v
        for k, v in (
            ("fpn_num_filters", fpn_num_filters),
            ("fpn_cell_repeats", fpn_cell_repeats),
            ("box_class_repeats", box_class_repeats),
        )
        if v is not None
    }
    if overrides:
        config = dataclasses.replace(config, **overrides)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if input_shape is None:
        input_shape = (config.image_size, config.image_size, 3)
    input_shape = registry.validate_input_shape(input_shape)
    if config.fpn_weight_method == "fastattn":
        _register_fusion_with_tfmot()

    backbone = registry.build_feature_taps(config.backbone, input_shape, backbone_weights, backbone_options, "the detector")
    sizes = detection.feature_sizes(input_shape, MAX_LEVEL)
    feats = dict(zip((3, 4, 5), backbone.outputs, strict=True))
    for level, tap in feats.items():
        if _spatial(tap) != sizes[level]:
            raise ValueError(
                f"backbone {config.backbone} gives a {_spatial(tap)} C{level}, expected {sizes[level]}"
            )
    feats[6] = _resample(feats[5], 5, 6, sizes[6], config.fpn_num_filters, "p6")
    feats[7] = _resample(feats[6], 6, 7, sizes[7], config.fpn_num_filters, "p7")
    for cell in range(config.fpn_cell_repeats):
        feats = _bifpn_cell(feats, sizes, config, cell)

    class_logits = _head(
        feats,
        num_classes,
        config,
        "class_net",
        detection.CLASS_OUTPUT,
        bias_initializer=tf_keras.initializers.Constant(detection.prior_probability_bias()),
    )
    box_regression = _head(feats, 4, config, "box_net", detection.BOX_OUTPUT)
    return tf_keras.Model(backbone.inputs, [class_logits, box_regression], name=config.name)


# ---------------------------------------------------------------------------------------------
# Registry


def _variant_builder(variant: str):
    def build(
        input_shape: tuple[int, int, int],
        num_classes: int = 90,
        backbone_weights: str | None = None,
        backbone_options: Mapping[str, Any] | None = None,
        fpn_num_filters: int | None = None,
        fpn_cell_repeats: int | None = None,
        box_class_repeats: int | None = None,
    ) -> tf_keras.Model:
        return build_efficientdet(
            variant,
            num_classes,
            input_shape,
            backbone_weights,
            backbone_options,
            fpn_num_filters,
            fpn_cell_repeats,
            box_class_repeats,
        )

    return build


def _preprocessing(backbone: str) -> str:
    return "lite" if "lite" in backbone or "edgetpu" in backbone else "imagenet"


for _name, _variant in VARIANTS.items():
    registry.register(
        registry.ModelInfo(
            name=_name,
            family=_variant.family,
            default_resolution=_variant.config.image_size,
            default_num_classes=90,
            preprocessing=_preprocessing(_variant.config.backbone),
            published=_variant.published,
            builder=_variant_builder(_name),
            fixed_options={},
            task="detection",
        )
    )
