"""Classifier metadata packed into a `.tflite` the way TFLite Task Library / MediaPipe read it.

What an app gets without reading our code:
- a `TFLITE_METADATA` entry in `Model.metadata` (identifier "M001"): `ModelMetadata` with one
  `SubGraphMetadata`; the input `TensorMetadata` has `ImageProperties` (RGB) and a
  `NormalizationOptions` process unit (mean/std per channel on [0, 255] pixels) plus value
  stats; the output `TensorMetadata` lists `labels.txt` as a `TENSOR_AXIS_LABELS` file;
- `labels.txt` itself, one label per line, in a zip archive appended to the flatbuffer (the
  `.tflite` stays a valid flatbuffer and is also a valid zip): exactly how tflite-support's
  `MetadataPopulator` stores associated files.

tflite-support cannot be installed beside TensorFlow 2.21 (protobuf 3.20, NumPy 1), so the
metadata is built with its FlatBuffers-generated schema (vendored,
`metadata_schema_py_generated.py`) and the model is repacked with the TFLite schema's object
API, which is what `MetadataPopulator` does too.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np

from nlighten_tf.bench import flatbuffer
from nlighten_tf.export import metadata_schema_py_generated as meta_fb

METADATA_NAME = "TFLITE_METADATA"  # Model.metadata entry the Task Library looks up
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
# Only fields of metadata schema 1.0.0 are written (no tensor groups, no subgraph-level
# process units, no versioned files), so every metadata parser reads them.
MIN_PARSER_VERSION = "1.0.0"


@dataclasses.dataclass(frozen=True)
class ClassifierMetadata:
    """What a deployed image classifier needs to be used correctly."""

    labels: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, applied as (pixel - mean) / std to [0, 255] RGB pixels
    std: tuple[float, ...]
    input_size: tuple[int, int]  # (height, width)
    preprocessing: str | None = None  # nlighten_tf.data scheme name, for people
    name: str = "ImageClassifier"
    description: str = "Identify the most prominent object in the image from a set of categories."
    version: str = ""
    author: str = "nlighten_tf"
    license: str = ""

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("ClassifierMetadata needs at least one label")
        if any("\n" in label for label in self.labels):
            raise ValueError("labels must not contain newlines (labels.txt has one label per line)")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean {self.mean} and std {self.std} must have the same, non-zero length")

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["labels"] = list(self.labels)
        return out


def from_scheme(
    labels: Sequence[str], scheme: str, input_size: tuple[int, int], **kwargs: Any
) -> ClassifierMetadata:
    """ClassifierMetadata for a `nlighten_tf.data` normalisation scheme ("lite", "mobilenet", ...)."""
    from nlighten_tf.data.preprocessing import mean_std

    mean, std = mean_std(scheme)
    return ClassifierMetadata(
        labels=tuple(str(label) for label in labels), mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std), input_size=(int(input_size[0]), int(input_size[1])),
        preprocessing=scheme, **kwargs,
    )  # fmt: skip


def _metadata_buffer(info: ClassifierMetadata, input_type: str, output_type: str) -> bytes:
    image = meta_fb.TensorMetadataT()
    image.name = "image"
    image.description = (
        f"Input image {info.input_size[0]}x{info.input_size[1]} RGB, normalised as (pixel - mean) / std"
    )
    image.content = meta_fb.ContentT()
    image.content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
    image.content.contentProperties = meta_fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta_fb.ColorSpaceType.RGB
    normalization = meta_fb.ProcessUnitT()
    normalization.optionsType = meta_fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = meta_fb.NormalizationOptionsT()
    normalization.options.mean = list(info.mean)
    normalization.options.std = list(info.std)
    image.processUnits = [normalization]
    image.stats = meta_fb.StatsT()
    # As tflite-support's image classifier writer: the float range pixels map to, or 0..255
    # for a uint8 input (which the Task Library then feeds unnormalised).
    if input_type == "float32":
        image.stats.min = [(0.0 - m) / s for m, s in zip(info.mean, info.std, strict=True)]
        image.stats.max = [(255.0 - m) / s for m, s in zip(info.mean, info.std, strict=True)]
    elif input_type == "uint8":
        image.stats.min, image.stats.max = [0.0], [255.0]

    scores = meta_fb.TensorMetadataT()
    scores.name = "logits"
    scores.description = f"Scores (logits) of the {len(info.labels)} labels ({output_type})."
    scores.content = meta_fb.ContentT()
    scores.content.contentPropertiesType = meta_fb.ContentProperties.FeatureProperties
    scores.content.contentProperties = meta_fb.FeaturePropertiesT()
    labels = meta_fb.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = "Labels for the categories the model can recognise."
    labels.type = meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS
    scores.associatedFiles = [labels]

    subgraph = meta_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [scores]
    model = meta_fb.ModelMetadataT()
    model.name = info.name
    model.description = info.description
    model.version = info.version or None
    model.author = info.author or None
    model.license = info.license or None
    model.subgraphMetadata = [subgraph]
    model.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


def embed(tflite: bytes, info: ClassifierMetadata) -> bytes:
    """`tflite` with the TFLITE_METADATA entry set (replacing one already there) and `labels.txt`
    appended as a zip archive. Raises ValueError if the model is not a one-input classifier
    with len(labels) outputs."""
    graph = flatbuffer.parse(tflite)
    fb = flatbuffer.schema()
    inputs, outputs = list(graph.subgraph.inputs), list(graph.subgraph.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"classifier metadata needs one input and one output, the model has {len(inputs)}/{len(outputs)}")
    classes = graph.shape(outputs[0])[-1]
    if classes != len(info.labels):
        raise ValueError(f"the model has {classes} outputs but {len(info.labels)} labels were given")
    input_type = flatbuffer.dtype_name(graph.tensors[inputs[0]].type)
    output_type = flatbuffer.dtype_name(graph.tensors[outputs[0]].type)
    model = graph.model
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(_metadata_buffer(info, input_type, output_type), dtype=np.uint8)
    model.metadata = model.metadata or []
    existing = [m for m in model.metadata if _name(m.name) == METADATA_NAME]
    if existing:  # re-embedding replaces the old metadata in place
        model.buffers[existing[0].buffer] = buffer
    else:
        model.buffers.append(buffer)
        entry = fb.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), flatbuffer.TFLITE_IDENTIFIER)
    out = io.BytesIO()
    out.write(bytes(builder.Output()))
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(info.labels) + "\n")
    return out.getvalue()


def _name(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value or "")


def _text(value: Any) -> str | None:
    return None if value is None else _name(value)


def read(tflite: bytes) -> dict[str, Any] | None:
    """Reads back what `embed` wrote (or any TFLite image-classifier metadata): labels from the
    packed `labels.txt`, normalisation and names from TFLITE_METADATA. None if there is none."""
    graph = flatbuffer.parse(tflite)
    entries = {_name(m.name): m.buffer for m in (graph.model.metadata or [])}
    if METADATA_NAME not in entries:
        return None
    data = bytes(bytearray(graph.model.buffers[entries[METADATA_NAME]].data))
    if not meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0):
        raise ValueError(f"{METADATA_NAME} buffer does not carry the {METADATA_IDENTIFIER!r} identifier")
    model = meta_fb.ModelMetadataT.InitFromObj(meta_fb.ModelMetadata.GetRootAs(data, 0))
    subgraph = model.subgraphMetadata[0]
    result: dict[str, Any] = {
        "name": _text(model.name), "description": _text(model.description), "version": _text(model.version),
        "author": _text(model.author), "min_parser_version": _text(model.minParserVersion),
        "mean": None, "std": None, "color_space": None, "associated_files": [], "labels": None,
    }  # fmt: skip
    for tensor in subgraph.inputTensorMetadata or []:
        for unit in tensor.processUnits or []:
            if unit.optionsType == meta_fb.ProcessUnitOptions.NormalizationOptions:
                result["mean"] = [float(v) for v in unit.options.mean]
                result["std"] = [float(v) for v in unit.options.std]
        content = tensor.content
        if content is not None and content.contentPropertiesType == meta_fb.ContentProperties.ImageProperties:
            spaces = {v: k for k, v in vars(meta_fb.ColorSpaceType).items() if not k.startswith("_")}
            result["color_space"] = spaces.get(content.contentProperties.colorSpace)
    for tensor in subgraph.outputTensorMetadata or []:
        for file in tensor.associatedFiles or []:
            result["associated_files"].append({"name": _name(file.name), "type": int(file.type)})
    packed = packed_files(tflite)
    for file in result["associated_files"]:
        if file["type"] == meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS and file["name"] in packed:
            result["labels"] = packed[file["name"]].decode("utf-8").splitlines()
    return result


def packed_files(tflite: bytes) -> dict[str, bytes]:
    """Associated files in the zip archive appended to the model ({} when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(tflite)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}
