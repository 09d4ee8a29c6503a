"""EfficientNet-B0..B7 and EfficientNet-Lite0..4: one block table decoded by the zoo's builder.

The table and coefficients follow the TensorFlow reference builders (tensorflow/tpu
models/official/efficientnet: efficientnet_builder.py, lite/efficientnet_lite_builder.py); the
network is built by `block_table.build_from_block_table`, as every family of the zoo. Lite
differs from B by: no squeeze-excite, ReLU6, stem (32) and head (1280) not scaled by width,
first and last stages' repeats not scaled. `register_variant` also registers
EfficientNet-EdgeTPU (edgetpu.py), whose first stages use fused blocks: the 1x1 expansion +
depthwise pair replaced by one full KxK conv.
"""

from __future__ import annotations

from collections.abc import Sequence

import tf_keras

from nlighten_tf.models import block_table, registry
from nlighten_tf.models.block_table import BlockArgs

# efficientnet_builder._DEFAULT_BLOCKS_ARGS. Lite uses the same table without SE.
EFFICIENTNET_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 1, 32, 16, 0.25),
    BlockArgs(2, 3, 2, 6, 16, 24, 0.25),
    BlockArgs(2, 5, 2, 6, 24, 40, 0.25),
    BlockArgs(3, 3, 2, 6, 40, 80, 0.25),
    BlockArgs(3, 5, 1, 6, 80, 112, 0.25),
    BlockArgs(4, 5, 2, 6, 112, 192, 0.25),
    BlockArgs(1, 3, 1, 6, 192, 320, 0.25),
)


def _variant_builder(width, depth, activation, use_se, fix_stem_head, blocks, model_name):
    def build(
        input_shape: tuple[int, int, int],
        num_classes: int = 1000,
        include_top: bool = True,
        features_only: bool = False,
        dropout_rate: float | None = None,
        drop_connect_rate: float = 0.2,
        sparse_ready: bool | None = None,
        width_coefficient: float | None = None,
        depth_coefficient: float | None = None,
        head_filters: int | None = None,
        *,
        default_dropout: float,
        default_sparse_ready: bool,
    ) -> tf_keras.Model:
        """width/depth_coefficient and head_filters override the variant's scaling, e.g. to
        size a Lite-family network for a small dataset on a CPU."""
        for what, value in (("width_coefficient", width_coefficient), ("depth_coefficient", depth_coefficient),
                            ("head_filters", head_filters)):
            if value is not None and value <= 0:
                raise ValueError(f"{what} must be > 0, got {value}")
        return block_table.build_from_block_table(
            blocks=blocks,
            width=width if width_coefficient is None else width_coefficient,
            depth=depth if depth_coefficient is None else depth_coefficient,
            head_filters=head_filters,
            activation=activation,
            use_se=use_se,
            fix_stem_head=fix_stem_head,
            model_name=model_name,
            input_shape=input_shape,
            num_classes=num_classes,
            include_top=include_top,
            features_only=features_only,
            dropout_rate=default_dropout if dropout_rate is None else dropout_rate,
            drop_connect_rate=drop_connect_rate,
            sparse_ready=default_sparse_ready if sparse_ready is None else sparse_ready,
        )

    return build


def register_variant(
    name: str,
    family: str,
    coefficients: tuple[float, float, int, float],
    *,
    blocks: Sequence[BlockArgs],
    activation: str,
    use_se: bool,
    fix_stem_head: bool,
    preprocessing: str,
    published: registry.PublishedFigures,
    sparse_ready: bool,
    num_classes: int = 1000,
) -> None:
    width, depth, resolution, dropout = coefficients
    registry.register(
        registry.ModelInfo(
            name=name,
            family=family,
            default_resolution=resolution,
            default_num_classes=num_classes,
            preprocessing=preprocessing,
            published=published,
            builder=_variant_builder(width, depth, activation, use_se, fix_stem_head, blocks, name),
            fixed_options={"default_dropout": dropout, "default_sparse_ready": sparse_ready},
        )
    )


# (width, depth, resolution, dropout) from efficientnet_builder.efficientnet_params and
# efficientnet_lite_builder.efficientnet_lite_params. Published figures: the EfficientNet
# paper (Tan & Le 2019, Table 2) and the EfficientNet-Lite README (docs/facts.md).
_B_VARIANTS = {
    "b0": ((1.0, 1.0, 224, 0.2), 5.3e6, 0.39e9, 77.3),
    "b1": ((1.0, 1.1, 240, 0.2), 7.8e6, 0.70e9, 79.2),
    "b2": ((1.1, 1.2, 260, 0.3), 9.2e6, 1.0e9, 80.3),
    "b3": ((1.2, 1.4, 300, 0.3), 12e6, 1.8e9, 81.7),
    "b4": ((1.4, 1.8, 380, 0.4), 19e6, 4.2e9, 83.0),
    "b5": ((1.6, 2.2, 456, 0.4), 30e6, 9.9e9, 83.7),
    "b6": ((1.8, 2.6, 528, 0.5), 43e6, 19e9, 84.2),
    "b7": ((2.0, 3.1, 600, 0.5), 66e6, 37e9, 84.4),
}
_LITE_VARIANTS = {
    "lite0": ((1.0, 1.0, 224, 0.2), 4.65e6, 0.41e9, 74.84),
    "lite1": ((1.0, 1.1, 240, 0.2), 5.42e6, 0.63e9, 76.64),
    "lite2": ((1.1, 1.2, 260, 0.3), 6.09e6, 0.90e9, 77.46),
    "lite3": ((1.2, 1.4, 280, 0.3), 8.20e6, 1.44e9, 79.81),
    "lite4": ((1.4, 1.8, 300, 0.3), 13.01e6, 2.64e9, 81.53),
}

for _suffix, (_coeffs, _params, _madds, _top1) in _B_VARIANTS.items():
    register_variant(
        f"efficientnet_{_suffix}",
        "efficientnet",
        _coeffs,
        blocks=EFFICIENTNET_BLOCKS,
        activation="swish",
        use_se=True,
        fix_stem_head=False,
        preprocessing="imagenet",
        published=registry.PublishedFigures(_params, 1000, _madds, _top1, "EfficientNet paper, Table 2"),
        sparse_ready=False,
    )

for _suffix, (_coeffs, _params, _madds, _top1) in _LITE_VARIANTS.items():
    register_variant(
        f"efficientnet_{_suffix}",
        "efficientnet_lite",
        _coeffs,
        blocks=EFFICIENTNET_BLOCKS,
        activation="relu6",
        use_se=False,
        fix_stem_head=True,
        preprocessing="lite",
        published=registry.PublishedFigures(_params, 1000, _madds, _top1, "EfficientNet-Lite README"),
        sparse_ready=True,
    )
