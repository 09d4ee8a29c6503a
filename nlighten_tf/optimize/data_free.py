"""Data-free distillation: a compressed student learns the original (teacher) model's outputs on
images synthesised from the teacher's own BatchNorm statistics (`nlighten_tf.data.synthetic`),
when no labelled data is at hand.

The loss is the distillation KL on the teacher's logits only (`distill.DistillConfig` with
alpha = 0): the images have no labels. The teacher's top-1 class stands in as the label so
that Keras metrics read as agreement with the teacher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf.data import synthetic
from nlighten_tf.optimize import distill as distill_lib
from nlighten_tf.optimize import prune as prune_lib
from nlighten_tf.optimize import training


def teacher_labelled(
    teacher: tf_keras.Model, images: np.ndarray, batch_size: int, seed: int = 0, flip: bool = True
) -> tf.data.Dataset:
    """(image, teacher top-1) batches over `images`, reshuffled each pass; random horizontal
    flips (the synthesis is no more left-right specific than the data it imitates)."""
    labels = np.argmax(teacher.predict(images, batch_size=64, verbose=0), axis=-1).astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(images), seed=seed)
    if flip:
        dataset = dataset.map(lambda image, label: (tf.image.random_flip_left_right(image, seed=seed), label))
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def distill(
    student: tf_keras.Model,
    teacher: tf_keras.Model,
    config: distill_lib.DistillConfig,
    train_config: training.TrainConfig,
    images: np.ndarray | None = None,
    count: int = 256,
    scheme: str | None = None,
    synthesis: synthetic.SynthesisConfig | None = None,
    batch_size: int = 32,
    callbacks=(),
    strategy=None,
    prepare: Callable[[tf_keras.Model], tf_keras.Model] | None = None,
    log: Callable[[str], None] | None = print,
) -> distill_lib.DistillResult:
    """Distils `teacher` into `student` on synthetic images: `images` if given (model domain),
    else `count` synthesised from the teacher (`scheme` its input normalisation)."""
    if images is None:
        images = synthetic.synthesize(teacher, count, scheme, synthesis, log=log).images
    seed = (synthesis or synthetic.SynthesisConfig()).seed
    train = teacher_labelled(teacher, images, batch_size, seed=seed)
    # BatchNorm layers stay in inference mode with their moving statistics frozen: trained on
    # synthetic batches they drift to those batches' statistics, and the digits test student
    # then fell to chance (10%) in inference; frozen, it gains (tests/data/test_synthetic.py).
    # Only while distilling: the model handed on trains its BatchNorm again (a recipe's later
    # stages train on real data).
    with training.frozen_batch_norm(student) as frozen:
        result = distill_lib.distill(
            student, teacher, train, dataclasses.replace(config, alpha=0.0), train_config,
            callbacks=callbacks, strategy=strategy, prepare=prepare,
        )  # fmt: skip
    training.thaw_layers(result.model, frozen)  # their copies in a wrapped model (prepare)
    return result


def prune(
    model: tf_keras.Model,
    config: prune_lib.PruneConfig,
    train_config: training.TrainConfig,
    images: np.ndarray,
    distill_config: distill_lib.DistillConfig | None = None,
    batch_size: int = 32,
) -> tf_keras.Model:
    """Magnitude pruning (TFMOT, `config`'s schedule) of a copy of `model` while it is distilled
    from the unpruned `model` on synthetic `images`: the data-free counterpart of the prune
    stage. Returns the stripped student (zeros kept in the kernels)."""
    import tensorflow_model_optimization as tfmot

    from nlighten_tf.keras_utils import copy_model

    # The schedule needs the number of batches a pass over the images takes, nothing else.
    fit_steps = training.count_fit_steps(train_config, tf.data.Dataset.range(len(images)).batch(batch_size))
    result = distill(
        copy_model(model), model, distill_config or distill_lib.DistillConfig(), train_config, images=images,
        batch_size=batch_size, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        prepare=lambda student: prune_lib.apply_pruning(student, config, fit_steps), log=None,
    )  # fmt: skip
    return prune_lib.strip(result.model)
