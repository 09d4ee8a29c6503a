"""The one block-table builder: every classification family of the zoo is a table of stages.

EfficientNet-B (efficientnet.py), -Lite (efficientnet.py), -EdgeTPU (edgetpu.py) and MobileNetV2
(mobilenet_v2.py) are each a tuple of `BlockArgs` rows, one per stage, plus a few family rules
(activation, squeeze-excite, which of stem / head / first and last repeats scale), decoded by
`build_from_block_table`. Follows the TensorFlow reference builders (tensorflow/tpu
models/official/efficientnet: efficientnet_builder.py, lite/efficientnet_lite_builder.py,
edgetpu/efficientnet_edgetpu_builder.py, efficientnet_model.py), as timm builds the same four
families from block tables: filters round to multiples of 8 and never below 90% of the scaled
value, repeats round up, BatchNorm momentum 0.99 / epsilon 1e-3.

Layer names are the same in every family (naming.py): `stem_*`, then `block{stage}{letter}_*`
(`block2a`, `block2b`, ...), then `top_*`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import tf_keras
from tf_keras import layers

from nlighten_tf.models.naming import block_name

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
DEPTH_DIVISOR = 8
STEM_FILTERS = 32
HEAD_FILTERS = 1280


# Reference initialisers. A fresh instance per layer: one shared unseeded instance would give
# every layer of the same shape identical initial weights.
def conv_initializer() -> tf_keras.initializers.Initializer:
    return tf_keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="normal")


def dense_initializer() -> tf_keras.initializers.Initializer:
    return tf_keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_out", distribution="uniform")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One stage of a block table (the reference's 'r1_k3_s11_e1_i32_o16_se0.25' strings): an
    inverted residual (1x1 expansion, KxK depthwise, optional squeeze-excite, 1x1 projection)
    repeated `repeats` times, the first at `stride`."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int
    se_ratio: float = 0.0
    fused: bool = False  # EdgeTPU: expansion conv KxK, no depthwise
    skip: bool = True  # identity shortcut allowed (EdgeTPU's first block has none)


def round_filters(filters: float, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Scales by width and rounds to a multiple of divisor, never below 90% of the scaled value."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def activation_layer(kind: str, name: str) -> layers.Layer:
    if kind == "relu6":
        return layers.ReLU(6.0, name=name)
    if kind == "relu":
        return layers.ReLU(name=name)
    return layers.Activation(kind, name=name)


def strided_conv(
    x,
    conv: layers.Layer,
    kernel: int,
    stride: int,
    sparse_ready: bool,
    name: str,
):
    """Applies `conv` (created with padding='valid' when a pad is inserted here).

    With sparse_ready, a stride-2 KxK conv gets an explicit symmetric ZeroPadding2D: Keras'
    'same' pads (0, 1) on even inputs, which XNNPACK's sparse subgraph rules reject
    (docs/facts.md, "XNNPACK sparse inference").
    """
    if needs_explicit_padding(kernel, stride, sparse_ready):
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
    return conv(x)


def needs_explicit_padding(kernel: int, stride: int, sparse_ready: bool) -> bool:
    return sparse_ready and stride > 1 and kernel > 1


def conv_padding(kernel: int, stride: int, sparse_ready: bool) -> str:
    return "valid" if needs_explicit_padding(kernel, stride, sparse_ready) else "same"


def batch_norm(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv_bn_act(x, filters, kernel, stride, act, sparse_ready, name, use_act=True):
    conv = layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=conv_padding(kernel, stride, sparse_ready),
        use_bias=False,
        kernel_initializer=conv_initializer(),
        name=f"{name}_conv",
    )
    x = strided_conv(x, conv, kernel, stride, sparse_ready, name)
    x = batch_norm(f"{name}_bn")(x)
    if use_act:
        x = activation_layer(act, f"{name}_act")(x)
    return x


def squeeze_excite(x, filters_in_block: int, expanded: int, se_ratio: float, act: str, name: str):
    """Reference SE: reduce to max(1, int(block_input_filters * ratio)), gate with sigmoid."""
    reduced = max(1, int(filters_in_block * se_ratio))
    se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_squeeze")(x)
    se = layers.Conv2D(reduced, 1, kernel_initializer=conv_initializer(), name=f"{name}_se_reduce")(se)
    se = activation_layer(act, f"{name}_se_act")(se)
    se = layers.Conv2D(expanded, 1, kernel_initializer=conv_initializer(), name=f"{name}_se_expand")(se)
    se = layers.Activation("sigmoid", name=f"{name}_se_gate")(se)
    return layers.Multiply(name=f"{name}_se_excite")([x, se])


def mbconv_block(
    inputs,
    args: BlockArgs,
    act: str,
    drop_rate: float,
    sparse_ready: bool,
    name: str,
    project_padding: str = "same",
):
    """Mobile inverted bottleneck (or its fused variant) exactly as efficientnet_model.py."""
    expanded = args.filters_in * args.expand  # declared input filters, as the reference
    x = inputs
    if args.fused:
        # MBConvBlockWithoutDepthwise: KxK expansion at stride 1, the stride on the 1x1 projection.
        if args.expand != 1:
            x = conv_bn_act(x, expanded, args.kernel, 1, act, sparse_ready, f"{name}_expand")
    else:
        if args.expand != 1:
            x = conv_bn_act(x, expanded, 1, 1, act, sparse_ready, f"{name}_expand")
        dwconv = layers.DepthwiseConv2D(
            args.kernel,
            strides=args.stride,
            padding=conv_padding(args.kernel, args.stride, sparse_ready),
            use_bias=False,
            depthwise_initializer=conv_initializer(),
            name=f"{name}_dwconv",
        )
        x = strided_conv(x, dwconv, args.kernel, args.stride, sparse_ready, f"{name}_dw")
        x = batch_norm(f"{name}_bn")(x)
        x = activation_layer(act, f"{name}_act")(x)
        if args.se_ratio:
            x = squeeze_excite(x, args.filters_in, x.shape[-1], args.se_ratio, act, name)
    project_stride = args.stride if args.fused else 1
    x = layers.Conv2D(
        args.filters_out,
        1,
        strides=project_stride,
        padding=project_padding,
        use_bias=False,
        kernel_initializer=conv_initializer(),
        name=f"{name}_project_conv",
    )(x)
    x = batch_norm(f"{name}_project_bn")(x)
    # The reference compares declared filters; we compare the real input width, which differs
    # from the declared one only in Lite's first block at narrow widths (fixed 32-wide stem).
    if args.skip and args.stride == 1 and inputs.shape[-1] == args.filters_out:
        if drop_rate > 0:
            # Stochastic depth: drop the whole residual branch per example.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def expand_block_table(
    blocks: Sequence[BlockArgs], width: float, depth: float, fix_first_last_repeats: bool
) -> list[list[BlockArgs]]:
    """Scales the table: one list of concrete blocks per stage (first block strided)."""
    stages = []
    for index, stage in enumerate(blocks):
        fixed = fix_first_last_repeats and index in (0, len(blocks) - 1)
        repeats = stage.repeats if fixed else round_repeats(stage.repeats, depth)
        first = dataclasses.replace(
            stage,
            filters_in=round_filters(stage.filters_in, width),
            filters_out=round_filters(stage.filters_out, width),
        )
        rest = dataclasses.replace(first, filters_in=first.filters_out, stride=1, skip=True)
        stages.append([first] + [rest] * (repeats - 1))
    return stages


def block_names(blocks: Sequence[BlockArgs], depth: float = 1.0, fix_first_last_repeats: bool = False) -> list[str]:
    """The block names a table decodes to, in graph order."""
    stages = expand_block_table(blocks, 1.0, depth, fix_first_last_repeats)
    return [block_name(s, r) for s, stage in enumerate(stages) for r in range(len(stage))]


def build_from_block_table(
    *,
    blocks: Sequence[BlockArgs],
    width: float,
    depth: float,
    activation: str,
    use_se: bool,
    fix_stem_head: bool,
    model_name: str,
    input_shape: tuple[int, int, int],
    num_classes: int = 1000,
    include_top: bool = True,
    features_only: bool = False,
    dropout_rate: float = 0.2,
    drop_connect_rate: float = 0.2,
    sparse_ready: bool = False,
    head_filters: int | None = None,
    features_name: str | None = None,
    project_padding: str = "same",
) -> tf_keras.Model:
    """Builds a network of any zoo family from its block table and coefficients: a 3x3 stride-2
    stem, the table's blocks, a 1x1 `top` convolution and the classifier.

    `width` scales filters, `depth` repeats; `fix_stem_head` (Lite) keeps the stem at 32, the
    head at 1280 and the first and last stages' repeats unscaled; `head_filters` overrides the
    head width. `features_only` returns a model (named `features_name`, default
    '<model_name>_features') whose outputs are the stride-8/16/32 feature maps [C3, C4, C5]
    (the last block output at each stride), for detection and segmentation. `project_padding`
    is the 1x1 projections' padding string, 'same' as the reference; a no-op on a 1x1 stride-1
    convolution, but recorded in the Keras config and the .tflite graph.
    """
    if not use_se:
        blocks = [dataclasses.replace(b, se_ratio=0.0) for b in blocks]
    stem_filters = STEM_FILTERS if fix_stem_head else round_filters(STEM_FILTERS, width)
    if head_filters is None:
        head_filters = HEAD_FILTERS if fix_stem_head else round_filters(HEAD_FILTERS, width)

    inputs = layers.Input(shape=input_shape, name="image")
    x = conv_bn_act(inputs, stem_filters, 3, 2, activation, sparse_ready, "stem")

    stages = expand_block_table(blocks, width, depth, fix_first_last_repeats=fix_stem_head)
    total_blocks = sum(len(s) for s in stages)
    taps: dict[int, object] = {}
    stride = 2
    block_index = 0
    for stage_index, stage in enumerate(stages):
        for repeat_index, block in enumerate(stage):
            if block.stride > 1 and stride in (8, 16):
                taps[stride] = x  # the last feature map at this stride
            stride *= block.stride
            # Reference: survival_prob decays linearly with the block index.
            drop_rate = drop_connect_rate * block_index / total_blocks
            name = block_name(stage_index, repeat_index)
            x = mbconv_block(x, block, activation, drop_rate, sparse_ready, name, project_padding)
            block_index += 1
    taps[stride] = x

    if features_only:
        outputs = [taps[8], taps[16], taps[32]]
        return tf_keras.Model(inputs, outputs, name=features_name or f"{model_name}_features")

    x = conv_bn_act(x, head_filters, 1, 1, activation, sparse_ready, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(num_classes, kernel_initializer=dense_initializer(), name="predictions")(x)
    return tf_keras.Model(inputs, x, name=model_name)
