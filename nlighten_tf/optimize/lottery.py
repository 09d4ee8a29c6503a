"""The lottery-ticket loop (Frankle & Carbin 2019; late rewinding: Frankle et al. 2020).

Each round trains the network, removes `prune_fraction` of the weights still alive in every
selected kernel (smallest magnitude first), rewinds the survivors to their values at
initialisation (or after `rewind_steps` steps of training) and retrains with the masks held
fixed. Remaining fractions follow (1 - p)^k: 0.8, 0.64, 0.512, ... A random-reinitialisation
control trains the same masks from fresh random weights: a winning ticket beats it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf.keras_utils import copy_model, kernel_of, unwrap
from nlighten_tf.optimize import training
from nlighten_tf.optimize.fields import documented
from nlighten_tf.optimize.selection import LayerSelection


@dataclasses.dataclass(frozen=True)
class LotteryConfig:
    rounds: int = documented(3, "pruning rounds after the dense round 0")
    prune_fraction: float = documented(0.2, "fraction of the surviving weights removed per round, in (0, 1)")
    rewind_steps: int = documented(0, "0: rewind to initialisation; k > 0: late rewinding to step k")
    random_control: bool = documented(True, "also train each round's masks from a fresh random initialisation")
    selection: LayerSelection = dataclasses.field(default_factory=LayerSelection)

    def __post_init__(self):
        if self.selection.per_layer:
            raise ValueError("per_layer is not supported by the lottery loop (one prune_fraction for every kernel)")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if not 0.0 < self.prune_fraction < 1.0:
            raise ValueError(f"prune_fraction must be in (0, 1), got {self.prune_fraction}")
        if self.rewind_steps < 0:
            raise ValueError(f"rewind_steps must be >= 0, got {self.rewind_steps}")


Masks = dict[str, np.ndarray]


def next_masks(model: tf_keras.Model, masks: Masks, keep_fraction: float) -> Masks:
    """Per kernel, keep the round(size * keep_fraction) largest surviving weights (keep_fraction
    of the whole kernel, not of the survivors). Pruned weights rank below every survivor, so
    masks only ever shrink."""
    updated = {}
    for name, mask in masks.items():
        values = np.abs(kernel_of(model.get_layer(name)).numpy()).ravel()
        score = np.where(mask.ravel() > 0, values, -1.0)
        keep = int(round(mask.size * keep_fraction))
        flat = np.zeros(mask.size, np.float32)
        flat[np.argsort(-score, kind="stable")[:keep]] = 1.0
        updated[name] = flat.reshape(mask.shape)
    return updated


def apply_masks(model: tf_keras.Model, masks: Masks) -> None:
    for name, mask in masks.items():
        kernel = kernel_of(model.get_layer(name))
        kernel.assign(kernel * tf.constant(mask, kernel.dtype))


class HoldMasks(tf_keras.callbacks.Callback):
    """Zeroes pruned weights after every optimizer step, so they never regrow."""

    def __init__(self, masks: Masks):
        super().__init__()
        self.masks = masks

    def on_train_begin(self, logs=None):
        apply_masks(self.model, self.masks)

    def on_train_batch_end(self, batch, logs=None):
        apply_masks(self.model, self.masks)


@dataclasses.dataclass
class LotteryRound:
    round: int
    target_remaining: float
    remaining: float  # measured fraction of non-zero weights in the selected kernels
    accuracy: float
    control_accuracy: float | None
    model: tf_keras.Model = dataclasses.field(repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "model"}


def remaining_fraction(model: tf_keras.Model, names) -> float:
    alive = total = 0
    for name in names:
        values = kernel_of(model.get_layer(name)).numpy()
        alive += np.count_nonzero(values)
        total += values.size
    return alive / total


def lottery(
    model: tf_keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset,
    config: LotteryConfig,
    train_config: training.TrainConfig,
    strategy=None,
    on_round: Callable[[LotteryRound], None] | None = None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
) -> list[LotteryRound]:
    """Runs round 0 (dense) and `config.rounds` pruning rounds; returns one entry per round.
    `callbacks` see every masked training in order: each round's ticket, then its control."""
    template = copy_model(model)
    names = [unwrap(layer).name for layer in config.selection.selected_layers(template)]
    rewind = _rewind_point(template, train, config, train_config, strategy)
    masks = {name: np.ones(kernel_of(template.get_layer(name)).shape, np.float32) for name in names}

    rounds = []
    previous = None
    for index in range(config.rounds + 1):
        if index:
            masks = next_masks(previous, masks, (1 - config.prune_fraction) ** index)
        ticket = _train_masked(template, rewind, masks, train, train_config, strategy, callbacks)
        control = None
        if config.random_control and index:
            fresh = tf_keras.models.clone_model(template)  # same architecture, new random weights
            control_model = _train_masked(fresh, fresh.get_weights(), masks, train, train_config, strategy, callbacks)
            control = training.evaluate(control_model, validation)["accuracy"]
        entry = LotteryRound(
            round=index,
            target_remaining=(1 - config.prune_fraction) ** index,
            remaining=remaining_fraction(ticket, names),
            accuracy=training.evaluate(ticket, validation)["accuracy"],
            control_accuracy=control,
            model=ticket,
        )
        rounds.append(entry)
        if on_round:
            on_round(entry)
        previous = ticket
    return rounds


def _rewind_point(template, train, config, train_config, strategy) -> list[np.ndarray]:
    if not config.rewind_steps:
        return template.get_weights()
    batches = training.count_batches(train)
    warmup = dataclasses.replace(train_config, epochs=config.rewind_steps / batches, lr_schedule="constant")
    trained, _ = training.fit(copy_model(template), train, warmup, strategy=strategy)
    return trained.get_weights()


def _train_masked(template, weights, masks, train, train_config, strategy, callbacks=()) -> tf_keras.Model:
    def prepare(_):
        model = tf_keras.models.clone_model(template)
        model.set_weights(weights)
        return model

    trained, _ = training.fit(
        template, train, train_config, callbacks=[HoldMasks(masks), *callbacks], strategy=strategy, prepare=prepare
    )
    return trained

