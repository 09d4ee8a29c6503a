"""Object detection (EfficientDet): per-anchor targets and focal/Huber losses for training, COCO
mAP for scoring, and an export that ends in the detection post-process op."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlighten_tf.boxes import ANNOTATION_FORMAT, POSTPROCESS_OP
from nlighten_tf.tasks.base import Recipe, Task, TaskError

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras

    from nlighten_tf.data import DatasetInfo
    from nlighten_tf.export.tflite import ExportResult

# Exports keep detections down to this score: mAP needs the low-score tail, and apps apply their
# own display threshold (ObjectDetector's score_threshold option).
SCORE_THRESHOLD = 0.05
# Export target -> `export_detector` quantization. The Edge TPU file is the int8 one: int8 up to
# the post-process op with float I/O (Coral accepts QUANTIZE/DEQUANTIZE at the edges; io_type
# does not apply); the post-process op runs on the CPU by design.
TARGET_QUANTIZATION = {"int8": "int8", "fp32": "float32", "edgetpu": "int8"}
MAP_COLUMNS = {"map": "map_%", "map_50": "map_50_%", "map_75": "map_75_%"}  # as percentages, like top1_%


def anchors(recipe: Recipe) -> np.ndarray:
    """The anchors (`boxes.ANCHOR_FORMAT` pixels) the recipe's detector predicts on."""
    from nlighten_tf.models import efficientdet

    return efficientdet.anchors(recipe.data.image_size, recipe.model.name)


class DetectionTask(Task):
    name = "detection"
    noun = "detector"
    # The stages that know the detector's losses, mAP and export.
    stage_types = ("train", "prune", "cluster", "qat", "export", "edgetpu")
    export_targets = ("int8", "fp32")
    export_targets_note = f" ({POSTPROCESS_OP} at the end, float I/O)"
    # COCO mAP (bench.detection) instead of top-1/top-5.
    model_scores = MAP_COLUMNS
    headline_score = "map_50"
    file_scores = MAP_COLUMNS
    score_name = "COCO mAP"
    keras_scoring = ": COCO mAP, keras-cv NMS"
    checks_raw_splits = False  # detection sets are opened by their own loader
    scores_on_devices = False  # multi-tensor outputs: timed only on emulated devices
    edgetpu_reuses = "int8"

    data_kind = "detection"
    data_specs = "shapes, tfds:coco/2017, tfds:voc/2012"
    augment_refused = "boxes would not follow"

    def accepts_data(self, spec: str) -> bool:
        from nlighten_tf.data.detection import is_detection_spec

        return is_detection_spec(spec)

    def training_data(self, train: tf.data.Dataset, info: DatasetInfo, recipe: Recipe) -> tf.data.Dataset:
        """Box-dict batches -> per-anchor targets for fit."""
        from nlighten_tf.models import detection

        return detection.training_dataset(train, anchors(recipe), info.box_format)

    def compile_options(self, num_classes: int) -> dict[str, Any]:
        from nlighten_tf.models import detection

        return detection.compile_losses()

    def calibration_split(self, recipe: Recipe) -> str:
        # Drawn from the training split as configured (shapes are generated, so a sliced split
        # also keeps calibration quick).
        return recipe.data.train_split

    def evaluate_keras(self, model: tf_keras.Model, scored: tf.data.Dataset, recipe: Recipe) -> dict[str, Any]:
        from nlighten_tf.bench import detection as bench_detection

        measured = bench_detection.evaluate_keras(model, scored, anchors(recipe), ANNOTATION_FORMAT)
        return {
            **{k: measured[k] for k in bench_detection.METRIC_NAMES.values()},
            "accuracy": None, "top5": None, "loss": None,
        }  # fmt: skip

    def evaluate_file(self, path: Path, scored: tf.data.Dataset, recipe: Recipe, runtime: str) -> dict[str, Any]:
        """COCO mAP through the interpreter on the split stages are scored on; the file's own
        post-process op (score threshold, maximum detections) decides what is scored."""
        from nlighten_tf.bench import detection as bench_detection

        measured = bench_detection.evaluate_tflite(path, scored, ANNOTATION_FORMAT, runtime=runtime)
        return {
            **{k: measured[k] for k in bench_detection.METRIC_NAMES.values()},
            "examples": measured["num_images"], "runtime": measured["evaluated"],
        }  # fmt: skip

    def model_score_text(self, metrics: dict[str, Any]) -> str:
        from nlighten_tf.bench import detection as bench_detection

        return bench_detection.summary(metrics, ("map", "map_50"))

    def file_score_text(self, entry: dict[str, Any]) -> str:
        from nlighten_tf.bench import detection as bench_detection

        return bench_detection.summary(entry, ("map_50",)) if entry.get("map_50") is not None else ""

    def export_file(
        self, model: tf_keras.Model, path: Path, target: str, *, recipe: Recipe, labels: tuple[str, ...],
        scheme: str, calibration: Any, io_type: str | None, extra: dict[str, Any],
    ) -> ExportResult:  # fmt: skip
        """`export.detection.export_detector`: the post-process op at the end, float I/O
        (`io_type` does not apply)."""
        from nlighten_tf.export import detection as export_detection
        from nlighten_tf.export import metadata

        if target not in TARGET_QUANTIZATION:
            raise TaskError(f"export target {target!r} is not available for detectors; valid: {', '.join(TARGET_QUANTIZATION)}")
        size = recipe.data.image_size
        detector = metadata.from_scheme(labels, scheme, (size, size), kind=metadata.DetectorMetadata, name=recipe.name)
        return export_detection.export_detector(
            model, path, anchors=anchors(recipe), representative_dataset=calibration,
            quantization=TARGET_QUANTIZATION[target], score_threshold=SCORE_THRESHOLD, detector_metadata=detector,
            extra=extra,
        )  # fmt: skip
