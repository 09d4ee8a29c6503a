"""COCO-style mAP of a detector, Keras model or exported ``.tflite``, on a detection dataset.

The metric is keras-cv's `BoxCOCOMetrics` (pycocotools underneath: the COCO evaluation
itself, 101-point interpolated AP averaged over IoU 0.5:0.95), fed keras-cv box dicts; box
formats go through `keras_cv.bounding_box` only. The dataset is the one `nlighten_tf.data.load`
gives for a detection spec: batches of ``(images, {"boxes", "classes"})`` with -1 padding.

* Keras: the model's (class logits, box deltas) are decoded with
  `nlighten_tf.models.detection.decode_detections` (per-class NMS).
* ``.tflite`` (`nlighten_tf.export.detection.export_detector`): one image per invoke in the
  interpreter; the file's own ``TFLite_Detection_PostProcess`` (its score threshold and
  maximum number of detections) decides what is scored, as on a device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf.boxes import ANNOTATION_FORMAT, POSTPROCESS_OUTPUT_FORMAT
from nlighten_tf.models import detection

# keras-cv result names -> ours (JSON/report columns).
METRIC_NAMES = {
    "MaP": "map",
    "MaP@[IoU=50]": "map_50",
    "MaP@[IoU=75]": "map_75",
    "MaP@[area=small]": "map_small",
    "MaP@[area=medium]": "map_medium",
    "MaP@[area=large]": "map_large",
    "Recall@[max_detections=1]": "recall_1",
    "Recall@[max_detections=10]": "recall_10",
    "Recall@[max_detections=100]": "recall_100",
}


def _metric(bounding_box_format: str):
    import keras_cv

    try:
        import pycocotools  # noqa: F401
    except ImportError:
        raise ImportError(
            "COCO mAP needs pycocotools (a dependency of nlighten_tf): pip install 'pycocotools>=2.0.7'"
        ) from None
    return keras_cv.metrics.BoxCOCOMetrics(bounding_box_format=bounding_box_format, evaluate_freq=1)


def _image_shape(dataset: tf.data.Dataset) -> tuple[int, int]:
    images_spec, targets_spec = dataset.element_spec
    if not isinstance(targets_spec, dict) or not {"boxes", "classes"} <= set(targets_spec):
        raise ValueError(
            "the dataset must yield (images, {'boxes', 'classes'}) batches (nlighten_tf.data.load of a "
            f"detection spec), got labels {targets_spec}"
        )
    if images_spec.shape.rank != 4 or images_spec.shape[1] is None or images_spec.shape[2] is None:
        raise ValueError(f"the dataset must yield batched images [B, H, W, C], got {images_spec.shape}")
    return int(images_spec.shape[1]), int(images_spec.shape[2])


def _result(metric, num_images: int, source: str) -> dict[str, float | int | str]:
    raw = metric.result(force=True)
    out: dict[str, float | int | str] = {ours: float(raw[theirs]) for theirs, ours in METRIC_NAMES.items()}
    out["num_images"] = num_images
    out["evaluated"] = source
    return out


def evaluate_keras(
    model: tf_keras.Model,
    dataset: tf.data.Dataset,
    anchors: np.ndarray,
    bounding_box_format: str = ANNOTATION_FORMAT,
    confidence_threshold: float = 0.05,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    limit: int | None = None,
) -> dict[str, float | int | str]:
    """mAP of a Keras detector (outputs class logits, box deltas over ``anchors``) + NMS.

    ``bounding_box_format`` is the dataset's (``DatasetInfo.box_format``); ``limit`` caps the
    number of images. Returns `METRIC_NAMES` values plus ``num_images``.
    """
    image_shape = _image_shape(dataset)
    metric = _metric(bounding_box_format)
    seen = 0
    for images, targets in dataset:
        if limit is not None and seen >= limit:
            break
        if limit is not None:
            images, targets = images[: limit - seen], {k: v[: limit - seen] for k, v in targets.items()}
        class_logits, box_regression = model(images, training=False)
        predictions = detection.decode_detections(
            class_logits, box_regression, anchors, image_shape, bounding_box_format,
            iou_threshold=iou_threshold, confidence_threshold=confidence_threshold,
            max_detections=max_detections, max_detections_per_class=max_detections,
        )  # fmt: skip
        metric.update_state({"boxes": targets["boxes"], "classes": targets["classes"]}, predictions)
        seen += int(images.shape[0])
    if seen == 0:
        raise ValueError("the evaluation dataset is empty")
    return _result(metric, seen, "keras + keras-cv NMS")


def tflite_predictions(
    interpreter, images: np.ndarray, bounding_box_format: str = ANNOTATION_FORMAT
) -> dict[str, np.ndarray]:
    """A batch of model-domain images through an exported detector -> keras-cv ``y_pred`` dict
    (``boxes`` in ``bounding_box_format`` pixels, ``classes``, ``confidence``, -1 padded)."""
    from keras_cv import bounding_box

    from nlighten_tf.export import detection as export_detection

    images = np.asarray(images, np.float32)
    height, width = images.shape[1:3]
    runs = [export_detection.run_detector(interpreter, image) for image in images]
    # Always the file's max_detections rows: BoxCOCOMetrics concatenates batches along them.
    rows = int(export_detection.output_details(interpreter)[0]["shape"][1])
    boxes = -np.ones((len(runs), rows, 4), np.float32)
    classes = -np.ones((len(runs), rows), np.float32)
    scores = -np.ones((len(runs), rows), np.float32)
    for i, run in enumerate(runs):
        count = run["count"]
        if count:
            # The op's boxes are relative yxyx and not clipped.
            boxes[i, :count] = np.clip(run["boxes"], 0.0, 1.0)
            classes[i, :count], scores[i, :count] = run["classes"], run["scores"]
    converted = bounding_box.convert_format(
        boxes, source=POSTPROCESS_OUTPUT_FORMAT, target=bounding_box_format,
        image_shape=(int(height), int(width), 3),
    )
    converted = np.where(classes[..., None] >= 0, np.asarray(converted), -1.0)
    return {"boxes": converted.astype(np.float32), "classes": classes, "confidence": scores}


def evaluate_tflite(
    model: str | os.PathLike[str] | bytes,
    dataset: tf.data.Dataset,
    bounding_box_format: str = ANNOTATION_FORMAT,
    limit: int | None = None,
    runtime: str = "auto",
) -> dict[str, float | int | str]:
    """mAP of an exported detector (`export.detection.export_detector`) run in the interpreter
    (XNNPACK off: the reference kernels, as the accuracy evaluator does for int8)."""
    from nlighten_tf.litert import runtime as runtimes

    image_shape = _image_shape(dataset)
    loaded = runtimes.load(model, runtime=runtime, xnnpack=False)
    expected = tuple(int(v) for v in loaded.interpreter.get_input_details()[0]["shape"][1:3])
    if expected != image_shape:
        raise ValueError(f"the .tflite takes {expected} images but the dataset has {image_shape}")
    metric = _metric(bounding_box_format)
    seen = 0
    for images, targets in dataset.as_numpy_iterator():
        if limit is not None and seen >= limit:
            break
        if limit is not None:
            images, targets = images[: limit - seen], {k: v[: limit - seen] for k, v in targets.items()}
        predictions = tflite_predictions(loaded.interpreter, images, bounding_box_format)
        metric.update_state({"boxes": targets["boxes"], "classes": targets["classes"]}, predictions)
        seen += len(images)
    if seen == 0:
        raise ValueError("the evaluation dataset is empty")
    return _result(metric, seen, f"tflite ({runtimes.describe(loaded)})")


def evaluate_map(
    model: tf_keras.Model | str | os.PathLike[str] | bytes,
    dataset: tf.data.Dataset,
    anchors: np.ndarray | None = None,
    bounding_box_format: str = ANNOTATION_FORMAT,
    limit: int | None = None,
    **options,
) -> dict[str, float | int | str]:
    """`evaluate_keras` for a Keras model (``anchors`` required), else `evaluate_tflite`."""
    if isinstance(model, tf_keras.Model):
        if anchors is None:
            raise ValueError("a Keras detector needs the anchors its outputs are relative to")
        return evaluate_keras(model, dataset, anchors, bounding_box_format, limit=limit, **options)
    return evaluate_tflite(model, dataset, bounding_box_format, limit=limit, **options)


def summary(metrics: dict[str, float | int | str], keys: Sequence[str] = ("map", "map_50", "map_75")) -> str:
    """``mAP 0.412, mAP@0.5 0.803, mAP@0.75 0.431`` for logs and reports."""
    names = {"map": "mAP", "map_50": "mAP@0.5", "map_75": "mAP@0.75"}
    return ", ".join(f"{names.get(k, k)} {float(metrics[k]):.3f}" for k in keys if k in metrics)
