"""Named model variants: ``build(name, **options)``, ``names()`` and ``info(name)``.

Each family module registers its variants at import time with ``register``; the registry
validates names, options and input shapes once so that builders can trust their arguments.
The registry imports no family (``nlighten_tf/models/__init__.py`` imports them all, and
importing this module imports that package first), so families import it without a cycle;
``build`` reaches only ``weights`` (loading), never the families.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tf_keras

MIN_RESOLUTION = 32


@dataclasses.dataclass(frozen=True)
class PublishedFigures:
    """Published ImageNet figures for a variant, used as test oracles and in the model table."""

    params: float  # parameters, at `classes` outputs
    classes: int = 1000
    madds: float | None = None  # multiply-adds at the default resolution
    top1: float | None = None
    source: str = ""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str
    default_resolution: int
    default_num_classes: int
    # Input normalisation scheme name understood by nlighten_tf.data.preprocessing.
    preprocessing: str
    published: PublishedFigures | None
    builder: Callable[..., tf_keras.Model]
    fixed_options: dict[str, Any]
    # "classification" (outputs [B, num_classes] logits) or "detection" (efficientdet.py:
    # class logits and box deltas per anchor), "segmentation" or "keypoints" (heads.py).
    task: str = "classification"

    @property
    def options(self) -> tuple[str, ...]:
        """User-settable options: the builder's keyword arguments less those the variant fixes."""
        params = inspect.signature(self.builder).parameters
        return tuple(p for p in params if p not in self.fixed_options) + ("weights",)


_REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> None:
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} registered twice")
    _REGISTRY[info.name] = info


def names(family: str | None = None, task: str | None = "classification") -> list[str]:
    """Registered variant names in registration order: of ``family`` if given (any task), else
    of ``task`` (``None``: every task). Classifiers by default: the zoo table, the
    published-figure tests and the classification recipes expect ``[B, num_classes]`` outputs."""
    if family is not None:
        return [n for n, i in _REGISTRY.items() if i.family == family]
    return [n for n, i in _REGISTRY.items() if task is None or i.task == task]


def info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_REGISTRY)}") from None


def validate_input_shape(input_shape: Any) -> tuple[int, int, int]:
    """Returns a (height, width, 3) tuple or raises ValueError saying what is possible."""
    try:
        height, width, channels = (int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be (height, width, 3), got {input_shape!r}"
        ) from None
    if channels != 3:
        raise ValueError(f"input_shape must have 3 channels (RGB), got {channels} in {input_shape!r}")
    if min(height, width) < MIN_RESOLUTION:
        raise ValueError(
            f"input_shape {input_shape!r} is too small: height and width must be >= {MIN_RESOLUTION} "
            "(the backbone downsamples 32x)"
        )
    return height, width, channels


def build(name: str, **options: Any) -> tf_keras.Model:
    """Builds a named variant as a plain ``tf_keras.Model``.

    Raises ValueError for an unknown name, an unknown option or an impossible input shape,
    naming the valid choices.
    """
    model_info = info(name)
    unknown = sorted(set(options) - set(model_info.options))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for model {name!r}; "
            f"valid options: {', '.join(model_info.options)}"
        )
    if options.get("input_shape") is None:
        options["input_shape"] = (model_info.default_resolution, model_info.default_resolution, 3)
    options["input_shape"] = validate_input_shape(options["input_shape"])
    options.setdefault("num_classes", model_info.default_num_classes)
    weights = options.pop("weights", None)
    if isinstance(weights, str) and "sparse_ready" in model_info.options and "sparse_ready" not in options:
        from nlighten_tf.models import weights as weights_lib

        if weights in weights_lib.weight_ids(name):
            # Published checkpoints were trained with TF 'same' padding; the symmetric sparse-ready
            # padding shifts their logits (measured: top-1 changes on 3 of 8 photos). Fine-tune
            # after building with sparse_ready=True to get both.
            options["sparse_ready"] = False
    model = model_info.builder(**model_info.fixed_options, **options)
    if weights is not None:
        from nlighten_tf.models import weights as weights_lib

        weights_lib.load_into(model, name, weights)
    return model


# Options a model built on a backbone's feature taps sets itself (detectors, dense heads).
FEATURE_TAP_RESERVED_OPTIONS = ("input_shape", "features_only", "include_top", "num_classes", "weights")


def build_feature_taps(
    name: str,
    input_shape: Sequence[int],
    weights: str | None = None,
    options: Mapping[str, Any] | None = None,
    built_by: str = "the model",
) -> tf_keras.Model:
    """``build(name, features_only=True, ...)`` for a model that puts its own layers on the
    C3..C5 taps; ValueError if `options` try to set what `built_by` sets itself."""
    options = dict(options or {})
    reserved = sorted(set(options) & set(FEATURE_TAP_RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"backbone_options may not set {', '.join(reserved)}: {built_by} sets them "
            "(use input_shape= and backbone_weights=)"
        )
    return build(name, input_shape=input_shape, features_only=True, weights=weights, **options)
