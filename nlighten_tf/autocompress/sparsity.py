"""Unstructured sparsity per layer: the second axis of the `search` for `size_kb` budgets on an
int8 sparse target (`int8_sparse`, `int8_sparse_float_io`), and the uniform-sparsity baseline.

How the converter stores one pruned int8 kernel (measured with `benchmarks/sparse_storage.py`,
table in docs/optimize.md, "Auto-compression"; TF 2.21):

- dense below 30% zeros; from 30% on always sparse (`EXPERIMENTAL_SPARSITY`), even where the
  sparse form is the larger one;
- sparse: one byte per non-zero value; one index per non-zero (its input channel: uint8 when
  the input width is at most 256, else uint16); one segment entry per row (output channel x
  kernel position) plus one (uint8, uint16 or int32 by the non-zero count); the DENSIFY op's
  output tensor repeats the kernel's per-channel quantization (float32 scale + int64 zero
  point: 12 bytes per output channel) and adds ~384 bytes of op, tensor and metadata.

So sparse storage pays from ~55% zeros on a wide layer with uint8 indices, ~68% with uint16,
and never on a small one (a 32x16 1x1 convolution, the 3x3 stem). `stored_bytes` is that
model; `ByteModel` applies it per layer at any channel counts and checks it against one whole
exported file. The search proposes, per kernel, "this kernel to the next sparsity level that
makes its stored bytes smaller" (`LEVELS`; far enough to save `step` of the way to the budget
where it can), the lowest |w| zeroed, emulated exactly in the working copy, ranked with the
channel proposals by validation loss per unit of file saved. The final
fine-tune keeps each layer's sparsity (TFMOT `prune_low_magnitude` with a per-layer
ConstantSparsity, `optimize.prune`), then strips the wrappers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tf_keras import layers

from nlighten_tf import interrupts
from nlighten_tf.autocompress.greedy import ChannelSearch
from nlighten_tf.autocompress.measure import SPARSE_TARGETS, CostMeter
from nlighten_tf.export import targets as targets_lib
from nlighten_tf.keras_utils import copy_model
from nlighten_tf.optimize import prune, training, weight_stats
from nlighten_tf.optimize.channel_groups import ChannelGraph, segment_indices
from nlighten_tf.optimize.channel_prune import kept_indices
from nlighten_tf.optimize.selection import LayerSelection

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)  # what a proposal moves a kernel to, in order
UNIFORM_MAX = 0.99  # the highest single sparsity the uniform baseline may choose
STORED_SPARSE_FROM = 0.3  # the converter stores a kernel sparse from this fraction of zeros
CHANNEL_QUANTIZATION_BYTES = 12  # float32 scale + int64 zero point, repeated on DENSIFY's output
DENSIFY_BYTES = 384  # the DENSIFY op, its output tensor and the sparsity metadata (measured 330-390)
CALIBRATION_LEVEL = 0.9  # the whole-file check of the byte model
PROPOSAL = "sparsity:"  # names a sparsity proposal apart from the channel group of the same layer


def _index_bytes(largest: int) -> int:
    return 1 if largest < 256 else 2 if largest < 65536 else 4


def stored_bytes(rows: int, inner: int, out_channels: int, sparsity: float, sparse_storage: bool = True) -> int:
    """Bytes one int8 kernel of `rows` x `inner` weights (`inner`: its input channels, the
    fastest axis of the TFLite layout) with `out_channels` output channels adds to the file at
    `sparsity` (fraction of zeros), beyond its bias and its own quantization parameters."""
    size = rows * inner
    zeros = int(round(sparsity * size))
    if not sparse_storage or zeros < STORED_SPARSE_FROM * size:
        return size
    nonzero = size - zeros
    return (nonzero * (1 + _index_bytes(inner - 1)) + (rows + 1) * _index_bytes(nonzero)
            + CHANNEL_QUANTIZATION_BYTES * out_channels + DENSIFY_BYTES)  # fmt: skip


def magnitude_mask(values: np.ndarray, sparsity: float) -> np.ndarray:
    """1/0 mask zeroing the round(sparsity * size) smallest |values| (ties: the earlier first)."""
    flat = np.ones(values.size, np.float32)
    flat[np.argsort(np.abs(values).ravel(), kind="stable")[: int(round(sparsity * values.size))]] = 0.0
    return flat.reshape(values.shape)


class ByteModel:
    """File bytes saved by per-layer sparsity, as a fraction of the original file, at any channel
    counts: `stored_bytes` per kernel, scaled by one whole-file check (`calibrate`)."""

    def __init__(self, model: tf_keras.Model, cgraph: ChannelGraph, target: str, original_bytes: float):
        self.cgraph, self.original_bytes = cgraph, original_bytes
        float_io = targets_lib.get_target(target).io_type == "float32"
        self.layers: dict[str, tuple[int, bool]] = {}  # name -> (kernel positions, stored sparse at all)
        for layer in LayerSelection().selected_layers(model, depthwise=False):
            # The float-I/O sparse target stores FULLY_CONNECTED weights dense (export/tflite.py:
            # XNNPACK, MediaPipe's CPU path, cannot prepare them sparse): sparsity saves nothing there.
            self.layers[layer.name] = (math.prod(layer.kernel.shape[:-2]), not (float_io and isinstance(layer, layers.Dense)))
        self.scale = 1.0
        self.table: list[dict[str, Any]] = []

    def widths(self, name: str, counts: Mapping[str, int]) -> tuple[int, int]:
        """(input, output) channels of kernel `name` at `counts`."""
        width = lambda segments: sum(counts.get(g, n) for g, n in segments)  # noqa: E731
        return width(self.cgraph.inputs[name][0]), width(self.cgraph.outputs[name])

    def layer_bytes(self, name: str, counts: Mapping[str, int], sparsity: float) -> int:
        positions, sparse_storage = self.layers[name]
        inner, out = self.widths(name, counts)
        return stored_bytes(positions * out, inner, out, sparsity, sparse_storage)

    def saving(self, counts: Mapping[str, int], levels: Mapping[str, float]) -> float:
        saved = sum(self.layer_bytes(n, counts, 0.0) - self.layer_bytes(n, counts, s) for n, s in levels.items() if s)
        return self.scale * saved / self.original_bytes

    def next_level(self, name: str, counts: Mapping[str, int], current: float, gain: float = 0.0) -> float | None:
        """The lowest level above `current` at which the kernel's stored bytes shrink by at least
        `gain` (a fraction of the original file), else the highest at which they shrink at all."""
        now = self.layer_bytes(name, counts, current)
        smaller = [s for s in LEVELS if s > current and self.layer_bytes(name, counts, s) < now]
        enough = [s for s in smaller if self.scale * (now - self.layer_bytes(name, counts, s)) >= gain * self.original_bytes]
        return enough[0] if enough else smaller[-1] if smaller else None

    def calibrate(self, model: tf_keras.Model, meter: CostMeter, log: Callable[[str], None]) -> None:
        """Exports the original with every kernel where it pays at CALIBRATION_LEVEL and scales
        the model's savings to what the file measured (the check of the byte model)."""
        levels = {n: CALIBRATION_LEVEL for n in self.layers
                  if self.layer_bytes(n, {}, CALIBRATION_LEVEL) < self.layer_bytes(n, {}, 0.0)}  # fmt: skip
        if not levels:
            log("  sparsity: no kernel of this model is smaller stored sparse; channels only")
            return
        masked = copy_model(model)
        for name, level in levels.items():
            weights = masked.get_layer(name).get_weights()
            weights[0] = weights[0] * magnitude_mask(weights[0], level)
            masked.get_layer(name).set_weights(weights)
        measured = meter.measure([masked])[0]
        predicted = self.saving({}, levels)
        self.scale = max(1.0 - measured.ratio, 0.0) / max(predicted, 1e-9)
        self.table.append({"check": f"{len(levels)} kernels at {CALIBRATION_LEVEL:g}", "measured_ratio": measured.ratio,
                           "byte_model_ratio": 1.0 - predicted, "scale": self.scale})  # fmt: skip
        log(f"  sparsity byte model: {len(levels)} kernels at {CALIBRATION_LEVEL:.0%} zeros measure {measured.ratio:.1%} "
            f"of the file, the model predicted {1.0 - predicted:.1%} (savings scaled by {self.scale:.3f})")  # fmt: skip


class SparsitySearch(ChannelSearch):
    """The channel search plus, per kernel, proposals to the next paying sparsity level; and
    `method="uniform_sparsity"`: one sparsity for every prunable kernel, channels whole."""

    def __init__(self, *args: Any, byte_model: ByteModel):
        super().__init__(*args)
        self.bytes = byte_model
        self.levels: dict[str, float] = {}  # kernel -> fraction of zeros (of its weights after channel pruning)

    def estimate(self, counts: Mapping[str, int], levels: Mapping[str, float] | None = None) -> float:
        return self.estimator(counts) - self.bytes.saving(counts, self.levels if levels is None else levels)

    def _keep(self, counts: Mapping[str, int]) -> dict[str, np.ndarray]:
        return {g: kept_indices(self.scores[g], k) for g, k in counts.items() if k < self.sizes[g]}

    def _emulate(self, counts: Mapping[str, int]) -> dict[str, list]:
        """Channels as the channel search does, then each kernel's lowest |w| zeroed among the
        weights the built layer keeps: exactly the kernel `build` will produce."""
        saved = super()._emulate(counts)
        keep = self._keep(counts)
        for name, level in self.levels.items():
            layer = self.work.get_layer(name)
            weights = layer.get_weights()
            saved.setdefault(name, [w.copy() for w in weights])
            block = self._block(name, weights[0].shape, keep)
            weights[0][block] = weights[0][block] * magnitude_mask(weights[0][block], level)
            layer.set_weights(weights)
        return saved

    def _block(self, name: str, shape: tuple[int, ...], keep: Mapping[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        inputs = segment_indices(self.cgraph.inputs[name][0], keep)
        outputs = segment_indices(self.cgraph.outputs[name], keep)
        return np.ix_(*[np.arange(d) for d in shape[:-2]], inputs, outputs)

    def _score_levels(self, counts: Mapping[str, int], levels: dict[str, float]) -> tuple[float, float]:
        current, self.levels = self.levels, levels
        try:
            return self._score(counts)
        finally:
            self.levels = current

    def extra_proposals(self, counts: Mapping[str, int], now: float, aim: float, current_loss: float) -> list[tuple]:
        """Per kernel, the lowest sparsity level saving at least `step` of the way from the
        original to the aim (or the rest of the way), else its highest paying level: one level at
        a time, a small kernel's steps of a few hundred bytes made the search crawl."""
        gain = min(now - aim, self.config.step * (1.0 - aim))
        proposals = []
        for name in self.bytes.layers:
            interrupts.raise_if_requested()
            level = self.bytes.next_level(name, counts, self.levels.get(name, 0.0), gain)
            if level is None:
                continue
            levels = {**self.levels, name: level}
            cost = self.estimate(counts, levels)
            if cost >= now:
                continue
            loss, accuracy = self._score_levels(counts, levels)
            proposals.append(((loss - current_loss) / (now - cost), PROPOSAL + name, level, cost, loss, accuracy))
        return proposals

    def accept(self, counts: dict[str, int], name: str, value: float) -> dict[str, Any]:
        if not name.startswith(PROPOSAL):
            return super().accept(counts, name, value)
        layer = name[len(PROPOSAL):]
        entry = {"layer": layer, "from": self.levels.get(layer, 0.0), "to": value}
        self.levels[layer] = value
        return entry

    def reach(self) -> tuple[float, str]:
        if self.config.method == "uniform_sparsity":
            return self.estimate({}, {n: UNIFORM_MAX for n in self.bytes.layers}), f"every kernel at {UNIFORM_MAX:.0%} zeros"
        if self.config.method == "uniform":
            return super().reach()
        levels = {n: LEVELS[-1] for n in self.bytes.layers
                  if self.bytes.layer_bytes(n, self.floors, LEVELS[-1]) < self.bytes.layer_bytes(n, self.floors, 0.0)}  # fmt: skip
        return self.estimate(self.floors, levels), (f"every group at min_keep={self.config.min_keep:g} and every kernel "
                                                    f"where it pays at {LEVELS[-1]:.0%} zeros")  # fmt: skip

    def uniform(self, aim: float) -> dict[str, int]:
        if self.config.method != "uniform_sparsity":
            return super().uniform(aim)
        low, high = 0.0, UNIFORM_MAX  # estimate(high) <= aim (checked by reach()); the file grows below ~0.5
        every = lambda s: {n: s for n in self.bytes.layers}  # noqa: E731
        for _ in range(30):
            middle = (low + high) / 2
            if self.estimate({}, every(middle)) <= aim:
                high = middle
            else:
                low = middle
        self.levels = every(high)
        self.log(f"  uniform sparsity {high:.3f} in {len(self.levels)} kernels: estimated {self.estimate({}):.1%}")
        return {g: self.sizes[g] for g in self.groups}

    def build(self, model: tf_keras.Model, counts: Mapping[str, int]) -> tf_keras.Model:
        candidate = super().build(model, counts)
        for name, level in self.levels.items():
            weights = candidate.get_layer(name).get_weights()
            weights[0] = weights[0] * magnitude_mask(weights[0], level)
            candidate.get_layer(name).set_weights(weights)
        return candidate

    def sparsities(self) -> dict[str, float]:
        return {n: s for n, s in self.levels.items() if s > 0}

    def sparsity_report(self, model: tf_keras.Model, counts: Mapping[str, int]) -> dict[str, dict[str, Any]]:
        """Per prunable kernel: the chosen sparsity, the one measured in `model`'s kernel, and
        whether the file stores it sparse (the converter's 30% threshold)."""
        measured = weight_stats.sparsity_report(model, set(self.bytes.layers))["layers"]
        report = {}
        for name in self.bytes.layers:
            chosen = self.levels.get(name, 0.0)
            final = measured[name]["sparsity"]
            report[name] = {"weights": measured[name]["size"], "sparsity": chosen, "final_sparsity": final,
                            "stored_sparse": bool(self.bytes.layers[name][1] and final >= STORED_SPARSE_FROM),
                            "bytes": self.bytes.layer_bytes(name, counts, final)}  # fmt: skip
        return report


def byte_model(model: tf_keras.Model, cgraph: ChannelGraph, meter: CostMeter, log: Callable[[str], None]) -> ByteModel:
    """The byte model of `model` for the meter's (sparse) target, checked on one exported file."""
    assert meter.original is not None and meter.target in SPARSE_TARGETS, "a size budget on a sparse target"
    model_bytes = ByteModel(model, cgraph, meter.target, meter.original.value * 1024.0)
    model_bytes.calibrate(model, meter, log)
    return model_bytes


# --- The final fine-tune -------------------------------------------------------------------


def keep_sparsity(levels: Mapping[str, float], train: tf.data.Dataset, train_config: training.TrainConfig
                  ) -> tuple[Callable[[tf_keras.Model], tf_keras.Model] | None, list[tf_keras.callbacks.Callback]]:  # fmt: skip
    """(prepare, callbacks) for `training.fit` / `distill.distill` that hold each kernel at its
    sparsity (TFMOT ConstantSparsity per layer, from the first step); (None, []) without any."""
    if not levels:
        return None, []
    config = prune.PruneConfig(
        target_sparsity=max(levels.values()), schedule="constant",
        selection=LayerSelection(include="^(" + "|".join(re.escape(n) for n in levels) + ")$",
                                 per_layer={f"^{re.escape(n)}$": s for n, s in levels.items()}),
    )  # fmt: skip
    fit_steps = training.count_fit_steps(train_config, train)
    return (lambda model: prune.apply_pruning(model, config, fit_steps)), [tfmot.sparsity.keras.UpdatePruningStep()]


def strip(model: tf_keras.Model, levels: Mapping[str, float]) -> tf_keras.Model:
    """The fine-tuned model without pruning wrappers (zeros kept), when there were any."""
    return prune.strip(model) if levels else model


# --- Outputs -------------------------------------------------------------------------------


def report_lines(report: Mapping[str, Any]) -> list[str]:
    from nlighten_tf.render import markdown_table

    chosen = report.get("sparsity")
    if not chosen:
        return []
    rows = [{"layer": n, **c} for n, c in chosen.items()]
    return ["", "## Sparsity per kernel (fraction of zeros; stored sparse from 30%)", "", markdown_table(rows)]

