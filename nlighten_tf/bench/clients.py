"""Which app-side clients can load an exported `.tflite`, judged from the file itself.

MediaPipe Tasks (`mediapipe` 1.2.2, the Android/iOS/Python successor of the TFLite Task
Library) is what an Android app uses to run an image classifier or object detector without
writing pre/post-processing. Measured on this project's machine (2026-11-30, tests in
tests/export/test_mediapipe.py): it refuses an int8 input tensor at load ("Type mismatch for
input tensor ... Requested one of these types: uint8/float32, got INT8"), needs the
normalisation metadata for a float32 input, reads class names from the packed labels file, and
cannot load a file with int8 FULLY_CONNECTED weights stored sparse (XNNPACK fails to prepare them).
This module checks those facts on a file so that a recipe report can say which of its files an
app can use, without importing MediaPipe (which is not installed with the package).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from nlighten_tf.boxes import POSTPROCESS_OP
from nlighten_tf.export import metadata as metadata_lib
from nlighten_tf.export.targets import MEDIAPIPE_TYPES
from nlighten_tf.litert import flatbuffer


@dataclasses.dataclass(frozen=True)
class MediaPipeVerdict:
    loads: bool  # MediaPipe Tasks accepts the file (input/output types and metadata)
    task: str  # "ImageClassifier" or "ObjectDetector"
    reason: str  # why not, or what the app gets

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{'yes' if self.loads else 'no'} ({self.task}): {self.reason}"


def mediapipe(model: str | os.PathLike[str] | bytes) -> MediaPipeVerdict:
    """Whether MediaPipe Tasks' ImageClassifier (or, for a file ending in the detection
    post-process op, ObjectDetector) can load `model`, and why not."""
    raw = bytes(model) if isinstance(model, bytes | bytearray) else flatbuffer.read_bytes(model)
    graph = flatbuffer.parse(raw, "model bytes" if isinstance(model, bytes | bytearray) else os.fspath(model))
    task = "ObjectDetector" if any(POSTPROCESS_OP in op for op in graph.op_types) else "ImageClassifier"
    inputs = list(graph.subgraph.inputs)
    if len(inputs) != 1:
        return MediaPipeVerdict(False, task, f"{len(inputs)} input tensors; MediaPipe feeds one image")
    shape = graph.shape(inputs[0])
    if len(shape) != 4 or shape[-1] != 3:
        return MediaPipeVerdict(False, task, f"input shape {list(shape)}; MediaPipe feeds one RGB image [1, H, W, 3]")
    input_type = flatbuffer.dtype_name(graph.tensors[inputs[0]].type)
    if input_type not in MEDIAPIPE_TYPES:
        return MediaPipeVerdict(
            False, task, f"{input_type} input; MediaPipe takes {'/'.join(MEDIAPIPE_TYPES)} input (export a *_float_io target)"
        )
    output_types = sorted({flatbuffer.dtype_name(graph.tensors[i].type) for i in graph.subgraph.outputs})
    bad = [t for t in output_types if t not in MEDIAPIPE_TYPES]
    if bad:
        return MediaPipeVerdict(False, task, f"{'/'.join(bad)} output; MediaPipe reads {'/'.join(MEDIAPIPE_TYPES)} outputs")
    from nlighten_tf.bench import tflite_inspection

    if tflite_inspection.known_runtime_faults(graph):
        # MediaPipe's CPU path is XNNPACK with no fallback: "failed to delegate FULLY_CONNECTED".
        return MediaPipeVerdict(
            False, task, "int8 FULLY_CONNECTED weights stored sparse, which XNNPACK (MediaPipe's CPU path) cannot "
            "prepare; the int8_sparse_float_io target stores them dense",
        )  # fmt: skip
    info = metadata_lib.read(raw) or {}
    if input_type == "float32" and info.get("mean") is None:
        # MediaPipe: "Input tensor has type float32: it requires specifying NormalizationOptions metadata".
        return MediaPipeVerdict(
            False, task, "float32 input without NormalizationOptions metadata (export with classifier/detector metadata)"
        )
    size = f"{shape[1]}x{shape[2]}"
    if not info.get("labels"):
        return MediaPipeVerdict(True, task, f"{input_type} input {size} RGB; no packed labels: categories are indices only")
    normalisation = " and normalisation" if input_type == "float32" else ""
    return MediaPipeVerdict(
        True, task, f"{input_type} input {size} RGB, {len(info['labels'])} labels{normalisation} from the metadata"
    )
