"""Converter settings per target, and `export`: Keras model -> `.tflite` + sidecar JSON.

Calibration (full-integer targets) goes through `nlighten_tf.data.representative_dataset` with
the model's own preprocessing, so calibration sees exactly the inputs evaluation does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf import __version__
from nlighten_tf import io as atomic
from nlighten_tf.errors import NlightenError
from nlighten_tf.export import litert_backend
from nlighten_tf.export import metadata as metadata_lib
from nlighten_tf.export.targets import Target, get_target

RepresentativeDataset = Callable[[], Iterator[list[np.ndarray]]]

_TF_TYPES = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}
_QAT_LAYERS = {"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"}
_PRUNE_LAYERS = {"PruneLowMagnitude"}
_CLUSTER_LAYERS = {"ClusterWeights", "ClusterWeightsMHA", "ClusterWeightsRNN"}


class ExportError(NlightenError, ValueError):
    """A model/target combination that cannot be exported, with what to do instead."""


@dataclasses.dataclass
class ExportResult:
    path: Path
    target: str
    size_bytes: int
    sidecar: Path | None
    notes: list[str]
    summary: str  # signatures and input/output details
    mixed_precision: dict[str, Any] | None = None  # the mixed target's per-op choice (litert_backend)

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["path"], out["sidecar"] = str(self.path), str(self.sidecar) if self.sidecar else None
        return out


def _layer_types(model: tf_keras.Model) -> set[str]:
    found = set()
    for layer in model.layers:
        found.add(type(layer).__name__)
        if isinstance(layer, tf_keras.Model):
            found |= _layer_types(layer)
    return found


def prepare_for_export(model: tf_keras.Model) -> tuple[tf_keras.Model, list[str], bool]:
    """Strips TFMOT training wrappers: (model, notes saying what was done, is_qat).

    Pruning and clustering wrappers hold masks/centroids the converter cannot read: they are
    stripped (`strip_pruning`, `strip_clustering`), which keeps the zeros and cluster values
    in the plain kernels. QAT wrappers are kept on purpose: the converter reads their learnt
    ranges, and stripping them would throw the quantization-aware training away.
    """
    types = _layer_types(model)
    notes: list[str] = []
    if types & (_PRUNE_LAYERS | _CLUSTER_LAYERS):
        from nlighten_tf.optimize import cluster, prune

        strippers = (
            (_PRUNE_LAYERS, prune.strip, "pruning", "strip_pruning", "zeros kept in the kernels"),
            (_CLUSTER_LAYERS, cluster.strip, "clustering", "strip_clustering", "kernels hold the cluster values"),
        )
        for wrapper_types, strip, what, tfmot_name, kept in strippers:
            if not _layer_types(model) & wrapper_types:
                continue
            try:
                model = strip(model)
            except Exception as error:
                raise ExportError(
                    f"could not strip TFMOT {what} wrappers ({error}); strip them with "
                    f"tfmot.{'sparsity' if what == 'pruning' else 'clustering'}.keras.{tfmot_name} before export"
                ) from error
            notes.append(f"stripped TFMOT {what} wrappers ({tfmot_name}): {kept}")
    qat = bool(_layer_types(model) & _QAT_LAYERS)
    if qat:
        notes.append(
            "kept QAT wrappers: the converter takes their learnt quantization ranges (calibration data only "
            "fills ranges the QAT wrappers do not cover)"
        )
    return model, notes, qat


def convert(
    model: tf_keras.Model,
    target: str | Target,
    representative_dataset: RepresentativeDataset | None = None,
    io_type: str | None = None,
    quantizer: str = "auto",
) -> tuple[bytes, list[str]]:
    """Converts to one target: (flatbuffer bytes, notes). `io_type` overrides the target's
    input/output dtype for full-integer targets ("int8" or "uint8", e.g. for the Edge TPU).
    `quantizer`: "converter", "litert" (LiteRT Quantizer on the float32 file) or "auto" (the
    converter where it writes the target)."""
    target = get_target(target) if isinstance(target, str) else target
    if litert_backend.resolve(quantizer, target) == "litert":
        quantized = convert_with_litert(model, target, representative_dataset, io_type)
        return quantized.flatbuffer, quantized.notes
    model, notes, qat = prepare_for_export(model)
    io = io_type or target.io_type
    if io not in _TF_TYPES:
        raise ExportError(f"io_type must be one of {', '.join(_TF_TYPES)}, got {io!r}")
    if io != "float32" and target.quantization != "full":
        raise ExportError(f"io_type {io} needs a full-integer target (int8, int8_sparse, edgetpu), not {target.name}")
    if qat and target.quantization != "full":
        raise ExportError(
            f"the model carries QAT quantize wrappers, which only convert to full-integer targets "
            f"(int8, int8_float_io, int8_sparse, int8_sparse_float_io, edgetpu), not {target.name}: export the float model "
            "(before quantize_model) for float targets"
        )
    # QAT models too: TF 2.21's converter refuses full-integer conversion without a
    # representative dataset even when every range comes from the QAT wrappers.
    if target.needs_calibration and representative_dataset is None:
        raise ExportError(
            f"target {target.name} is full-integer and needs calibration data, QAT model or not: pass "
            "representative_dataset (nlighten_tf.data.representative_dataset or calibration_data(...))"
        )
    converter = function_converter(serving_function(model), model)
    optimizations = []
    if target.quantization == "float16":
        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.target_spec.supported_types = [tf.float16]
    elif target.quantization == "dynamic":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    elif target.quantization == "full":
        optimizations.append(tf.lite.Optimize.DEFAULT)
        if representative_dataset is not None:
            converter.representative_dataset = representative_dataset
        # Full-integer: conversion fails rather than leaving a float op behind.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _TF_TYPES[io]
        converter.inference_output_type = _TF_TYPES[io]
    if target.sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
    try:
        flatbuffer = converter.convert()
    except Exception as error:
        raise ExportError(f"TFLite conversion to {target.name} failed: {' '.join(str(error).split())[:2000]}") from error
    flatbuffer = bytes(flatbuffer)
    if target.sparse and target.quantization == "full" and io == "float32":
        # The float-I/O sparse target is for MediaPipe Tasks, whose CPU path is XNNPACK with no
        # fallback: XNNPACK fails to prepare an int8 FULLY_CONNECTED whose weights come from
        # DENSIFY, and the app cannot load the file at all. Store those weights dense.
        flatbuffer, densified = densify_int8_fully_connected(flatbuffer)
        if densified:
            notes.append(f"int8 FULLY_CONNECTED weights stored dense ({', '.join(densified)}): XNNPACK, MediaPipe's "
                         "CPU path, cannot prepare them sparse")  # fmt: skip
    return flatbuffer, notes


def convert_with_litert(model: tf_keras.Model, target: Target, *args: Any, **kwargs: Any) -> litert_backend.Quantized:
    """Keras model -> float32 flatbuffer (the converter path) -> LiteRT Quantizer:
    `litert_backend.quantize(float32, target, *args, **kwargs)` (representative_dataset, io_type,
    mixed, held_out, log)."""
    _, _, qat = prepare_for_export(model)
    if qat:
        raise litert_backend.QuantizerError(
            f"the model carries QAT quantize wrappers: their ranges are learnt in training, and LiteRT Quantizer "
            f"only calibrates its own (post-training), so it would throw them away; export {target.name} with "
            "quantizer=converter (or auto)"
        )
    float_tflite, notes = convert(model, "fp32")
    result = litert_backend.quantize(float_tflite, target, *args, **kwargs)
    result.notes[:0] = notes
    return result


def densify_int8_fully_connected(tflite: bytes) -> tuple[bytes, list[str]]:
    """Replaces every DENSIFY feeding int8 weights to a FULLY_CONNECTED by the dense weights
    (same int8 values, quantization and tensor): (new flatbuffer, names of the weights changed).
    Other ops keep their sparse weights."""
    import flatbuffers

    from nlighten_tf.litert import flatbuffer as flatbuffer_lib

    graph = flatbuffer_lib.parse(tflite)
    fb = flatbuffer_lib.schema()
    removed, names = set(), []
    for index, op_type in enumerate(graph.op_types):
        if op_type != "FULLY_CONNECTED":
            continue
        weights = int(graph.operators[index].inputs[1])
        producer = graph.producer(weights)
        if producer is None or graph.op_types[producer] != "DENSIFY" or len(graph.consumers(weights)) != 1:
            continue
        source = int(graph.operators[producer].inputs[0])
        if flatbuffer_lib.dtype_name(graph.tensors[source].type) != "int8":
            continue
        buffer = fb.BufferT()
        buffer.data = np.frombuffer(graph.values(source).astype(np.int8).tobytes(), np.uint8)
        graph.model.buffers.append(buffer)
        # DENSIFY's output tensor (shape, type, quantization of the weights) becomes the constant.
        graph.tensors[weights].buffer = len(graph.model.buffers) - 1
        graph.model.buffers[graph.tensors[source].buffer].data = None  # the sparse copy, now unused
        graph.tensors[source].sparsity = None
        removed.add(producer)
        names.append(graph.tensor_name(weights))
    if not removed:
        return tflite, []
    graph.subgraph.operators = [op for i, op in enumerate(graph.operators) if i not in removed]
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(graph.model.Pack(builder), flatbuffer_lib.TFLITE_IDENTIFIER)
    return bytes(builder.Output()), names


def serving_function(model: tf_keras.Model) -> Any:
    """``tf.function`` over the model's named inputs (batch left open, as Keras has it) -> dict
    of its outputs by Keras output name, in inference mode."""
    names = model.input_names
    specs = [tf.TensorSpec(t.shape, t.dtype, name=name) for t, name in zip(model.inputs, names, strict=True)]

    @tf.function(input_signature=specs)
    def serve(*inputs):
        outputs = model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)
        return dict(zip(model.output_names, tf.nest.flatten(outputs), strict=True))

    return serve


def function_converter(serve: Any, model: tf_keras.Model) -> Any:
    """A TFLiteConverter for a ``tf.function`` of `model` that has an input signature.

    The converter saves what it is given as a SavedModel first. Given the Keras model (as
    `from_keras_model` does), that save re-traces every layer's call functions: 45-55 s of a
    50-80 s int8 conversion of the quickstart's PCQAT network. Given only the function and the
    model's variables it takes ~10 s, and the file has the same signature names and the same
    int8 outputs on the same inputs.
    """
    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], holder)


def calibration_data(
    spec: str, n: int, image_size: int, preprocessing: str | None = None, model_name: str | None = None, **kwargs: Any
) -> RepresentativeDataset:
    """`n` training examples of a data spec, preprocessed for the model (its registry scheme)."""
    from nlighten_tf import data

    return data.representative_dataset(
        spec, n, image_size=image_size, preprocessing=preprocessing, model=model_name, **kwargs
    )


def input_size(model: tf_keras.Model) -> tuple[int, int]:
    shape = model.inputs[0].shape
    return int(shape[1]), int(shape[2])


def export(
    model: tf_keras.Model,
    path: str | os.PathLike[str],
    target: str = "int8",
    representative_dataset: RepresentativeDataset | None = None,
    classifier: metadata_lib.ClassifierMetadata | None = None,
    io_type: str | None = None,
    sidecar: bool = True,
    extra: dict[str, Any] | None = None,
    quantizer: str = "auto",
    mixed: litert_backend.MixedConfig | None = None,
    held_out: np.ndarray | None = None,
) -> ExportResult:
    """Converts `model` to `target` and writes `path` (and `<path minus .tflite>.json`) atomically.

    classifier: labels and normalisation to embed as TFLite metadata + packed labels.txt.
    extra: more JSON-ready facts for the sidecar (source model name, recipe, ...).
    quantizer: "converter", "litert" or "auto" (`convert`); mixed: the `mixed` target's goal,
    checked on `held_out` model inputs (default: the last part of the representative examples).
    """
    target_info = get_target(target)
    backend = litert_backend.resolve(quantizer, target_info)
    report = None
    if backend == "litert":
        quantized = convert_with_litert(model, target_info, representative_dataset, io_type, mixed, held_out)
        flatbuffer, notes, report = quantized.flatbuffer, quantized.notes, quantized.report
        quantizer_facts = {"name": "litert", "package": "litert-quantizer", "version": litert_backend.version()}
    else:
        flatbuffer, notes = convert(model, target_info, representative_dataset, io_type, quantizer="converter")
        quantizer_facts = {"name": "converter", "package": "tensorflow", "version": tf.__version__}
    if classifier is not None:
        flatbuffer = metadata_lib.embed(flatbuffer, classifier)
    facts = {
        "target": dataclasses.asdict(target_info), "io_type": io_type or target_info.io_type,
        "classifier": classifier.as_dict() if classifier else None, "quantizer": quantizer_facts,
    }  # fmt: skip
    if report is not None:
        facts["mixed_precision"] = report
    path, summary, sidecar_path = write(path, flatbuffer, facts if sidecar else None, notes, extra)
    return ExportResult(path, target_info.name, len(flatbuffer), sidecar_path, notes, summary, report)


def write(
    path: str | os.PathLike[str], flatbuffer: bytes, facts: dict[str, Any] | None, notes: list[str],
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any], Path | None]:  # fmt: skip
    """Writes the `.tflite` and, unless `facts` is None, its sidecar `<path minus .tflite>.json`
    (the facts, versions, the interpreter's input/output details, notes, extra), atomically.
    Returns (path, signature summary, sidecar path or None)."""
    from nlighten_tf.litert import runtime

    path = Path(path)
    atomic.write_bytes(path, flatbuffer)
    summary = runtime.signature_summary(path)
    if facts is None:
        return path, summary, None
    interpreter = runtime.load(path, xnnpack=False).interpreter
    outputs = [_details(d) for d in interpreter.get_output_details()]
    sidecar_path = path.with_suffix(".json")
    atomic.write_json(sidecar_path, {
        "model_file": path.name, **facts, "size_bytes": len(flatbuffer), "nlighten_tf_version": __version__,
        "tensorflow_version": tf.__version__, "input": _details(interpreter.get_input_details()[0]),
        "output": outputs[0] if len(outputs) == 1 else outputs, "notes": notes, **(extra or {}),
    })  # fmt: skip
    return path, summary, sidecar_path


def _details(details: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = details["quantization"]
    return {
        "name": details["name"], "shape": [int(v) for v in details["shape"]], "dtype": np.dtype(details["dtype"]).name,
        "scale": float(scale), "zero_point": int(zero_point),
    }  # fmt: skip


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar JSON next to a `.tflite`, or None."""
    import json

    sidecar = Path(path).with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.exists() else None
