"""Low-rank factorisation: a Dense or 1x1 Conv2D kernel W (in x out) becomes A (in x r) @ B (r x out)
by truncated SVD, with the smallest rank r keeping `energy` of the squared singular values."""

from __future__ import annotations

import dataclasses

import numpy as np
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import copy_model
from nlighten_tf.models.complexity import count_params
from nlighten_tf.optimize import graph
from nlighten_tf.optimize.fields import documented
from nlighten_tf.optimize.selection import LayerSelection, is_pointwise_conv


@dataclasses.dataclass(frozen=True)
class LowRankConfig:
    energy: float = documented(0.9, "fraction of the squared singular values each factorised kernel keeps, in (0, 1]")
    selection: LayerSelection = dataclasses.field(default_factory=LayerSelection)

    def __post_init__(self):
        if not 0.0 < self.energy <= 1.0:
            raise ValueError(f"energy must be in (0, 1], got {self.energy}")


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    cumulative = np.cumsum(singular_values**2) / np.sum(singular_values**2)
    return int(np.searchsorted(cumulative, energy - 1e-12) + 1)


def factorizable(layer: layers.Layer) -> bool:
    return isinstance(layer, layers.Dense) or (is_pointwise_conv(layer) and layer.groups == 1)


def _factor_layers(layer: layers.Layer, rank: int):
    if isinstance(layer, layers.Dense):
        first = layers.Dense(rank, use_bias=False, name=f"{layer.name}_lowrank")
        second = layers.Dense(layer.units, use_bias=layer.use_bias, activation=layer.activation, name=layer.name)
    else:
        first = layers.Conv2D(
            rank, 1, strides=layer.strides, padding=layer.padding, use_bias=False, name=f"{layer.name}_lowrank"
        )
        second = layers.Conv2D(
            layer.filters, 1, use_bias=layer.use_bias, activation=layer.activation, name=layer.name
        )
    return first, second


@dataclasses.dataclass
class LowRankResult:
    model: tf_keras.Model
    report: dict  # layer -> {rank, full_rank, params_before, params_after}
    params_before: int
    params_after: int


def factorize(model: tf_keras.Model, config: LowRankConfig = LowRankConfig()) -> LowRankResult:
    """Factorises every selected Dense / 1x1 conv whose rank-r product has fewer parameters."""
    source = copy_model(model)
    replacements = {}
    report = {}
    for layer in config.selection.selected_layers(source):
        if not factorizable(layer):
            continue
        kernel = layer.kernel.numpy()
        matrix = kernel.reshape(-1, kernel.shape[-1])
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
        rank = rank_for_energy(s, config.selection.target_for(layer, config.energy))
        before = matrix.size
        after = rank * sum(matrix.shape)
        if after >= before:
            continue
        first, second = _factor_layers(layer, rank)
        a = (u[:, :rank] * s[:rank]).reshape(*kernel.shape[:-1], rank)
        b = vt[:rank].reshape(*([1, 1] if kernel.ndim == 4 else []), rank, kernel.shape[-1])
        bias = layer.bias.numpy() if layer.use_bias else None
        replacements[layer.name] = _replacement(first, second, a, b, bias)
        report[layer.name] = {
            "rank": rank, "full_rank": int(min(matrix.shape)), "params_before": before, "params_after": after,
        }
    factored = graph.rebuild(source, replacements)
    return LowRankResult(factored, report, count_params(model), count_params(factored))


def _replacement(first, second, a, b, bias):
    def apply(tensor):
        out = second(first(tensor))
        first.set_weights([a])
        second.set_weights([b] if bias is None else [b, bias])
        return out

    return apply
