"""Semantic segmentation (LR-ASPP heads, `models/heads.py`): per-pixel cross-entropy on
``(images, masks)`` from `data.segmentation.load_segmentation`, scored as mean IoU."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlighten_tf.tasks.base import Recipe, Task, TaskError

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras

    from nlighten_tf.data import DatasetInfo
    from nlighten_tf.export.tflite import ExportResult


def _ignore_label() -> int:
    from nlighten_tf.data import segmentation

    return segmentation.IGNORE_LABEL


def mean_iou(predict, dataset: tf.data.Dataset, num_classes: int) -> tuple[float, int]:
    """(mean IoU, images) of `predict` (images -> logits [B, H, W, classes]) over `dataset`."""
    from nlighten_tf.models import heads

    labels, predictions = [], []
    for images, masks in dataset:
        predictions.append(np.asarray(predict(images)).argmax(-1))
        labels.append(np.asarray(masks))
    if not labels:
        raise ValueError("the evaluation dataset is empty")
    labels_all, predictions_all = np.concatenate(labels), np.concatenate(predictions)
    return heads.mean_iou(labels_all, predictions_all, num_classes, _ignore_label()), len(labels_all)


class SegmentationTask(Task):
    name = "segmentation"
    noun = "segmenter"
    # The stages whose training takes compile options, and the exports (no Edge TPU or device
    # scoring yet: the interpreter's mean IoU is measured on the host).
    stage_types = ("train", "prune", "cluster", "qat", "export", "benchmark")
    model_scores = {"mean_iou": "miou_%"}
    headline_score = "mean_iou"
    file_scores = {"mean_iou": "miou_%"}
    score_name = "mean IoU"
    keras_scoring = ": mean IoU"
    checks_raw_splits = False  # opened by the segmentation loader
    scores_on_devices = False

    data_kind = "segmentation"
    data_specs = "shapes, tfds:oxford_iiit_pet"
    augment_refused = "masks would not follow"

    def accepts_data(self, spec: str) -> bool:
        from nlighten_tf.data.segmentation import is_segmentation_spec

        return is_segmentation_spec(spec)

    def check_data(self, recipe: Recipe) -> None:
        super().check_data(recipe)
        if recipe.model.options.get("output_stride", 1) != 1:
            raise TaskError(
                f"{recipe.source}: model: key 'options.output_stride': recipes score full-resolution masks: use 1"
            )

    def load(self, spec: str, split: str, **options: Any) -> tuple[tf.data.Dataset, DatasetInfo]:
        from nlighten_tf.data import segmentation

        options.pop("augment", None)  # refused by check_data
        return segmentation.load_segmentation(spec, split, **options)

    def compile_options(self, num_classes: int) -> dict[str, Any]:
        from nlighten_tf.models import heads

        return heads.segmentation_compile_options(num_classes, ignore_label=_ignore_label())

    def evaluate_keras(self, model: tf_keras.Model, scored: tf.data.Dataset, recipe: Recipe) -> dict[str, Any]:
        num_classes = int(model.outputs[0].shape[-1])
        miou, _ = mean_iou(lambda images: model(images, training=False), scored, num_classes)
        return {"mean_iou": miou, "accuracy": None, "top5": None, "loss": None}

    def evaluate_file(self, path: Path, scored: tf.data.Dataset, recipe: Recipe, runtime: str) -> dict[str, Any]:
        """Mean IoU through the interpreter on the split stages are scored on."""
        from nlighten_tf.litert import runtime as runtimes

        loaded = runtimes.load(path, runtime=runtime, xnnpack=False)
        num_classes = int(loaded.output_details["shape"][-1])
        miou, images = mean_iou(lambda batch: loaded.predict(np.asarray(batch)), scored, num_classes)
        return {"mean_iou": miou, "examples": images, "runtime": runtimes.describe(loaded)}

    def model_score_text(self, metrics: dict[str, Any]) -> str:
        return f"mean IoU {100 * metrics['mean_iou']:.2f}%"

    def file_score_text(self, entry: dict[str, Any]) -> str:
        return f"mean IoU {100 * entry['mean_iou']:.2f}%" if entry.get("mean_iou") is not None else ""

    def export_file(
        self, model: tf_keras.Model, path: Path, target: str, *, recipe: Recipe, labels: tuple[str, ...],
        scheme: str, calibration: Any, io_type: str | None, extra: dict[str, Any],
    ) -> ExportResult:  # fmt: skip
        """`export.tflite.export` without metadata (TFLite has no classifier-style metadata that
        MediaPipe's ImageSegmenter reads from these files); labels go into the sidecar."""
        from nlighten_tf.export import tflite

        return tflite.export(
            model, path, target, representative_dataset=calibration, io_type=io_type,
            extra={**extra, "labels": list(labels), "preprocessing": scheme},
        )  # fmt: skip
