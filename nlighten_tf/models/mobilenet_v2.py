"""MobileNetV2 (Sandler et al. 2018) with a width multiplier, built sparse-ready by default.

A block table decoded by the zoo's one builder (`block_table.build_from_block_table`), as timm's
`_gen_mobilenet_v2`: the paper's Table 2, ReLU6, no squeeze-excite, stem scaled by width, the
1280-wide head kept for multipliers below 1. Same topology as Keras applications' MobileNetV2
but with BatchNorm momentum 0.99 (Keras uses 0.999, whose moving statistics stay near their
initial values in short CPU trainings and collapse evaluation to chance; docs/facts.md,
"Measured on this project's machines") and, with sparse_ready, symmetric ZeroPadding2D +
'valid' on stride-2 convs so the TFLite graph meets XNNPACK's sparse rules.

Blocks are named as in every family (`block1a`, `block2a`, `block2b`, ... `block7a`); the old
numbering `block0` .. `block16` maps to them through `naming.LEGACY_MOBILENET_V2_BLOCKS`.
"""

from __future__ import annotations

import tf_keras

from nlighten_tf.models import block_table, registry
from nlighten_tf.models.block_table import HEAD_FILTERS, BlockArgs, round_filters

# Table 2 of the MobileNetV2 paper: n (repeats), 3x3 depthwise, s (stride), t (expansion), the
# input channels (the previous row's c; the stem's 32 for the first), c (output channels).
MOBILENET_V2_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 1, 32, 16),
    BlockArgs(2, 3, 2, 6, 16, 24),
    BlockArgs(3, 3, 2, 6, 24, 32),
    BlockArgs(4, 3, 2, 6, 32, 64),
    BlockArgs(3, 3, 1, 6, 64, 96),
    BlockArgs(3, 3, 2, 6, 96, 160),
    BlockArgs(1, 3, 1, 6, 160, 320),
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
    # The paper keeps the 1280-wide head for multipliers below 1.
    head = round_filters(HEAD_FILTERS, width_multiplier) if width_multiplier > 1.0 else HEAD_FILTERS
    return block_table.build_from_block_table(
        blocks=MOBILENET_V2_BLOCKS,
        width=width_multiplier,
        depth=1.0,
        activation="relu6",
        use_se=False,
        fix_stem_head=False,
        head_filters=head,
        model_name=f"mobilenet_v2_{width_multiplier:g}",
        features_name="mobilenet_v2_features",
        # This project's MobileNetV2 always had unpadded ('valid') 1x1 projections; kept so that
        # its Keras configs and .tflite graphs stay as they were.
        project_padding="valid",
        input_shape=input_shape,
        num_classes=num_classes,
        include_top=include_top,
        features_only=features_only,
        dropout_rate=dropout_rate,
        drop_connect_rate=drop_connect_rate,
        sparse_ready=sparse_ready,
    )


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
