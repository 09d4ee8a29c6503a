"""Magnitude pruning with TFMOT, with schedules expressed in epochs.

Schedules are laid out on the real number of training steps, so that a mask-update
`frequency` larger than the run (which silently prunes nothing) cannot happen: the last
update always lands on the schedule's end step, and the achieved sparsity is checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from nlighten_tf.keras_utils import unwrap
from nlighten_tf.optimize import training, weight_stats
from nlighten_tf.optimize.fields import documented
from nlighten_tf.optimize.selection import LayerSelection, wrap_selected

SCHEDULES = ("polynomial", "constant")
TOLERANCE = 0.01

_sparsity = tfmot.sparsity.keras


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """target_sparsity: fraction of zeros in each selected kernel. begin/end_epoch: where the
    schedule ramps (polynomial) or holds (constant); end defaults to 75% of training so the
    network recovers afterwards. frequency: steps between mask updates (an upper bound).
    m_by_n: structured sparsity, e.g. (2, 4) keeps 2 of every 4 weights (target ignored).
    Depthwise kernels are never pruned: TFMOT's prune registry lists no prunable weights for
    DepthwiseConv2D (they are a few percent of the weights and pruning them costs accuracy)."""

    target_sparsity: float = documented(0.75, "fraction of zeros in each selected kernel, in [0, 1)")
    schedule: str = documented("polynomial", "how sparsity ramps from initial_sparsity to target_sparsity", choices=SCHEDULES)
    initial_sparsity: float = documented(0.0, "sparsity at begin_epoch")
    begin_epoch: float = documented(0.0, "epoch the schedule starts")
    end_epoch: float | None = documented(None, "epoch the target is reached (null: 75% of the stage's epochs)")
    frequency: int = documented(100, "steps between mask updates (clamped to the run)")
    selection: LayerSelection = dataclasses.field(default_factory=LayerSelection)
    m_by_n: tuple[int, int] | None = documented(None, "structured sparsity [M, N], e.g. [2, 4] keeps 2 of every 4 weights (target ignored)")

    def __post_init__(self):
        check_sparsity("target_sparsity", self.target_sparsity)
        check_sparsity("initial_sparsity", self.initial_sparsity)
        for pattern, value in self.selection.per_layer.items():
            check_sparsity(f"per-layer sparsity for {pattern!r}", value)
        if self.initial_sparsity > self.target_sparsity:
            raise ValueError("initial_sparsity must not exceed target_sparsity")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown pruning schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1 step, got {self.frequency}")
        if self.begin_epoch < 0 or (self.end_epoch is not None and self.end_epoch <= self.begin_epoch):
            raise ValueError(f"need 0 <= begin_epoch < end_epoch, got {self.begin_epoch}, {self.end_epoch}")
        if self.m_by_n is not None:
            if len(self.m_by_n) != 2:
                raise ValueError(f"m_by_n must be [M, N], got {list(self.m_by_n)}")
            m, n = self.m_by_n
            if not 0 < m < n:
                raise ValueError(f"m_by_n must be (M, N) with 0 < M < N, got {self.m_by_n}")


def check_sparsity(what: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {value}")


@dataclasses.dataclass(frozen=True)
class ScheduleSteps:
    begin: int
    end: int
    frequency: int


def lay_out_schedule(config: PruneConfig, fit_steps: training.FitSteps) -> ScheduleSteps:
    """Converts the epoch-based schedule to steps on which the final update really happens."""
    last_step = fit_steps.total - 1  # UpdatePruningStep numbers the steps 0 .. total-1
    begin = min(round(config.begin_epoch * fit_steps.batches), last_step)
    end_epoch = config.end_epoch if config.end_epoch is not None else 0.75 * fit_steps.total / fit_steps.batches
    end = min(max(round(end_epoch * fit_steps.batches), begin + 1), last_step)
    if end <= begin:
        raise ValueError(
            f"the pruning schedule needs at least 2 training steps after begin_epoch={config.begin_epoch}; "
            f"the run has {fit_steps.total} steps: train longer or begin earlier"
        )
    frequency = min(config.frequency, end - begin)
    end = begin + (end - begin) // frequency * frequency  # the last update lands on `end`
    return ScheduleSteps(begin, end, frequency)


def make_schedule(config: PruneConfig, steps: ScheduleSteps, target: float):
    if config.schedule == "constant":
        return _sparsity.ConstantSparsity(target, begin_step=steps.begin, end_step=steps.end, frequency=steps.frequency)
    return _sparsity.PolynomialDecay(
        initial_sparsity=min(config.initial_sparsity, target),
        final_sparsity=target,
        begin_step=steps.begin,
        end_step=steps.end,
        frequency=steps.frequency,
    )


def selected_names(model: tf_keras.Model, config: PruneConfig) -> set[str]:
    return {unwrap(layer).name for layer in config.selection.selected_layers(model, depthwise=False)}


def apply_pruning(model: tf_keras.Model, config: PruneConfig, fit_steps: training.FitSteps) -> tf_keras.Model:
    """A copy of `model` with the selected layers wrapped for pruning (others untouched)."""
    config.selection.validate_model(model)
    names = selected_names(model, config)
    steps = lay_out_schedule(config, fit_steps)

    def wrap(layer):
        target = config.selection.target_for(layer, config.target_sparsity)
        kwargs = {"pruning_schedule": make_schedule(config, steps, target)}
        if config.m_by_n:
            kwargs["sparsity_m_by_n"] = tuple(config.m_by_n)
        return _sparsity.prune_low_magnitude(layer, **kwargs)

    return wrap_selected(model, names, wrap, "pruned", ", or choose policy 'conv1x1' or 'xnnpack'")


def strip(model: tf_keras.Model) -> tf_keras.Model:
    """The plain Keras model (pruning wrappers removed, zeros kept in the kernels)."""
    return _sparsity.strip_pruning(model)


@dataclasses.dataclass
class PruneResult:
    model: tf_keras.Model
    report: dict
    history: dict


def prune(
    model: tf_keras.Model,
    train: tf.data.Dataset,
    config: PruneConfig,
    train_config: training.TrainConfig,
    validation: tf.data.Dataset | None = None,
    strategy=None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
    compile_options: Mapping[str, Any] | None = None,
) -> PruneResult:
    """Fine-tunes `model` while pruning it to the target; returns the stripped model and the
    per-layer / global sparsity report. Raises RuntimeError if a layer missed its target."""
    fit_steps = training.count_fit_steps(train_config, train)
    names = selected_names(model, config)
    pruned, history = training.fit(
        model,
        train,
        train_config,
        validation=validation,
        callbacks=[_sparsity.UpdatePruningStep(), *callbacks],
        strategy=strategy,
        prepare=lambda m: apply_pruning(m, config, fit_steps),
        compile_options=compile_options,
    )
    stripped = strip(pruned)
    report = weight_stats.sparsity_report(stripped, names)
    if not config.m_by_n:
        for name, stats in report["layers"].items():
            target = config.selection.target_for(stripped.get_layer(name), config.target_sparsity)
            stats["target"] = target
            if stats["sparsity"] < target - TOLERANCE:
                raise RuntimeError(
                    f"layer {name!r} reached sparsity {stats['sparsity']:.3f}, target {target:.3f}: "
                    "the pruning schedule did not complete"
                )
    return PruneResult(stripped, report, history)
