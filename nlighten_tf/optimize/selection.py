"""Which layers a technique touches: a policy plus include/exclude regexes and per-layer targets.

One home for layer selection so that pruning, clustering, the lottery loop and low-rank
factorisation all read the same rules.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

import tensorflow_model_optimization as tfmot
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import copy_model, kernel_of, unwrap
from nlighten_tf.models.naming import legacy_regex_error
from nlighten_tf.optimize.fields import documented

POLICIES = ("all", "xnnpack", "conv1x1", "dense")


def is_pointwise_conv(layer: layers.Layer) -> bool:
    return (
        isinstance(layer, layers.Conv2D)
        and not isinstance(layer, layers.DepthwiseConv2D)
        and tuple(layer.kernel_size) == (1, 1)
    )


@dataclasses.dataclass(frozen=True)
class LayerSelection:
    """policy: 'all' (every conv/depthwise/dense kernel), 'xnnpack' (1x1 convs as TFMOT's
    PruneForLatencyOnXNNPack, which also checks the graph is XNNPACK-sparse ready), 'conv1x1',
    'dense'. include/exclude: regexes on layer names (exclude wins). per_layer: {regex: value}
    overrides of the technique's target for matching layers (first match wins)."""

    policy: str = documented(
        "all", "which kernels: all (every conv/dense kernel), xnnpack (1x1 convolutions as TFMOT's "
        "PruneForLatencyOnXNNPack, on a sparse-ready graph), conv1x1, dense", choices=POLICIES,
    )  # fmt: skip
    include: str | None = documented(None, "regex on layer names: only matching layers")
    exclude: str | None = documented(None, "regex on layer names: matching layers are left alone (wins over include)")
    per_layer: Mapping[str, float] = documented(
        factory=dict, doc="{regex: target} overriding the stage's target for matching layers (first match wins)"
    )

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"unknown layer policy {self.policy!r}; valid: {', '.join(POLICIES)}")
        for pattern in [self.include, self.exclude, *self.per_layer]:
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as error:
                    raise ValueError(f"invalid layer-name regex {pattern!r}: {error}") from None

    def validate_model(self, model: tf_keras.Model) -> None:
        if self.policy == "xnnpack":
            try:
                tfmot.sparsity.keras.PruneForLatencyOnXNNPack().ensure_model_supports_pruning(model)
            except ValueError as error:
                raise ValueError(
                    f"policy 'xnnpack' needs an XNNPACK-sparse-ready graph: {error}. Build the model "
                    "with sparse_ready=True (Lite/MobileNetV2 default) or use policy 'all'."
                ) from None

    def selects(self, layer: layers.Layer) -> bool:
        if kernel_of(layer) is None:
            return False
        if self.policy == "xnnpack" and not tfmot.sparsity.keras.PruneForLatencyOnXNNPack().allow_pruning(layer):
            return False
        if self.policy == "conv1x1" and not is_pointwise_conv(layer):
            return False
        if self.policy == "dense" and not isinstance(layer, layers.Dense):
            return False
        if self.include and not re.search(self.include, layer.name):
            return False
        if self.exclude and re.search(self.exclude, layer.name):
            return False
        return True

    def target_for(self, layer: layers.Layer, default: float) -> float:
        for pattern, value in self.per_layer.items():
            if re.search(pattern, layer.name):
                return value
        return default

    def check_names(self, model: tf_keras.Model) -> None:
        """Layer names are the same in every family (`stem_*`, `block5c_*`, `top_*`); a regex
        written for MobileNetV2's old numbering (`^block12_`) matches nothing on a MobileNetV2
        now and is refused with the new name rather than silently selecting other layers."""
        names = [unwrap(layer).name for layer in model.layers]
        patterns = [("include", self.include), ("exclude", self.exclude), *(("per_layer", p) for p in self.per_layer)]
        for key, pattern in patterns:
            if pattern is not None and (why := legacy_regex_error(pattern, names)):
                raise ValueError(f"{key}: {why}")

    def selected_layers(self, model: tf_keras.Model, depthwise: bool = True) -> list[layers.Layer]:
        """Matching layers in graph order. depthwise=False leaves out DepthwiseConv2D, which
        TFMOT's pruning and clustering registries list with no optimizable weights."""
        self.check_names(model)
        chosen = [
            layer
            for layer in model.layers
            if self.selects(unwrap(layer)) and (depthwise or not isinstance(unwrap(layer), layers.DepthwiseConv2D))
        ]
        if not chosen:
            raise ValueError(
                f"no layer of model {model.name!r} matches policy={self.policy!r} "
                f"include={self.include!r} exclude={self.exclude!r}"
                + ("" if depthwise else " (depthwise convolutions excluded: TFMOT does not prune or cluster them)")
            )
        return chosen


def wrap_selected(
    model: tf_keras.Model,
    names: set[str],
    wrap: Callable[[layers.Layer], layers.Layer],
    action: str,
    hint: str,
) -> tf_keras.Model:
    """A copy of `model` whose layers named in `names` are replaced by `wrap(layer)` (a TFMOT
    wrapper); a layer TFMOT refuses is named in the error with `hint` on how to skip it."""

    def clone_function(layer: layers.Layer) -> layers.Layer:
        if layer.name not in names:
            return layer
        try:
            return wrap(layer)
        except ValueError as error:
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be {action} by TFMOT: {error}. "
                f"Skip it with exclude='^{layer.name}$'{hint}."
            ) from None

    return tf_keras.models.clone_model(copy_model(model), clone_function=clone_function)
