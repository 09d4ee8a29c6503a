"""Image classification: ``[B, num_classes]`` logits, cross-entropy, top-1/top-5 accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlighten_tf.tasks.base import Recipe, Task, TaskError

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras

    from nlighten_tf.export.tflite import ExportResult


class ClassificationTask(Task):
    name = "classification"
    noun = "classifier"
    model_scores = {"accuracy": "top1_%", "top5": "top5_%"}
    headline_score = "accuracy"
    file_scores = {"top1": "top1_%", "top5": "top5_%"}
    score_name = "accuracy"

    def check_data(self, recipe: Recipe) -> None:
        from nlighten_tf.data.detection import is_detection_spec

        if is_detection_spec(recipe.data.spec):
            raise TaskError(
                f"{recipe.source}: data: key 'spec': {recipe.data.spec!r} is a detection data set but "
                f"{recipe.model.name} is not a detector; use a detection model (e.g. efficientdet_lite0)"
            )

    def evaluate_keras(self, model: tf_keras.Model, scored: tf.data.Dataset, recipe: Recipe) -> dict[str, Any]:
        from nlighten_tf.optimize import training

        results = training.evaluate(model, scored)
        return {"accuracy": results.get("accuracy"), "top5": results.get("top5"), "loss": results.get("loss")}

    def evaluate_file(self, path: Path, scored: tf.data.Dataset, recipe: Recipe, runtime: str) -> dict[str, Any]:
        """Top-1/top-5 on the recipe's eval_split (the exported files' figures), read through the
        file's own preprocessing as an app would."""
        from nlighten_tf.bench import accuracy

        data = recipe.data
        measured = accuracy.evaluate(path, data.spec, data.eval_split, limit=data.eval_limit, runtime=runtime)
        return {k: measured[k] for k in ("top1", "top5", "examples", "runtime")}

    def model_score_text(self, metrics: dict[str, Any]) -> str:
        return f"accuracy {100 * metrics['accuracy']:.2f}%"

    def file_score_text(self, entry: dict[str, Any]) -> str:
        return f"top-1 {100 * entry['top1']:.2f}%" if entry.get("top1") is not None else ""

    def export_file(
        self, model: tf_keras.Model, path: Path, target: str, *, recipe: Recipe, labels: tuple[str, ...],
        scheme: str, calibration: Any, io_type: str | None, extra: dict[str, Any], quantizer: str = "auto",
        mixed: Any = None,
    ) -> ExportResult:  # fmt: skip
        from nlighten_tf.export import metadata, tflite

        size = recipe.data.image_size
        classifier = metadata.from_scheme(labels, scheme, (size, size), name=recipe.name)
        return tflite.export(
            model, path, target, representative_dataset=calibration, classifier=classifier, io_type=io_type, extra=extra,
            quantizer=quantizer, mixed=mixed,
        )  # fmt: skip
