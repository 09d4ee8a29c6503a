"""Training augmentation through keras-cv layers (they subclass tf_keras layers in legacy
mode): random horizontal flip, random crop, RandAugment, and MixUp or CutMix.

`augment=` accepts None/"none" (off), a comma-separated list of components and presets
("basic", "flip,crop,randaugment", "randaugment,mixup"), a dict (``{"flip": True,
"randaugment": {"magnitude": 0.5}, "mixup": {"alpha": 0.2}}``) or an AugmentConfig.
Augmentation runs on whole batches in [0, 255] pixel space, before normalisation; the
random crop takes image_size from a resize to image_size + image_size // 8. MixUp and
CutMix turn labels into one-hot float vectors.

The layers get seeds derived from `load`'s seed. Flip and crop then repeat exactly; in
keras-cv 0.9 RandAugment draws its per-image choices inside a parallel map_fn and MixUp/CutMix
call unseeded tf.random ops, so those are random in distribution only. The batch-level map
that applies the layers is sequential so that at least the seeded draws stay in order.

keras-cv is imported only when augmentation is used: it adds seconds to the import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

from nlighten_tf.data.errors import DataError

_TOGGLES = ("flip", "crop", "randaugment", "mixup", "cutmix")
# Parameters a dict value may set for each component: {option: config field}.
_PARAMETERS = {
    "randaugment": {"magnitude": "randaugment_magnitude", "augmentations_per_image": "randaugment_layers"},
    "mixup": {"alpha": "mixup_alpha"},
    "cutmix": {"alpha": "cutmix_alpha"},
}
PRESETS = {
    "basic": ("flip", "crop"),
    "strong": ("flip", "crop", "randaugment"),
}


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    flip: bool = False
    crop: bool = False
    randaugment: bool = False
    randaugment_magnitude: float = 0.3
    randaugment_layers: int = 2
    mixup: bool = False
    mixup_alpha: float = 0.2
    cutmix: bool = False
    cutmix_alpha: float = 1.0

    def __post_init__(self) -> None:
        if self.mixup and self.cutmix:
            raise DataError("augment: choose one of mixup and cutmix, not both")
        if not 0.0 <= self.randaugment_magnitude <= 1.0:
            raise DataError(f"augment: randaugment magnitude must be in [0, 1], got {self.randaugment_magnitude}")
        if self.randaugment_layers < 1:
            raise DataError("augment: randaugment augmentations_per_image must be at least 1")
        if self.mixup_alpha <= 0 or self.cutmix_alpha <= 0:
            raise DataError("augment: mixup/cutmix alpha must be positive")

    @property
    def mixes_labels(self) -> bool:
        return self.mixup or self.cutmix

    def describe(self) -> str:
        return ",".join(name for name in _TOGGLES if getattr(self, name)) or "none"


def _unknown(name: str) -> DataError:
    return DataError(
        f"augment: unknown component {name!r}; valid: {', '.join(_TOGGLES + tuple(PRESETS))} "
        "(comma-separated), a dict of them, or None"
    )


def parse_augment(value: str | Mapping[str, Any] | AugmentConfig | None) -> AugmentConfig | None:
    """The augmentation asked for, or None when it is off."""
    if value is None or isinstance(value, AugmentConfig):
        return value if value is None or value.describe() != "none" else None
    fields: dict[str, Any] = {}
    if isinstance(value, str):
        for token in filter(None, (t.strip().lower() for t in value.split(","))):
            if token == "none":
                continue
            if token not in _TOGGLES and token not in PRESETS:
                raise _unknown(token)
            fields.update({name: True for name in PRESETS.get(token, (token,))})
    elif isinstance(value, Mapping):
        for name, setting in value.items():
            if name not in _TOGGLES:
                raise _unknown(name)
            if isinstance(setting, Mapping):
                allowed = _PARAMETERS.get(name, {})
                for option, option_value in setting.items():
                    if option not in allowed:
                        raise DataError(
                            f"augment: {name} has no option {option!r}; valid: {', '.join(allowed) or 'none'}"
                        )
                    fields[allowed[option]] = option_value
                fields[name] = True
            else:
                fields[name] = bool(setting)
    else:
        raise DataError(f"augment must be None, a string, a dict or an AugmentConfig, got {type(value).__name__}")
    config = AugmentConfig(**fields)
    return None if config.describe() == "none" else config


class Augmenter:
    """`resize` runs per example (before batching); calling the augmenter runs on batches of
    float [0, 255] images and labels (one-hot when labels are mixed)."""

    def __init__(self, config: AugmentConfig, image_size: int, seed: int | None):
        import keras_cv

        self.config = config
        self.image_size = image_size
        self.resize_to = image_size + image_size // 8 if config.crop else image_size

        def seeded(offset: int) -> int | None:
            # Distinct seeds so that the layers' random draws are not correlated.
            return None if seed is None else seed + offset

        self.layers: list[Callable[..., Any]] = []
        if config.flip:
            self.layers.append(keras_cv.layers.RandomFlip("horizontal", seed=seeded(1)))
        if config.crop:
            self.layers.append(keras_cv.layers.RandomCrop(image_size, image_size, seed=seeded(2)))
        if config.randaugment:
            self.layers.append(
                keras_cv.layers.RandAugment(
                    value_range=(0, 255),
                    augmentations_per_image=config.randaugment_layers,
                    magnitude=config.randaugment_magnitude,
                    seed=seeded(3),
                )
            )
        if config.mixup:
            self.layers.append(keras_cv.layers.MixUp(alpha=config.mixup_alpha, seed=seeded(4)))
        if config.cutmix:
            self.layers.append(keras_cv.layers.CutMix(alpha=config.cutmix_alpha, seed=seeded(5)))

    def resize(self, image: tf.Tensor) -> tf.Tensor:
        return tf.image.resize(tf.cast(image, tf.float32), (self.resize_to, self.resize_to), method="bilinear")

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = {"images": images, "labels": labels}
        for layer in self.layers:
            data = layer(data, training=True)
        images = tf.ensure_shape(data["images"], [None, self.image_size, self.image_size, 3])
        return tf.clip_by_value(images, 0.0, 255.0), data["labels"]
