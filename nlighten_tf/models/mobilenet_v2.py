"""MobileNetV2 (Sandler et al. 2018) with a width multiplier, built sparse-ready by default.

Same topology as Keras applications' MobileNetV2 but with BatchNorm momentum 0.99 (Keras
uses 0.999, whose moving statistics stay near their initial values in short CPU trainings
and collapse evaluation to chance; docs/facts.md, "Measured on this project's machines") and, with sparse_ready, symmetric
ZeroPadding2D + 'valid' on stride-2 convs so the TFLite graph meets XNNPACK's sparse rules.
"""

from __future__ import annotations

import dataclasses

import tf_keras
from tf_keras import layers

from nlighten_tf.models import registry
from nlighten_tf.models.efficientnet import (
    batch_norm,
    conv_bn_act,
    conv_initializer,
    conv_padding,
    dense_initializer,
    round_filters,
    strided_conv,
)


@dataclasses.dataclass(frozen=True)
class InvertedResidual:
    expand: int  # t
    filters: int  # c
    repeats: int  # n
    stride: int  # s


# Table 2 of the MobileNetV2 paper.
MOBILENET_V2_BLOCKS: tuple[InvertedResidual, ...] = (
    InvertedResidual(1, 16, 1, 1),
    InvertedResidual(6, 24, 2, 2),
    InvertedResidual(6, 32, 3, 2),
    InvertedResidual(6, 64, 4, 2),
    InvertedResidual(6, 96, 3, 1),
    InvertedResidual(6, 160, 3, 2),
    InvertedResidual(6, 320, 1, 1),
)


def build_mobilenet_v2(
    input_shape: tuple[int, int, int],
    num_classes: int = 1000,
    width_multiplier: float = 1.0,
    include_top: bool = True,
    features_only: bool = False,
    dropout_rate: float = 0.2,
    drop_connect_rate: float = 0.0,
    sparse_ready: bool = True,
) -> tf_keras.Model:
    """MobileNetV2; `features_only` returns the stride-8/16/32 maps [C3, C4, C5]."""
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    act = "relu6"
    inputs = layers.Input(shape=input_shape, name="image")
    x = conv_bn_act(inputs, round_filters(32, width_multiplier), 3, 2, act, sparse_ready, "stem")

    total_blocks = sum(b.repeats for b in MOBILENET_V2_BLOCKS)
    taps: dict[int, object] = {}
    stride = 2
    block_index = 0
    for stage in MOBILENET_V2_BLOCKS:
        filters_out = round_filters(stage.filters, width_multiplier)
        for repeat in range(stage.repeats):
            block_stride = stage.stride if repeat == 0 else 1
            if block_stride > 1 and stride in (8, 16):
                taps[stride] = x
            stride *= block_stride
            name = f"block{block_index}"
            filters_in = x.shape[-1]
            y = x
            if stage.expand != 1:
                y = conv_bn_act(y, filters_in * stage.expand, 1, 1, act, sparse_ready, f"{name}_expand")
            dwconv = layers.DepthwiseConv2D(
                3,
                strides=block_stride,
                padding=conv_padding(3, block_stride, sparse_ready),
                use_bias=False,
                depthwise_initializer=conv_initializer(),
                name=f"{name}_dwconv",
            )
            y = strided_conv(y, dwconv, 3, block_stride, sparse_ready, f"{name}_dw")
            y = batch_norm(f"{name}_bn")(y)
            y = layers.ReLU(6.0, name=f"{name}_act")(y)
            y = layers.Conv2D(
                filters_out, 1, use_bias=False, kernel_initializer=conv_initializer(), name=f"{name}_project_conv"
            )(y)
            y = batch_norm(f"{name}_project_bn")(y)
            if block_stride == 1 and filters_in == filters_out:
                rate = drop_connect_rate * block_index / total_blocks
                if rate > 0:
                    y = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(y)
                y = layers.Add(name=f"{name}_add")([x, y])
            x = y
            block_index += 1
    taps[stride] = x
    if features_only:
        return tf_keras.Model(inputs, [taps[8], taps[16], taps[32]], name="mobilenet_v2_features")

    # The paper keeps the 1280-wide head for multipliers below 1.
    head = round_filters(1280, width_multiplier) if width_multiplier > 1.0 else 1280
    x = conv_bn_act(x, head, 1, 1, act, sparse_ready, "top")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        x = layers.Dense(num_classes, kernel_initializer=dense_initializer(), name="predictions")(x)
    return tf_keras.Model(inputs, x, name=f"mobilenet_v2_{width_multiplier:g}")


registry.register(
    registry.ModelInfo(
        name="mobilenet_v2",
        family="mobilenet_v2",
        default_resolution=224,
        default_num_classes=1000,
        preprocessing="mobilenet",
        published=registry.PublishedFigures(3.50e6, 1000, 0.30e9, 71.8, "MobileNetV2 paper, Table 4"),
        builder=build_mobilenet_v2,
        fixed_options={},
    )
)
