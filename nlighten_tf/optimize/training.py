"""Compiling, training and evaluating classifiers, under any tf.distribute strategy.

Every technique trains through `fit` so that scaling out is one argument: a strategy name
('default', 'mirrored', 'multi_worker' — the last reads TF_CONFIG) or a Strategy object.
Models output logits; labels are integer class ids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import tensorflow as tf
import tf_keras

from nlighten_tf import interrupts
from nlighten_tf.errors import NlightenError
from nlighten_tf.keras_utils import copy_model
from nlighten_tf.optimize.fields import documented

STRATEGIES = ("default", "mirrored", "multi_worker")
_multi_worker: tf.distribute.Strategy | None = None  # reads TF_CONFIG; see get_strategy
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")
# More epochs than this is a typo (1e308 overflowed the step arithmetic); 10,000 epochs of the
# smallest data set here already take days.
MAX_EPOCHS = 10_000.0


class TrainingDiverged(NlightenError, RuntimeError):
    """The training loss became NaN or infinite: the weights are garbage from then on, so the
    run stops there instead of saving and exporting them."""


class StopOnNonFiniteLoss(tf_keras.callbacks.Callback):
    """Raises TrainingDiverged at the first batch whose loss is NaN or infinite. (Keras's own
    TerminateOnNaN only ends `fit` quietly, and the caller would save the NaN model.)"""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrainingDiverged(
                f"training diverged: the loss is {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}; "
                "nothing of this training was kept. Fix: a lower learning_rate (or check the data)"
            )


class StopOnInterrupt(tf_keras.callbacks.Callback):
    """Raises a deferred Ctrl-C / SIGTERM (nlighten_tf.interrupts) at the end of a batch: after
    tracing, between steps, where TensorFlow's state is consistent."""

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        interrupts.raise_if_requested()

    on_test_batch_end = on_predict_batch_end = on_train_batch_end


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: float = documented(1.0, "training epochs; fractions allowed (0.3 = the first 30% of a pass)")
    learning_rate: float = documented(1e-3, "peak learning rate")
    optimizer: str = documented("adam", "optimizer", choices=OPTIMIZERS)
    lr_schedule: str = documented("cosine", "learning-rate schedule", choices=LR_SCHEDULES)
    label_smoothing: float = documented(0.0, "label smoothing, from 0 to below 1")
    verbose: int = 1  # Keras progress output; set by the caller, not a recipe key

    def __post_init__(self):
        for key in ("epochs", "learning_rate", "label_smoothing"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{key} must be a finite number, got {value!r}")
        if self.epochs <= 0 or self.epochs > MAX_EPOCHS:
            raise ValueError(f"epochs must be > 0 and <= {MAX_EPOCHS:,.0f}, got {self.epochs:g}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be from 0 to below 1, got {self.label_smoothing}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule {self.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")


def get_strategy(strategy: str | tf.distribute.Strategy | None = None) -> tf.distribute.Strategy:
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    name = strategy or "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # Every GPU, else every (logical) CPU device: MirroredStrategy's own default would take
        # a single CPU and mirror nothing.
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multi_worker":
        # One per process, made before TensorFlow runs any op: collective ops can only be
        # configured at program start-up, so tools call get_strategy first thing in main().
        global _multi_worker
        if _multi_worker is None:
            _multi_worker = tf.distribute.MultiWorkerMirroredStrategy()
        return _multi_worker
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")


def scope(strategy: tf.distribute.Strategy):
    """The strategy's variable scope (a no-op context for the default strategy)."""
    if strategy is tf.distribute.get_strategy():
        return contextlib.nullcontext()
    return strategy.scope()


def count_batches(dataset: tf.data.Dataset) -> int:
    cardinality = int(dataset.cardinality())
    if cardinality < 0:  # unknown or infinite: count once
        cardinality = sum(1 for _ in dataset)
    if cardinality == 0:
        raise ValueError("the training dataset is empty")
    return cardinality


@dataclasses.dataclass(frozen=True)
class FitSteps:
    """How `fit` runs config.epochs over a dataset of `batches` batches: Keras epochs of
    `steps_per_epoch` steps; step-based schedules (pruning) are laid out on `total` steps."""

    epochs: int
    steps_per_epoch: int
    batches: int

    @property
    def total(self) -> int:
        return self.epochs * self.steps_per_epoch


def count_fit_steps(config: TrainConfig, dataset: tf.data.Dataset) -> FitSteps:
    batches = count_batches(dataset)
    wanted = max(1, math.ceil(config.epochs * batches))
    epochs = math.ceil(wanted / batches)
    return FitSteps(epochs=epochs, steps_per_epoch=math.ceil(wanted / epochs), batches=batches)


def make_optimizer(config: TrainConfig, steps: int) -> tf_keras.optimizers.Optimizer:
    rate = config.learning_rate
    if config.lr_schedule == "cosine":
        rate = tf_keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=steps, alpha=0.05)
    if config.optimizer == "sgd":
        return tf_keras.optimizers.SGD(rate, momentum=0.9, nesterov=True)
    if config.optimizer == "rmsprop":
        return tf_keras.optimizers.RMSprop(rate)
    return tf_keras.optimizers.Adam(rate)


def has_one_hot_labels(dataset: tf.data.Dataset) -> bool:
    """MixUp/CutMix datasets carry one-hot (soft) labels; the others integer class ids."""
    label_spec = dataset.element_spec[1]
    return label_spec.shape.rank == 2 and label_spec.dtype.is_floating


def compile_classifier(model: tf_keras.Model, config: TrainConfig, steps: int, one_hot: bool = False) -> None:
    if one_hot:
        metrics = [
            tf_keras.metrics.CategoricalAccuracy(name="accuracy"),
            tf_keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ]
    else:
        metrics = [
            tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            tf_keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ]
    model.compile(
        optimizer=make_optimizer(config, steps),
        loss=classification_loss(config.label_smoothing, one_hot),
        metrics=metrics,
    )


def classification_loss(label_smoothing: float = 0.0, one_hot: bool = False):
    if one_hot:
        return tf_keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    if label_smoothing:
        # Label smoothing needs one-hot targets; our datasets carry integer labels.
        def loss(labels, logits):
            one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), tf.shape(logits)[-1])
            return tf_keras.losses.categorical_crossentropy(
                one_hot, logits, from_logits=True, label_smoothing=label_smoothing
            )

        return loss
    return tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fit(
    model: tf_keras.Model,
    train: tf.data.Dataset,
    config: TrainConfig,
    validation: tf.data.Dataset | None = None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
    strategy: str | tf.distribute.Strategy | None = None,
    prepare: Callable[[tf_keras.Model], tf_keras.Model] | None = None,
    compile_options: Mapping[str, Any] | None = None,
) -> tuple[tf_keras.Model, dict[str, list[float]]]:
    """Trains `prepare(model)` (e.g. a TFMOT wrapper) for config.epochs and returns it with history.

    `prepare` runs under the strategy's scope so that wrapper variables are mirrored too.
    Fractional epochs train on the first part of each pass over `train`. A NaN or infinite
    loss raises TrainingDiverged (StopOnNonFiniteLoss) at that batch. A classifier by
    default (cross-entropy on integer or one-hot labels); other tasks pass `compile_options`,
    the keyword arguments of ``model.compile`` besides the optimizer (e.g.
    ``detection.compile_losses()``): the optimizer and its schedule always come from `config`.
    """
    if compile_options is not None and "optimizer" in compile_options:
        raise ValueError("compile_options must not set the optimizer: it comes from the TrainConfig")
    resolved = get_strategy(strategy)
    fit_steps = count_fit_steps(config, train)
    distributed = resolved is not tf.distribute.get_strategy()  # asked outside the scope
    with scope(resolved):
        if prepare:
            trained = prepare(model)
        elif distributed:
            # A distributed strategy trains only variables made under its scope; the model was
            # built outside it (by the tool or the previous stage): train a copy made inside.
            trained = copy_model(model)
        else:
            trained = model
        if compile_options is None:
            compile_classifier(trained, config, fit_steps.total, one_hot=has_one_hot_labels(train))
        else:
            trained.compile(optimizer=make_optimizer(config, fit_steps.total), **compile_options)
    history = trained.fit(
        train.repeat(),
        epochs=fit_steps.epochs,
        steps_per_epoch=fit_steps.steps_per_epoch,
        validation_data=validation,
        callbacks=[*callbacks, StopOnNonFiniteLoss(), StopOnInterrupt()],
        verbose=config.verbose,
    )
    return trained, history.history


def evaluate(model: tf_keras.Model, dataset: tf.data.Dataset) -> dict[str, float]:
    """Top-1 / top-5 accuracy and loss of a (possibly uncompiled) classifier on a dataset."""
    if getattr(model, "compiled_loss", None) is None:
        compile_classifier(model, TrainConfig(verbose=0), steps=1, one_hot=has_one_hot_labels(dataset))
    results = model.evaluate(dataset, verbose=0, return_dict=True, callbacks=[StopOnInterrupt()])
    return {k: float(v) for k, v in results.items()}


@contextlib.contextmanager
def frozen_batch_norm(model: tf_keras.Model) -> Iterator[list[str]]:
    """Inside the block every trainable BatchNorm layer of `model` is frozen (Keras 2: a frozen
    BatchNorm also runs in inference mode, so its moving statistics stay as they are); after it
    they train again. Yields the frozen layers' names, for copies of them in a wrapped model.

    For fine-tuning on images unlike the model's own data (synthetic images, a few hundred photos
    for an ImageNet network): trained there, the statistics drift to those batches'."""
    names = [layer.name for layer in model.layers
             if isinstance(layer, tf_keras.layers.BatchNormalization) and layer.trainable]  # fmt: skip
    for name in names:
        model.get_layer(name).trainable = False
    try:
        yield names
    finally:
        for name in names:
            model.get_layer(name).trainable = True


def thaw_layers(model: tf_keras.Model, names: Sequence[str]) -> None:
    """Makes the layers of `model` named in `names` trainable: the copies of layers
    `frozen_batch_norm` froze, in a model trained inside it and rebuilt (a TFMOT wrapper's clone,
    a stripped model), which the block's own restore does not reach."""
    for layer in model.layers:
        if layer.name in names:
            layer.trainable = True


def recalibrate_batch_norm(model: tf_keras.Model, data: tf.data.Dataset, batches: int) -> None:
    """Replaces every BatchNorm's moving mean/variance, in place, by their average over the
    first `batches` batches of `data` (a forward pass in training mode; weights unchanged).

    After a short fine-tune the moving statistics (momentum 0.99) still mostly reflect the
    model before it, and evaluation in inference mode collapses; pruning papers
    re-estimate them the same way ("adaptive BatchNorm", EagleEye, Li et al. 2020)."""
    if data is None:
        raise ValueError("BatchNorm recalibration needs data (a dataset of images, labels)")
    norms = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    if not norms:
        return
    images = [element[0] if isinstance(element, tuple | list) else element for element in data.take(batches)]
    if not images:
        raise ValueError("BatchNorm recalibration got an empty dataset")
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.moving_mean.assign(tf.zeros_like(layer.moving_mean))
            layer.moving_variance.assign(tf.ones_like(layer.moving_variance))
        for index, batch in enumerate(images):
            for layer in norms:  # a running average: batch i gets weight 1 / (i + 1)
                layer.momentum = index / (index + 1)
            model(batch, training=True)
    finally:
        for layer, momentum in zip(norms, momenta, strict=True):
            layer.momentum = momentum
