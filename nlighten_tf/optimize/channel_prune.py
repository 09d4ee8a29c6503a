"""Structured (filter) pruning: remove whole channels so the network itself gets smaller.

Unlike TFMOT's unstructured pruning, which only pays off on sparse kernels, the result is a
plain, narrower dense model that is faster on every runtime (and still exports for the Edge
TPU). Three steps, each usable alone:

1. score channels with a criterion: `l1` / `l2` filter norms (Li et al. 2017), `bn_gamma`
   (|gamma| of the BatchNorm after the filter, network slimming, Liu et al. 2017),
   `entropy` of each channel's spatially averaged activation over calibration batches (Luo &
   Wu 2017), `taylor` |activation x loss gradient| (Molchanov et al. 2017);
2. choose how many channels each dependency group keeps (`allocate_channels`): a global MAdds or
   parameter budget, per-stage or per-layer ratios, spread uniformly or by a sensitivity
   scan (each group pruned alone at several ratios, validation loss measured: Distiller's
   sensitivity analysis), counted from the built graph;
3. cut them (`channel_groups.slice_model`) and, in `channel_prune`, repeat over `steps` with
   fine-tuning (optionally distilled from the unpruned model) in between.

Groups, not layers, are the unit: see `channel_groups` for how residual `Add`s and
squeeze-excite `Multiply`s tie layers' channels together.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import copy_model
from nlighten_tf.models.complexity import count_madds, count_params
from nlighten_tf.models.naming import block_of, legacy_regex_error, resolve_legacy_name
from nlighten_tf.optimize import graph as graph_lib
from nlighten_tf.optimize import training
from nlighten_tf.optimize.channel_groups import ChannelGraph, analyze, restore, slice_model, zero_inputs
from nlighten_tf.optimize.distill import DistillConfig
from nlighten_tf.optimize.fields import documented

CRITERIA = ("l1", "l2", "bn_gamma", "entropy", "taylor")
DATA_CRITERIA = ("entropy", "taylor")
ALLOCATIONS = ("uniform", "sensitivity")


def check_keep(what: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 1.0:
        raise ValueError(f"{what} is a keep ratio and must be in (0, 1], got {value!r}")


@dataclasses.dataclass(frozen=True)
class ChannelPruneConfig:
    """Targets (at least one): keep_madds or keep_params, the fraction of the model's MAdds /
    trainable parameters to keep (counted from the built graph); per_stage {stage: ratio}
    (stages are name prefixes, the same in every family: 'block3' for the third stage, 'block3b'
    for one block of it, 'stem', 'top'; MobileNetV2's old names such as 'block12' are
    translated); per_layer {layer: ratio} (the ratio applies to the
    layer's whole channel group). Explicit ratios are kept; with a global budget the other
    groups are allocated to meet it (`uniform`: one ratio for all; `sensitivity`: prune more
    where a scan says it hurts least), within `tolerance` (relative).

    steps: prune in this many rounds, each followed by `epochs_per_step` of fine-tuning
    (0: none), then `final_epochs`; distill: fine-tune against the unpruned model.
    channel_multiple rounds kept channel counts (e.g. 8 for SIMD-friendly widths); min_keep is
    the lowest ratio allocation gives a group; exclude: regex of group/layer names left whole.
    bn_recalibration_batches: after each surgery and fine-tune, re-estimate BatchNorm moving
    statistics on that many training batches (0: off). Removing channels shifts the inputs of
    the next BatchNorms, and short CPU fine-tunes leave their moving statistics stale."""

    criterion: str = documented("l1", "channel importance criterion", choices=CRITERIA)
    keep_madds: float | None = documented(None, "fraction of the model's MAdds to keep, in (0, 1]")
    keep_params: float | None = documented(None, "fraction of the trainable parameters to keep (instead of keep_madds)")
    per_stage: Mapping[str, float] = documented(
        factory=dict, doc="{stage or block: keep ratio}: block3, block3b, stem, top (MobileNetV2's old block0 .. block16 are translated)"
    )
    per_layer: Mapping[str, float] = documented(factory=dict, doc="{layer: keep ratio} for the layer's channel group")
    allocation: str = documented(
        "uniform", "how a global budget is spread: uniform, or sensitivity (a per-group scan on training "
        "batches, written as sensitivity.{json,md,png})", choices=ALLOCATIONS,
    )  # fmt: skip
    exclude: str | None = documented(None, "regex of group/layer names never pruned")
    channel_multiple: int = documented(1, "round kept channel counts to multiples of this")
    min_keep: float = documented(0.1, "lowest keep ratio the allocation gives a group")
    tolerance: float = 0.02
    steps: int = documented(1, "prune in this many rounds")
    epochs_per_step: float = documented(1.0, "fine-tuning epochs after each round (0: none)")
    final_epochs: float = documented(0.0, "extra fine-tuning epochs at the end")
    distill: DistillConfig | None = None
    calibration_batches: int = documented(4, "training batches for the entropy/taylor criteria")
    bn_recalibration_batches: int = documented(0, "re-estimate BatchNorm statistics on this many training batches (0: off)")
    entropy_bins: int = 32
    sensitivity_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    sensitivity_batches: int = documented(4, "training batches per point of the sensitivity scan")

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise ValueError(f"unknown channel criterion {self.criterion!r}; valid: {', '.join(CRITERIA)}")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"unknown allocation {self.allocation!r}; valid: {', '.join(ALLOCATIONS)}")
        if self.keep_madds is not None and self.keep_params is not None:
            raise ValueError("give keep_madds or keep_params, not both")
        if self.keep_madds is None and self.keep_params is None and not self.per_stage and not self.per_layer:
            raise ValueError("no channel-pruning target: set keep_madds, keep_params, per_stage or per_layer")
        for what, value in (("keep_madds", self.keep_madds), ("keep_params", self.keep_params)):
            if value is not None:
                check_keep(what, value)
        for kind, mapping in (("stage", self.per_stage), ("layer", self.per_layer)):
            for name, value in mapping.items():
                check_keep(f"per-{kind} target for {name!r}", value)
        if self.allocation == "sensitivity" and self.budget is None:
            raise ValueError("allocation 'sensitivity' needs a global budget (keep_madds or keep_params)")
        if self.exclude is not None:
            try:
                re.compile(self.exclude)
            except re.error as error:
                raise ValueError(f"invalid exclude regex {self.exclude!r}: {error}") from None
        if self.channel_multiple < 1:
            raise ValueError(f"channel_multiple must be >= 1, got {self.channel_multiple}")
        check_keep("min_keep", self.min_keep)
        if not 0.0 < self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in (0, 1), got {self.tolerance}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.epochs_per_step < 0 or self.final_epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs_per_step} per step, {self.final_epochs} final")
        if self.calibration_batches < 1 or self.sensitivity_batches < 1:
            raise ValueError("calibration_batches and sensitivity_batches must be >= 1")
        if self.bn_recalibration_batches < 0:
            raise ValueError(f"bn_recalibration_batches must be >= 0, got {self.bn_recalibration_batches}")
        if self.entropy_bins < 2:
            raise ValueError(f"entropy_bins must be >= 2, got {self.entropy_bins}")
        if not self.sensitivity_ratios or not all(0.0 < r < 1.0 for r in self.sensitivity_ratios):
            raise ValueError(f"sensitivity_ratios must be keep ratios in (0, 1), got {self.sensitivity_ratios}")

    @property
    def budget(self) -> tuple[str, float] | None:
        """('madds' | 'params', keep fraction) or None."""
        if self.keep_madds is not None:
            return "madds", self.keep_madds
        if self.keep_params is not None:
            return "params", self.keep_params
        return None

    @property
    def needs_data(self) -> bool:
        return self.criterion in DATA_CRITERIA or self.allocation == "sensitivity"


# --- Data ----------------------------------------------------------------------------------


def _batches(data, n: int) -> list[tuple[tf.Tensor, tf.Tensor | None]]:
    """The first `n` batches of a dataset of (images, labels) or of images."""
    if data is None:
        return []
    out = []
    for element in data.take(n):
        if isinstance(element, tuple | list):
            out.append((element[0], element[1] if len(element) > 1 else None))
        else:
            out.append((element, None))
    if not out:
        raise ValueError("the calibration/validation dataset is empty")
    return out


def _loss_function(batches):
    labels = batches[0][1]
    if labels is None:
        raise ValueError("this needs labelled data: a dataset of (images, labels)")
    one_hot = labels.shape.rank == 2 and labels.dtype.is_floating
    return training.classification_loss(0.0, one_hot=one_hot), one_hot


# --- Criteria ------------------------------------------------------------------------------


def channel_scores(
    model: tf_keras.Model,
    criterion: str = "l1",
    data: tf.data.Dataset | None = None,
    cgraph: ChannelGraph | None = None,
    batches: int = 4,
    bins: int = 32,
) -> dict[str, np.ndarray]:
    """Importance of every channel of every prunable group (higher = keep). Scores are
    combined over a group's producers (or activation taps), each normalised by its mean."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown channel criterion {criterion!r}; valid: {', '.join(CRITERIA)}")
    cgraph = cgraph or analyze(model)
    groups = cgraph.prunable
    if criterion in ("l1", "l2"):
        return {name: _norm_scores(model, g.producers, criterion) for name, g in groups.items()}
    if criterion == "bn_gamma":
        return _gamma_scores(model, cgraph)
    if data is None:
        raise ValueError(f"criterion {criterion!r} needs calibration data (a dataset of images, labels)")
    return _activation_scores(model, cgraph, _batches(data, batches), criterion, bins)


def _normalised_mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.mean([a / a.mean() if a.mean() > 0 else a for a in arrays], axis=0)


def _norm_scores(model, producers: Sequence[str], criterion: str) -> np.ndarray:
    norms = []
    for name in producers:
        kernel = model.get_layer(name).kernel.numpy()
        flat = kernel.reshape(-1, kernel.shape[-1])
        norms.append(np.abs(flat).sum(axis=0) if criterion == "l1" else np.sqrt((flat**2).sum(axis=0)))
    return _normalised_mean(norms)


def _gamma_scores(model, cgraph: ChannelGraph) -> dict[str, np.ndarray]:
    """|gamma| of the BatchNorm right after each producer; l1 for groups with none (e.g. the
    squeeze-excite reduce convolution, which has a bias instead)."""
    after: dict[str, Any] = {}
    for node in cgraph.topology.nodes:
        if isinstance(node.layer, layers.BatchNormalization) and node.layer.scale and len(node.inbound) == 1:
            after[node.inbound_names[0]] = node.layer
    scores = {}
    for name, group in cgraph.prunable.items():
        gammas = [np.abs(after[p].gamma.numpy()) for p in group.producers if p in after]
        scores[name] = _normalised_mean(gammas) if gammas else _norm_scores(model, group.producers, "l1")
    return scores


def _activation_scores(model, cgraph: ChannelGraph, batches, criterion: str, bins: int) -> dict[str, np.ndarray]:
    groups = cgraph.prunable
    tap_names = sorted({layer for g in groups.values() for layer, _ in g.taps})
    collected: dict[str, list[np.ndarray]] = {name: [] for name in tap_names}
    loss_fn = _loss_function(batches)[0] if criterion == "taylor" else None
    for images, labels in batches:
        images = tf.convert_to_tensor(images)
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(images)
            traced = graph_lib.run(model, images, training=False)
            taps = [traced.tensors[name] for name in tap_names]
            loss = loss_fn(labels, traced.outputs[0]) if loss_fn else None
        grads = tape.gradient(loss, taps) if loss_fn else [None] * len(taps)
        for name, value, grad in zip(tap_names, taps, grads, strict=True):
            spatial = tuple(range(1, value.shape.rank - 1))
            if criterion == "taylor":  # |mean over positions of a * dL/da| per example
                per_example = tf.abs(tf.reduce_mean(value * grad, axis=spatial)) if spatial else tf.abs(value * grad)
            else:
                per_example = tf.reduce_mean(value, axis=spatial) if spatial else value
            collected[name].append(per_example.numpy().reshape(per_example.shape[0], -1))
    values = {name: np.concatenate(v) for name, v in collected.items()}
    scores = {}
    for name, group in groups.items():
        per_tap = [values[layer][:, offset:offset + group.size] for layer, offset in group.taps]
        if criterion == "taylor":
            scores[name] = _normalised_mean([v.mean(axis=0) for v in per_tap])
        else:  # entropies are in nats, comparable across taps as they are
            scores[name] = np.mean([_entropy(v, bins) for v in per_tap], axis=0)
    return scores


def _entropy(values: np.ndarray, bins: int) -> np.ndarray:
    """Per column: entropy (nats) of the histogram of its values in `bins` equal bins."""
    out = np.zeros(values.shape[1])
    for c in range(values.shape[1]):
        counts, _ = np.histogram(values[:, c], bins=bins)
        p = counts[counts > 0] / values.shape[0]
        out[c] = float(-(p * np.log(p)).sum())
    return out


def kept_indices(scores: np.ndarray, count: int) -> np.ndarray:
    """The `count` highest-scoring channels, in their original order (ties: lower index)."""
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:count])


# --- Targets and allocation ----------------------------------------------------------------


def rounded_count(ratio: float, size: int, multiple: int = 1) -> int:
    """Channels kept of `size` at `ratio`, a multiple of `multiple` (at least one multiple)."""
    if size <= multiple:
        return size
    count = int(round(ratio * size / multiple)) * multiple
    return min(size, max(multiple, count))


@dataclasses.dataclass
class ChannelAllocation:
    counts: dict[str, int]  # final channels per pruned group
    sizes: dict[str, int]  # channels per group before pruning
    explicit: dict[str, float]  # groups with a per-stage / per-layer ratio
    madds: tuple[int, int]  # (before, after) from the graph
    params: tuple[int, int]
    budget: tuple[str, float] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "budget": list(self.budget) if self.budget else None,
            "madds_before": self.madds[0], "madds_after": self.madds[1],
            "params_before": self.params[0], "params_after": self.params[1],
            "groups": {
                n: {"size": self.sizes[n], "kept": k, "ratio": k / self.sizes[n]} for n, k in self.counts.items()
            },
        }  # fmt: skip


def explicit_ratios(cgraph: ChannelGraph, config: ChannelPruneConfig) -> dict[str, float]:
    """Group -> keep ratio from per_stage and per_layer (per_layer wins); clear errors for
    names that do not exist, are not prunable, or disagree within one group."""
    prunable = cgraph.prunable
    ratios: dict[str, float] = {}
    stages = cgraph.stages()
    layer_names = cgraph.outputs.keys()
    for stage, ratio in config.per_stage.items():
        # A stage ('block5') or one block ('block5c'); MobileNetV2's old names ('block12') translated.
        stage = resolve_legacy_name(stage, layer_names)
        chosen = [n for n, g in prunable.items() if stage in (g.stage, block_of(n))]
        if not chosen:
            raise ValueError(f"no prunable channel group in stage {stage!r}; stages: {', '.join(stages)}")
        ratios.update(dict.fromkeys(chosen, ratio))
    by_layer: dict[str, tuple[str, float]] = {}
    for layer_name, ratio in config.per_layer.items():
        layer_name = resolve_legacy_name(layer_name, layer_names)
        group = cgraph.group_of_layer(layer_name)
        if not group.prunable:
            why = group.fixed or "a single channel"
            raise ValueError(
                f"layer {layer_name!r}: its output channels (group {group.name!r}) cannot be pruned: {why}"
            )
        if group.name in by_layer and by_layer[group.name][1] != ratio:
            other = by_layer[group.name][0]
            raise ValueError(
                f"layers {other!r} and {layer_name!r} share channel group {group.name!r} (residual/merge) but were "
                f"given different keep ratios {by_layer[group.name][1]} and {ratio}"
            )
        by_layer[group.name] = (layer_name, ratio)
        ratios[group.name] = ratio
    return ratios


def _excluded(cgraph: ChannelGraph, pattern: str | None) -> set[str]:
    if not pattern:
        return set()
    if why := legacy_regex_error(pattern, cgraph.outputs.keys()):
        raise ValueError(f"exclude: {why}")
    return {n for n, g in cgraph.prunable.items() if any(re.search(pattern, x) for x in (n, *g.producers))}


def allocate_channels(
    model: tf_keras.Model,
    config: ChannelPruneConfig,
    sensitivity: Sensitivity | None = None,
    cgraph: ChannelGraph | None = None,
) -> ChannelAllocation:
    """How many channels each group keeps. With `allocation='sensitivity'` pass the scan."""
    cgraph = cgraph or analyze(model)
    sizes = cgraph.sizes()
    explicit = explicit_ratios(cgraph, config)
    multiple = config.channel_multiple
    counts = {n: rounded_count(r, sizes[n], multiple) for n, r in explicit.items()}
    excluded = _excluded(cgraph, config.exclude)
    free = [n for n in cgraph.prunable if n not in explicit and n not in excluded]
    full = cgraph.cost()
    if config.budget and free:
        metric, keep = config.budget
        index = 0 if metric == "madds" else 1
        target = keep * full[index]

        def cost_of(extra: dict[str, int]) -> float:
            return cgraph.cost({**counts, **extra})[index]

        if config.allocation == "sensitivity":
            if sensitivity is None:
                raise ValueError("allocation 'sensitivity' needs a sensitivity scan (see sensitivity_scan)")
            allocate = _sensitivity_allocator(sensitivity, free, sizes, config)
        else:
            def allocate(level: float) -> dict[str, int]:
                return {n: rounded_count(max(1.0 - level, config.min_keep), sizes[n], multiple) for n in free}

        allocated = _bisect(allocate, cost_of, target, full[index], metric, keep)
        floors = {n: rounded_count(config.min_keep, sizes[n], multiple) for n in free}
        counts.update(_refine(allocated, sizes, floors, multiple, cost_of, target, config.tolerance))
    elif config.budget:
        raise ValueError("every prunable channel group has an explicit ratio or is excluded: nothing left to meet "
                         "the global budget")  # fmt: skip
    counts = {n: k for n, k in counts.items() if k < sizes[n]}
    after = cgraph.cost(counts)
    sizes = {n: sizes[n] for n in counts}
    return ChannelAllocation(counts, sizes, explicit, (full[0], after[0]), (full[1], after[1]), config.budget)


def _bisect(allocate: Callable[[float], dict[str, int]], cost_of, target, full, metric: str, keep: float):
    """The allocation (from a monotone family indexed by level in [0, 1]: 0 keeps everything,
    1 prunes as far as allowed) whose cost is closest to `target`."""
    floor = cost_of(allocate(1.0))
    if floor > target * 1.0001:
        raise ValueError(
            f"keep_{metric}={keep:g} is unreachable: pruning every free group as far as min_keep allows still leaves "
            f"{floor / full:.1%} of the {metric} (fixed layers: stem input, classifier output, excluded groups); "
            "lower min_keep or raise the target"
        )
    low, high = 0.0, 1.0
    best = (abs(cost_of(allocate(0.0)) - target), 0.0)
    for _ in range(40):
        middle = (low + high) / 2
        cost = cost_of(allocate(middle))
        best = min(best, (abs(cost - target), middle))
        if cost > target:
            low = middle
        else:
            high = middle
    return allocate(best[1])


def _refine(counts, sizes, floors, multiple, cost_of, target, tolerance, max_moves=200):
    """Rounding leaves the allocation off target by up to a channel per group: move one
    channel multiple at a time on whichever group brings the cost closest to the target, until
    within a quarter of the tolerance or no move helps."""
    counts = dict(counts)
    error = abs(cost_of(counts) - target)
    for _ in range(max_moves):
        if error <= 0.25 * tolerance * target:
            break
        direction = -multiple if cost_of(counts) > target else multiple
        best = None
        for name, count in counts.items():
            moved = count + direction
            if floors[name] <= moved <= sizes[name]:
                candidate = abs(cost_of({**counts, name: moved}) - target)
                if candidate < error and (best is None or candidate < best[0]):
                    best = (candidate, name, moved)
        if best is None:
            break
        error, name, moved = best
        counts[name] = moved
    return counts


def _sensitivity_allocator(sensitivity: Sensitivity, free: Sequence[str], sizes, config: ChannelPruneConfig):
    """Distiller-style: for a tolerated loss increase d, each group keeps the smallest ratio
    whose (interpolated) scanned loss increase, and that of every larger ratio, is <= d. A tiny
    slope in the ratio breaks ties so insensitive groups are thinned evenly, not all at once."""
    missing = [n for n in free if n not in sensitivity.losses]
    if missing:
        raise ValueError(f"the sensitivity scan has no entry for group(s) {', '.join(missing[:5])}: rerun it")
    lowest = max(config.min_keep, min(sensitivity.ratios))
    grid = np.linspace(lowest, 1.0, 201)
    xs = np.array([*sensitivity.ratios, 1.0])
    order = np.argsort(xs)
    increase = {}
    for name in free:
        ys = np.array([*sensitivity.losses[name], sensitivity.base_loss]) - sensitivity.base_loss
        curve = np.maximum(np.interp(grid, xs[order], ys[order]), 0.0)
        curve = np.maximum.accumulate(curve[::-1])[::-1]  # worst case at this ratio or above
        increase[name] = curve + 1e-6 * (1.0 - grid)
    top = max(float(c.max()) for c in increase.values())

    def allocate(level: float) -> dict[str, int]:
        allowed = level * top
        out = {}
        for name in free:
            ok = np.nonzero(increase[name] <= allowed)[0]
            ratio = grid[ok[0]] if ok.size else 1.0
            out[name] = rounded_count(ratio, sizes[name], config.channel_multiple)
        return out

    return allocate


# --- Sensitivity analysis ------------------------------------------------------------------


@dataclasses.dataclass
class Sensitivity:
    """Validation loss/accuracy with each group pruned alone to each keep ratio."""

    criterion: str
    ratios: tuple[float, ...]
    base_loss: float
    base_accuracy: float
    losses: dict[str, list[float]]
    accuracies: dict[str, list[float]]
    stages: dict[str, str]

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for name in self.losses:
            row: dict[str, Any] = {"group": name, "stage": self.stages[name]}
            for ratio, loss, accuracy in zip(self.ratios, self.losses[name], self.accuracies[name], strict=True):
                row[f"loss@{ratio:g}"] = loss
                row[f"acc@{ratio:g}"] = accuracy
            rows.append(row)
        return rows

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def batch_scorer(model: tf_keras.Model, data: tf.data.Dataset, batches: int) -> Callable[[], tuple[float, float]]:
    """A function returning `model`'s (mean loss, top-1 accuracy) on the first `batches` batches
    of `data`, read once and kept: call it again after changing the model's weights in place."""
    batch_list = _batches(data, batches)
    loss_fn, one_hot = _loss_function(batch_list)

    @tf.function
    def batch_metrics(images, labels):
        logits = model(images, training=False)
        truth = tf.argmax(labels, -1) if one_hot else tf.reshape(tf.cast(labels, tf.int64), [-1])
        correct = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), truth), tf.float32))
        return loss_fn(labels, logits), correct

    def evaluate() -> tuple[float, float]:
        values = np.array([[float(v) for v in batch_metrics(x, y)] for x, y in batch_list])
        return float(values[:, 0].mean()), float(values[:, 1].mean())

    return evaluate


def sensitivity_scan(
    model: tf_keras.Model,
    data: tf.data.Dataset,
    criterion: str = "l1",
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    batches: int = 4,
    calibration: tf.data.Dataset | None = None,
    cgraph: ChannelGraph | None = None,
    scores: Mapping[str, np.ndarray] | None = None,
    groups: Sequence[str] | None = None,
) -> Sensitivity:
    """Prunes each group alone to each ratio (by `criterion`) and measures the loss on the
    first `batches` of `data`. Pruning is emulated exactly by cutting the channels at their
    consumers (`channel_groups.zero_inputs`) in a copy, which is much faster than surgery."""
    cgraph = cgraph or analyze(model)
    scores = scores or channel_scores(model, criterion, calibration or data, cgraph)
    chosen = list(groups) if groups is not None else list(cgraph.prunable)
    work = copy_model(model)
    evaluate = batch_scorer(work, data, batches)
    base_loss, base_accuracy = evaluate()
    losses, accuracies = {}, {}
    for name in chosen:
        size = cgraph.groups[name].size
        losses[name], accuracies[name] = [], []
        for ratio in ratios:
            keep = kept_indices(scores[name], rounded_count(ratio, size))
            saved = zero_inputs(work, cgraph, {name: np.setdiff1d(np.arange(size), keep)})
            loss, accuracy = evaluate()
            restore(work, saved)
            losses[name].append(loss)
            accuracies[name].append(accuracy)
    stages = {n: cgraph.groups[n].stage for n in chosen}
    return Sensitivity(criterion, tuple(float(r) for r in ratios), base_loss, base_accuracy, losses, accuracies, stages)


def plot_sensitivity(sensitivity: Sensitivity, path: str | os.PathLike[str]) -> str:
    """Validation loss increase against the keep ratio (%), one line per group, coloured by stage."""
    from nlighten_tf.render import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    stages = list(dict.fromkeys(sensitivity.stages.values()))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.95, max(len(stages), 1)))
    xs = [100 * r for r in sensitivity.ratios] + [100.0]
    labelled = set()
    for name, losses in sensitivity.losses.items():
        stage = sensitivity.stages[name]
        label = stage if stage not in labelled else None
        labelled.add(stage)
        ys = [loss - sensitivity.base_loss for loss in losses] + [0.0]
        ax.plot(xs, ys, "o-", color=colours[stages.index(stage)], alpha=0.8, markersize=3, label=label)
    ax.invert_xaxis()
    ax.set_xlabel("channels kept in the group (%)")
    ax.set_ylabel(f"validation loss increase (base {sensitivity.base_loss:.3f})")
    ax.set_title(f"Channel-pruning sensitivity per group ({sensitivity.criterion})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2, title="stage", title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, os.fspath(path))


def write_sensitivity(sensitivity: Sensitivity, output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """sensitivity.json, sensitivity.md and sensitivity.png in `output_dir`."""
    from nlighten_tf import io as atomic

    out = Path(output_dir)
    header = (f"Validation loss (and accuracy) with one channel group pruned at a time; unpruned loss "
              f"{sensitivity.base_loss:.4f}, accuracy {sensitivity.base_accuracy:.4f}; criterion {sensitivity.criterion}.")  # fmt: skip
    return {
        "json": str(atomic.write_json(out / "sensitivity.json", sensitivity.as_dict())),
        "markdown": str(atomic.write_text(out / "sensitivity.md", f"{header}\n\n{_table(sensitivity)}\n")),
        "plot": plot_sensitivity(sensitivity, out / "sensitivity.png"),
    }


def _table(sensitivity: Sensitivity) -> str:
    from nlighten_tf.render import markdown_table

    return markdown_table(sensitivity.rows())


# --- Surgery -------------------------------------------------------------------------------


def prune_to_counts(
    model: tf_keras.Model,
    counts: Mapping[str, int],
    scores: Mapping[str, np.ndarray],
    cgraph: ChannelGraph | None = None,
) -> tf_keras.Model:
    """Surgery keeping the `counts[group]` best-scored channels of each group named."""
    cgraph = cgraph or analyze(model)
    keep = {}
    for name, count in counts.items():
        if name not in cgraph.groups:
            raise ValueError(f"no channel group {name!r} in model {model.name!r}")
        if count < cgraph.groups[name].size:
            keep[name] = kept_indices(np.asarray(scores[name]), int(count))
    return slice_model(model, cgraph, keep)


def prune_channels(
    model: tf_keras.Model,
    keep: Mapping[str, float],
    criterion: str = "l1",
    data: tf.data.Dataset | None = None,
    channel_multiple: int = 1,
    batches: int = 4,
) -> tf_keras.Model:
    """One-shot surgery: `keep` maps layer (or group) names to keep ratios in (0, 1]; each
    ratio applies to the named layer's whole channel group. No training."""
    cgraph = analyze(model)
    config = ChannelPruneConfig(criterion=criterion, per_layer=dict(keep), channel_multiple=channel_multiple,
                                calibration_batches=batches)  # fmt: skip
    chosen = allocate_channels(model, config, cgraph=cgraph)
    scores = channel_scores(model, criterion, data, cgraph, batches=batches) if chosen.counts else {}
    return prune_to_counts(model, chosen.counts, scores, cgraph)


# --- The iterative schedule ----------------------------------------------------------------


@dataclasses.dataclass
class ChannelPruneResult:
    model: tf_keras.Model
    report: dict[str, Any]
    history: list[dict[str, Any]]  # one entry per step (and the final fine-tune)
    sensitivity: Sensitivity | None = None


def step_counts(sizes: Mapping[str, int], final: Mapping[str, int], step: int, steps: int) -> dict[str, int]:
    """Channels per group after `step` of `steps`: the removals spread evenly over the steps."""
    return {n: sizes[n] - int(math.floor((sizes[n] - final[n]) * step / steps)) for n in final}


def channel_prune(
    model: tf_keras.Model,
    config: ChannelPruneConfig,
    train: tf.data.Dataset | None = None,
    validation: tf.data.Dataset | None = None,
    train_config: training.TrainConfig | None = None,
    strategy=None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
    log: Callable[[str], None] | None = None,
    prepare: Callable[[tf_keras.Model], tf_keras.Model] | None = None,
) -> ChannelPruneResult:
    """Allocates the channel counts on `model` (sensitivity scan on `validation` if asked), then
    prunes in `config.steps` rounds, re-scoring the current model each round (criteria that
    need data read `train`, else `validation`) and fine-tuning on `train` with `train_config`
    (its epochs replaced by `epochs_per_step` / `final_epochs`), distilled from the unpruned
    model if `config.distill`. `strategy`, `callbacks` and `prepare` (e.g. copy the model into a
    strategy's scope) go to every fine-tune. The input model is not modified."""
    log = log or (lambda message: None)
    calibration = train if train is not None else validation
    if config.criterion in DATA_CRITERIA and calibration is None:
        raise ValueError(f"criterion {config.criterion!r} needs calibration data: pass train or validation")
    if config.allocation == "sensitivity" and validation is None and train is None:
        raise ValueError("allocation 'sensitivity' needs validation data")
    if config.bn_recalibration_batches and calibration is None:
        raise ValueError("bn_recalibration_batches needs data: pass train or validation")
    fine_tunes = config.epochs_per_step > 0 or config.final_epochs > 0
    if fine_tunes and train is None:
        raise ValueError("fine-tuning needs training data: pass train, or set epochs_per_step=0 and final_epochs=0")
    cgraph = analyze(model)
    sensitivity = None
    if config.allocation == "sensitivity":
        log(f"  sensitivity scan: {len(cgraph.prunable)} groups x {len(config.sensitivity_ratios)} ratios")
        scores = channel_scores(model, config.criterion, calibration, cgraph, config.calibration_batches,
                                config.entropy_bins)  # fmt: skip
        sensitivity = sensitivity_scan(
            model, validation if validation is not None else train, config.criterion, config.sensitivity_ratios,
            config.sensitivity_batches, cgraph=cgraph, scores=scores,
        )  # fmt: skip
    chosen = allocate_channels(model, config, sensitivity, cgraph)
    _check_budget(chosen, config)
    base = train_config or training.TrainConfig(verbose=0)
    current, history = model, []
    madds0, params0 = chosen.madds[0], chosen.params[0]
    for step in range(1, config.steps + 1):
        counts = step_counts(chosen.sizes, chosen.counts, step, config.steps)
        graph_now = analyze(current)
        scores = channel_scores(current, config.criterion, calibration, graph_now, config.calibration_batches,
                                config.entropy_bins) if counts else {}  # fmt: skip
        current = prune_to_counts(current, counts, scores, graph_now)
        if config.bn_recalibration_batches:  # downstream statistics lost the removed channels' share
            training.recalibrate_batch_norm(current, calibration, config.bn_recalibration_batches)
        entry: dict[str, Any] = {"step": step, "madds": count_madds(current), "params": count_params(current)}
        entry["madds_ratio"], entry["params_ratio"] = entry["madds"] / madds0, entry["params"] / params0
        if config.epochs_per_step > 0:
            current, fit_history = _fine_tune(current, model, train, config, base, config.epochs_per_step,
                                              strategy, callbacks, prepare)  # fmt: skip
            entry["train"] = {k: float(v[-1]) for k, v in fit_history.items() if v}
        if validation is not None:
            entry.update({f"val_{k}": v for k, v in training.evaluate(current, validation).items()})
        log(f"  step {step}/{config.steps}: {entry['madds_ratio']:.1%} of MAdds, {entry['params_ratio']:.1%} of params"
            + (f", validation accuracy {100 * entry['val_accuracy']:.2f}%" if "val_accuracy" in entry else ""))
        history.append(entry)
    if config.final_epochs > 0:
        current, fit_history = _fine_tune(current, model, train, config, base, config.final_epochs, strategy,
                                          callbacks, prepare)  # fmt: skip
        entry = {"step": "final", "train": {k: float(v[-1]) for k, v in fit_history.items() if v}}
        if validation is not None:
            entry.update({f"val_{k}": v for k, v in training.evaluate(current, validation).items()})
        history.append(entry)
    report = {
        "criterion": config.criterion, "allocation": config.allocation, "steps": config.steps, **chosen.as_dict(),
        "madds_ratio": count_madds(current) / madds0, "params_ratio": count_params(current) / params0,
        "explicit": chosen.explicit,
    }  # fmt: skip
    return ChannelPruneResult(current, report, history, sensitivity)


def _check_budget(chosen: ChannelAllocation, config: ChannelPruneConfig) -> None:
    if not chosen.budget:
        return
    metric, keep = chosen.budget
    before, after = chosen.madds if metric == "madds" else chosen.params
    achieved = after / before
    if abs(achieved - keep) > config.tolerance * keep:
        raise RuntimeError(
            f"the channel allocation keeps {achieved:.1%} of the {metric}, target {keep:.1%} +- {config.tolerance:.0%} "
            f"(relative): channel counts are too coarse (channel_multiple={config.channel_multiple}) or too many "
            "groups have explicit ratios"
        )


def _fine_tune(student, teacher, train, config, base, epochs, strategy, callbacks, prepare):
    train_config = dataclasses.replace(base, epochs=epochs)
    if config.distill is not None:
        from nlighten_tf.optimize import distill

        result = distill.distill(student, teacher, train, config.distill, train_config, callbacks=callbacks,
                                 strategy=strategy, prepare=prepare)  # fmt: skip
        model, history = result.model, result.history
    else:
        model, history = training.fit(student, train, train_config, callbacks=callbacks, strategy=strategy,
                                      prepare=prepare)  # fmt: skip
    if config.bn_recalibration_batches:
        training.recalibrate_batch_norm(model, train, config.bn_recalibration_batches)
    return model, history
