"""Detector -> `.tflite` with TFLite's ``TFLite_Detection_PostProcess`` op at the end.

The file has one float image input and the four outputs Android's ObjectDetector (Task
Library), the Raspberry Pi examples and the TF Object Detection API's SSD exports use, in this
order: boxes ``[1, max_detections, 4]`` (``ymin, xmin, ymax, xmax`` relative to the image,
*not* clipped to [0, 1]), classes ``[1, max_detections]`` (class ids as float), scores
``[1, max_detections]`` (sigmoid probabilities) and count ``[1]``.

How: there is no TensorFlow op for the post-process, so the serving function calls an empty
``tf.function`` carrying ``experimental_implements="TFLite_Detection_PostProcess" + attrs``;
TensorFlow's MLIR converter replaces such a composite function by the custom op
(``tensorflow/compiler/mlir/lite/utils/nms_utils.cc``; google/automl
``efficientdet/tf2/postprocess.py`` does the same). The op is registered in the standard
interpreters (tf.lite, LiteRT, tflite_runtime), so no custom-op library is needed, but the
converter must be told ``allow_custom_ops``.

The op's decoding is ours exactly: deltas ``(ty, tx, th, tw)`` with scale factors 1
(`nlighten_tf.models.detection.encode_boxes`) on anchors given as centre/size, here divided by
the image size so boxes come out relative. Class scores are the sigmoid of the logits (a
LOGISTIC op before the post-process). ``use_regular_nms=False`` is TFLite's fast,
class-agnostic NMS (one class per box, automl's and the ODAPI's choice, the fastest on
devices); ``True`` is per-class NMS like `detection.decode_detections`.

Quantization: ``"int8"`` (default) is full-integer weights and activations up to the
post-process, which runs in float on dequantized scores and deltas, with float input and
outputs; ``"float32"`` is the unquantized graph (reference / debugging).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf.boxes import POSTPROCESS_OP
from nlighten_tf.export.metadata import DetectorMetadata
from nlighten_tf.export.metadata import embed as embed_metadata
from nlighten_tf.export.tflite import (
    ExportError,
    ExportResult,
    RepresentativeDataset,
    function_converter,
    prepare_for_export,
    write,
)
from nlighten_tf.models import detection

OUTPUTS = ("boxes", "classes", "scores", "count")
QUANTIZATIONS = ("int8", "float32")


@dataclasses.dataclass(frozen=True)
class PostProcessConfig:
    """Attributes of the ``TFLite_Detection_PostProcess`` op."""

    max_detections: int = 25
    score_threshold: float = 0.3
    iou_threshold: float = 0.5
    use_regular_nms: bool = False
    detections_per_class: int = 100  # regular NMS only

    def __post_init__(self) -> None:
        if self.max_detections < 1 or self.detections_per_class < 1:
            raise ValueError("max_detections and detections_per_class must be >= 1")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {self.score_threshold}")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")

    def implements_signature(self, num_classes: int) -> str:
        """The ``experimental_implements`` string the MLIR converter turns into the op."""
        attrs = {
            "max_detections": ("i", self.max_detections),
            "max_classes_per_detection": ("i", 1),
            "detections_per_class": ("i", self.detections_per_class),
            "use_regular_nms": ("b", str(self.use_regular_nms).lower()),
            "nms_score_threshold": ("f", f"{self.score_threshold:f}"),
            "nms_iou_threshold": ("f", f"{self.iou_threshold:f}"),
            "y_scale": ("f", "1.0"),
            "x_scale": ("f", "1.0"),
            "h_scale": ("f", "1.0"),
            "w_scale": ("f", "1.0"),
            "num_classes": ("i", num_classes),
        }
        parts = [f'name: "{POSTPROCESS_OP}"']
        parts += [
            f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, (kind, value) in attrs.items()
        ]
        return " ".join(parts)


def relative_centre_size_anchors(anchors: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """``yxyx`` pixel anchors ``[N, 4]`` -> ``(y, x, h, w)`` relative to the image, the op's
    anchor input."""
    height, width = float(image_shape[0]), float(image_shape[1])
    a = np.asarray(anchors, np.float64) / [height, width, height, width]
    return np.stack(
        [(a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2, a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=-1
    ).astype(np.float32)


def _resolve_anchors(
    model: tf_keras.Model, anchors: detection.AnchorConfig | np.ndarray | None
) -> tuple[np.ndarray, tuple[int, int], int]:
    shape = model.inputs[0].shape
    if shape.rank != 4 or shape[1] is None or shape[2] is None:
        raise ExportError(f"the detector needs a fixed [batch, height, width, channels] input, got {shape}")
    image_shape = (int(shape[1]), int(shape[2]))
    names = list(model.output_names)
    if len(model.outputs) != 2:
        raise ExportError(
            f"expected a detector with two outputs ({detection.CLASS_OUTPUT}, {detection.BOX_OUTPUT}), "
            f"got {len(model.outputs)}: {names}"
        )
    class_shape, box_shape = (o.shape for o in model.outputs)
    if box_shape[-1] != 4 or class_shape[1] != box_shape[1]:
        raise ExportError(
            f"outputs must be class logits [B, N, C] then box deltas [B, N, 4], got {class_shape}, {box_shape}"
        )
    if anchors is None or isinstance(anchors, detection.AnchorConfig):
        anchors = detection.generate_anchors(image_shape, anchors or detection.AnchorConfig())
    anchors = np.asarray(anchors, np.float32)
    if anchors.ndim != 2 or anchors.shape[1] != 4 or anchors.shape[0] != box_shape[1]:
        raise ExportError(
            f"{anchors.shape[0] if anchors.ndim == 2 else anchors.shape} anchors for a model with "
            f"{box_shape[1]} outputs per image: pass the AnchorConfig (or anchors) the model was built with"
        )
    return anchors, image_shape, int(class_shape[-1])


def serving_function(
    model: tf_keras.Model,
    anchors: np.ndarray,
    image_shape: tuple[int, int],
    num_classes: int,
    config: PostProcessConfig,
):
    """``tf.function`` image ``[1, H, W, C]`` -> dict of the four post-processed outputs."""
    channels = int(model.inputs[0].shape[-1])
    anchor_input = tf.constant(relative_centre_size_anchors(anchors, image_shape))

    @tf.function(experimental_implements=config.implements_signature(num_classes))
    def postprocess(box_encodings, class_predictions, anchor_boxes):
        # A placeholder body: the converter replaces the whole function by the custom op.
        del box_encodings, class_predictions, anchor_boxes
        boxes = tf.zeros([1, config.max_detections, 4], name="boxes")
        classes = tf.zeros([1, config.max_detections], name="classes")
        scores = tf.zeros([1, config.max_detections], name="scores")
        count = tf.zeros([1], name="num_detections")
        return boxes, classes, scores, count

    @tf.function(input_signature=[tf.TensorSpec([1, *image_shape, channels], tf.float32, name="images")])
    def serve(images):
        class_logits, box_regression = model(images, training=False)
        boxes, classes, scores, count = postprocess(box_regression, tf.sigmoid(class_logits), anchor_input)
        return {"boxes": boxes, "classes": classes, "scores": scores, "count": count}

    return serve


def convert_detector(
    model: tf_keras.Model,
    anchors: detection.AnchorConfig | np.ndarray | None = None,
    representative_dataset: RepresentativeDataset | None = None,
    config: PostProcessConfig = PostProcessConfig(),
    quantization: str = "int8",
) -> tuple[bytes, list[str]]:
    """(flatbuffer, notes) of `model` + the post-process op; see `export_detector`."""
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    model, notes, qat = prepare_for_export(model)
    if qat and quantization != "int8":
        raise ExportError("the model carries QAT quantize wrappers, which only convert to int8")
    if quantization == "int8" and representative_dataset is None:
        # Also for QAT models: TF 2.21's from_concrete_functions checks its settings once
        # before it has the graph and refuses TFLITE_BUILTINS_INT8 without one ("For full
        # integer quantization, a `representative_dataset` must be specified."), and the
        # tensors the QAT graph has no FakeQuant for (a BatchNorm after a shared conv becomes
        # MUL + ADD; the MUL output has no range) need calibrating: without data they come
        # out with near-zero ranges and crash the interpreter (`_check_activation_ranges`).
        raise ExportError(
            "int8 detector export needs calibration data (representative_dataset), QAT model or not"
        )
    anchors, image_shape, num_classes = _resolve_anchors(model, anchors)
    serve = serving_function(model, anchors, image_shape, num_classes, config)
    converter = function_converter(serve, model)
    converter.allow_custom_ops = True  # TFLite_Detection_PostProcess is a custom (not builtin) op
    if quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative_dataset is not None:
            converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        notes.append("int8 weights and activations; float32 input and outputs; post-process op in float")
    try:
        flatbuffer = bytes(converter.convert())
    except Exception as error:
        raise ExportError(f"detector conversion failed: {' '.join(str(error).split())[:2000]}") from error
    if POSTPROCESS_OP.encode() not in flatbuffer:
        raise ExportError(f"the converter did not fuse the {POSTPROCESS_OP} op into the model")
    _check_activation_ranges(flatbuffer)
    return order_outputs(flatbuffer), notes


# An int8 activation whose whole range is below this: its quantizer never saw data.
_MIN_ACTIVATION_SCALE = 1e-6


def _check_activation_ranges(tflite: bytes) -> None:
    """Refuses degenerate activation ranges, which make the interpreter abort (not raise) in
    ``allocate_tensors``. Seen with QAT detectors converted without calibration data: a BiFPN
    sum (untrained) or a P7 head BatchNorm's MUL (after 3 QAT steps) at scale ~1e-8..5e-7."""
    from nlighten_tf.litert import flatbuffer

    graph = flatbuffer.parse(tflite)
    bad = []
    for op, kind in zip(graph.operators, graph.op_types, strict=True):
        for index in op.outputs:
            tensor = graph.tensors[index]
            scale = getattr(tensor.quantization, "scale", None)
            if flatbuffer.dtype_name(tensor.type) == "int8" and scale is not None and len(scale):
                if float(np.min(scale)) < _MIN_ACTIVATION_SCALE:
                    bad.append(f"{kind} -> {_text(tensor.name)} (scale {float(np.min(scale)):.3g})")
    if bad:
        raise ExportError(
            f"{len(bad)} int8 activation(s) with a degenerate quantization range, which would crash the "
            f"interpreter: {'; '.join(bad[:3])}. Calibrate with more representative images."
        )


def order_outputs(tflite: bytes) -> bytes:
    """Puts the subgraph's outputs in `OUTPUTS` order (boxes, classes, scores, count).

    The converter orders a function's outputs as it likes; apps that read outputs by position
    (the Raspberry Pi examples, ObjectDetector without output metadata) need this order. The
    signature keeps mapping the same names to the same tensors.
    """
    import flatbuffers

    from nlighten_tf.litert import flatbuffer

    graph = flatbuffer.parse(tflite)
    model = graph.model
    signature = model.signatureDefs[0]
    by_name = {_text(m.name): m for m in signature.outputs}
    if set(by_name) != set(OUTPUTS):
        raise ExportError(f"unexpected detector outputs {sorted(by_name)}; expected {list(OUTPUTS)}")
    signature.outputs = [by_name[name] for name in OUTPUTS]
    graph.subgraph.outputs = np.asarray([by_name[name].tensorIndex for name in OUTPUTS], np.int32)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), flatbuffer.TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def export_detector(
    model: tf_keras.Model,
    path: str | os.PathLike[str],
    anchors: detection.AnchorConfig | np.ndarray | None = None,
    representative_dataset: RepresentativeDataset | None = None,
    max_detections: int = 25,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.5,
    use_regular_nms: bool = False,
    quantization: str = "int8",
    labels: list[str] | None = None,
    sidecar: bool = True,
    extra: dict[str, Any] | None = None,
    detector_metadata: DetectorMetadata | None = None,
) -> ExportResult:
    """Converts a detector (class logits, box deltas over anchors) to a `.tflite` ending in
    ``TFLite_Detection_PostProcess`` and writes it (and `<path minus .tflite>.json`) atomically.

    anchors: the `AnchorConfig` the model was built with (default config when None) or the
        anchor array itself (``[N, 4]`` ``yxyx`` pixels, e.g. ``efficientdet.anchors(size, name)``).
    representative_dataset: calibration images for int8 (QAT models too: see `convert_detector`).
    labels: class names, recorded in the sidecar JSON.
    detector_metadata: labels and normalisation to embed as TFLite metadata (+ packed labels.txt)
        so that the Task Library's ObjectDetector and the Raspberry Pi examples can load the file.
    """
    config = PostProcessConfig(max_detections, score_threshold, iou_threshold, use_regular_nms)
    flatbuffer, notes = convert_detector(model, anchors, representative_dataset, config, quantization)
    if detector_metadata is not None:
        if labels is not None and list(labels) != list(detector_metadata.labels):
            raise ValueError("labels and detector_metadata.labels differ; pass one of them")
        flatbuffer = embed_metadata(flatbuffer, detector_metadata)
        labels = list(detector_metadata.labels)
    facts = {
        "task": "detection", "quantization": quantization, "labels": labels, "outputs_in_order": list(OUTPUTS),
        "postprocess": {"op": POSTPROCESS_OP, **dataclasses.asdict(config)},
    }  # fmt: skip
    path, summary, sidecar_path = write(path, flatbuffer, facts if sidecar else None, notes, extra)
    return ExportResult(path, f"detector_{quantization}", len(flatbuffer), sidecar_path, notes, summary)


def output_details(interpreter) -> list[dict[str, Any]]:
    """The interpreter's output details: boxes, classes, scores, count (`order_outputs`)."""
    return interpreter.get_output_details()


def run_detector(interpreter, image: np.ndarray) -> dict[str, Any]:
    """One image ``[H, W, C]`` (model domain, float) -> ``{"boxes", "classes", "scores"}`` cut
    to the ``count`` valid detections (the op leaves the rows past it undefined) and ``count``."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.asarray(image, np.float32)[None])
    interpreter.invoke()
    raw = {
        name: interpreter.get_tensor(d["index"])[0]
        for name, d in zip(OUTPUTS, output_details(interpreter), strict=True)
    }
    count = int(raw["count"])
    return {
        "boxes": raw["boxes"][:count],
        "classes": raw["classes"][:count],
        "scores": raw["scores"][:count],
        "count": count,
    }
