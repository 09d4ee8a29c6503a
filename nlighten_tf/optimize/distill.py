"""Knowledge distillation (Hinton et al. 2015): a frozen teacher guides a student.

loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))

The student may carry pruning/clustering/QAT wrappers: `Distiller` is a Keras model whose
layers include the student, so TFMOT's callbacks find the wrappers (distil while pruning).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf
import tf_keras

from nlighten_tf.optimize import training
from nlighten_tf.optimize.fields import documented


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    alpha: float = documented(0.1, "weight of the hard-label loss (the teacher's soft targets get 1 - alpha)")
    temperature: float = documented(4.0, "softmax temperature of the soft targets")

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def soft_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor, temperature: float) -> tf.Tensor:
    """Mean over the batch of KL(softmax(teacher/T) || softmax(student/T))."""
    teacher = tf.nn.softmax(teacher_logits / temperature)
    log_teacher = tf.nn.log_softmax(teacher_logits / temperature)
    log_student = tf.nn.log_softmax(student_logits / temperature)
    return tf.reduce_mean(tf.reduce_sum(teacher * (log_teacher - log_student), axis=-1))


def check_compatible(student: tf_keras.Model, teacher: tf_keras.Model) -> None:
    if tuple(student.output_shape[1:]) != tuple(teacher.output_shape[1:]):
        raise ValueError(
            f"teacher {teacher.name!r} outputs {teacher.output_shape[1:]} but student {student.name!r} "
            f"outputs {student.output_shape[1:]}: they must predict the same classes"
        )


class Distiller(tf_keras.Model):
    def __init__(self, student: tf_keras.Model, teacher: tf_keras.Model, config: DistillConfig, **kwargs):
        super().__init__(**kwargs)
        check_compatible(student, teacher)
        self.student = student
        # Frozen by construction: only the student's variables get gradients, and the teacher
        # runs in inference mode. Not via teacher.trainable, which would change the caller's model.
        self.teacher = teacher
        self.config = config
        self.hard_loss = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.loss_tracker = tf_keras.metrics.Mean(name="loss")
        self.kl_tracker = tf_keras.metrics.Mean(name="distill_kl")

    def call(self, images, training=False):
        return self.student(images, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.kl_tracker, *self.compiled_metrics.metrics]

    def train_step(self, data):
        images, labels = data
        teacher_logits = self.teacher(images, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student(images, training=True)
            kl = soft_kl(teacher_logits, student_logits, self.config.temperature)
            loss = (
                self.config.alpha * self.hard_loss(labels, student_logits)
                + (1.0 - self.config.alpha) * self.config.temperature**2 * kl
                + tf.add_n(self.student.losses or [tf.constant(0.0)])
            )
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        self.loss_tracker.update_state(loss)
        self.kl_tracker.update_state(kl)
        self.compiled_metrics.update_state(labels, student_logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, labels = data
        student_logits = self.student(images, training=False)
        kl = soft_kl(self.teacher(images, training=False), student_logits, self.config.temperature)
        self.loss_tracker.update_state(self.hard_loss(labels, student_logits))
        self.kl_tracker.update_state(kl)
        self.compiled_metrics.update_state(labels, student_logits)
        return {m.name: m.result() for m in self.metrics}


@dataclasses.dataclass
class DistillResult:
    model: tf_keras.Model  # the student (with whatever wrappers `prepare` added)
    history: dict


def distill(
    student: tf_keras.Model,
    teacher: tf_keras.Model,
    train: tf.data.Dataset,
    config: DistillConfig,
    train_config: training.TrainConfig,
    validation: tf.data.Dataset | None = None,
    callbacks=(),
    strategy=None,
    prepare=None,
) -> DistillResult:
    """Trains `prepare(student)` (e.g. a pruning wrapper) against the frozen teacher."""
    holder = {}

    def build_distiller(model):
        wrapped = prepare(model) if prepare else model
        holder["student"] = wrapped
        return Distiller(wrapped, teacher, config)

    _, history = training.fit(
        student, train, train_config, validation=validation, callbacks=callbacks,
        strategy=strategy, prepare=build_distiller,
    )
    return DistillResult(holder["student"], history)
