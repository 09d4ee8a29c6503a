"""EfficientNet-EdgeTPU-S/M/L (tensorflow/tpu .../efficientnet/edgetpu/efficientnet_edgetpu_builder.py).

Fused blocks (one KxK conv instead of 1x1 expansion + depthwise) in the first three stages
use the Edge TPU's full convolutions better; ReLU, no squeeze-excite, 1001 classes in the
published checkpoints. Stem and head are scaled by width, all repeats by depth.
"""

from __future__ import annotations

from nlighten_tf.models import registry
from nlighten_tf.models.block_table import BlockArgs
from nlighten_tf.models.efficientnet import register_variant

EDGETPU_BLOCKS: tuple[BlockArgs, ...] = (
    BlockArgs(1, 3, 1, 4, 24, 24, fused=True, skip=False),
    BlockArgs(2, 3, 2, 8, 24, 32, fused=True),
    BlockArgs(4, 3, 2, 8, 32, 48, fused=True),
    BlockArgs(5, 5, 2, 8, 48, 96),
    BlockArgs(4, 5, 1, 8, 96, 144),
    BlockArgs(2, 5, 2, 8, 144, 192),
)

# (width, depth, resolution, dropout); published figures from the EdgeTPU README (docs/facts.md).
_VARIANTS = {
    "s": ((1.0, 1.0, 224, 0.2), 5.44e6, 77.26),
    "m": ((1.0, 1.1, 240, 0.2), 6.90e6, 78.74),
    "l": ((1.2, 1.4, 300, 0.3), 10.59e6, 80.53),
}

for _suffix, (_coeffs, _params, _top1) in _VARIANTS.items():
    register_variant(
        f"efficientnet_edgetpu_{_suffix}",
        "efficientnet_edgetpu",
        _coeffs,
        blocks=EDGETPU_BLOCKS,
        activation="relu",
        use_se=False,
        fix_stem_head=False,
        preprocessing="lite",
        published=registry.PublishedFigures(_params, 1001, None, _top1, "EfficientNet-EdgeTPU README"),
        sparse_ready=False,
        num_classes=1001,
    )
