"""Classifier and object-detector metadata packed into a `.tflite` the way TFLite Task Library /
MediaPipe read it.

What an app gets without reading our code:
- a `TFLITE_METADATA` entry in `Model.metadata` (identifier "M001"): `ModelMetadata` with one
  `SubGraphMetadata`; the input `TensorMetadata` has `ImageProperties` (RGB) and a
  `NormalizationOptions` process unit (mean/std per channel on [0, 255] pixels) plus value
  stats; the output `TensorMetadata` lists `labels.txt` as a `TENSOR_AXIS_LABELS` file;
- `labels.txt` itself, one label per line, in a zip archive appended to the flatbuffer (the
  `.tflite` stays a valid flatbuffer and is also a valid zip): exactly how tflite-support's
  `MetadataPopulator` stores associated files.
- for a detector (`DetectorMetadata`, a model ending in TFLite_Detection_PostProcess): the four
  outputs named as ObjectDetector expects ("location", "category", "score", "number of
  detections"), the location tensor with `BoundingBoxProperties` (BOUNDARIES, RATIO, index
  1, 0, 3, 2: top, left, bottom, right), `labels.txt` on the category tensor as
  TENSOR_VALUE_LABELS (the label of class id k is line k).

tflite-support cannot be installed beside TensorFlow 2.21 (protobuf 3.20, NumPy 1), so the
metadata is built with its FlatBuffers-generated schema (vendored in
`nlighten_tf/third_party/tflite_metadata/`) and the model is repacked with the TFLite schema's object
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

from nlighten_tf.boxes import POSTPROCESS_OP
from nlighten_tf.litert import flatbuffer
from nlighten_tf.third_party.tflite_metadata import metadata_schema_py_generated as meta_fb

METADATA_NAME = "TFLITE_METADATA"  # Model.metadata entry the Task Library looks up
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
# Only fields of metadata schema 1.0.0 are written (no tensor groups, no subgraph-level
# process units, no versioned files), so every metadata parser reads them. Without an output
# tensor group ObjectDetector reads a detector's outputs by position, which is why
# `export.detection.order_outputs` fixes them to location, category, score, count.
MIN_PARSER_VERSION = "1.0.0"
DETECTOR_OUTPUTS = (  # name, description: the names ObjectDetector knows the outputs by
    ("location", "The locations of the detected boxes: [top, left, bottom, right] relative to the image."),
    ("category", "The categories of the detected boxes: class ids (as floats) indexing labels.txt."),
    ("score", "The scores of the detected boxes."),
    ("number of detections", "The number of valid detected boxes."),
)
_BOX_INDEX = (1, 0, 3, 2)  # where left, top, right, bottom sit in a [top, left, bottom, right] box


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


@dataclasses.dataclass(frozen=True)
class DetectorMetadata(ClassifierMetadata):
    """What a deployed object detector (outputs of TFLite_Detection_PostProcess) needs."""

    name: str = "ObjectDetector"
    description: str = (
        "Identify which of a known set of objects might be present and where they are in the image."
    )


def from_scheme(
    labels: Sequence[str],
    scheme: str,
    input_size: tuple[int, int],
    kind: type[ClassifierMetadata] = ClassifierMetadata,
    **kwargs: Any,
) -> ClassifierMetadata:
    """Metadata of ``kind`` (ClassifierMetadata or DetectorMetadata) for a `nlighten_tf.data`
    normalisation scheme ("lite", "mobilenet", ...)."""
    from nlighten_tf.data.preprocessing import mean_std

    mean, std = mean_std(scheme)
    return kind(
        labels=tuple(str(label) for label in labels), mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std), input_size=(int(input_size[0]), int(input_size[1])),
        preprocessing=scheme, **kwargs,
    )  # fmt: skip


def _image_metadata(info: ClassifierMetadata, input_type: str) -> Any:
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
    return image


def _labels_file(kind: int, description: str) -> Any:
    labels = meta_fb.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = description
    labels.type = kind
    return labels


def _tensor(name: str, description: str, properties_type: int, properties: Any, value_dim: int | None = None) -> Any:
    tensor = meta_fb.TensorMetadataT()
    tensor.name = name
    tensor.description = description
    tensor.content = meta_fb.ContentT()
    tensor.content.contentPropertiesType = properties_type
    tensor.content.contentProperties = properties
    if value_dim is not None:  # the axis that runs over detections, as ObjectDetector expects
        tensor.content.range = meta_fb.ValueRangeT()
        tensor.content.range.min = tensor.content.range.max = value_dim
    return tensor


def _classifier_outputs(info: ClassifierMetadata, output_type: str) -> list[Any]:
    scores = _tensor(
        "logits", f"Scores (logits) of the {len(info.labels)} labels ({output_type}).",
        meta_fb.ContentProperties.FeatureProperties, meta_fb.FeaturePropertiesT(),
    )  # fmt: skip
    scores.associatedFiles = [
        _labels_file(meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS, "Labels for the categories the model can recognise.")
    ]
    return [scores]


def _detector_outputs() -> list[Any]:
    box = meta_fb.BoundingBoxPropertiesT()
    box.index = list(_BOX_INDEX)
    box.type = meta_fb.BoundingBoxType.BOUNDARIES
    box.coordinateType = meta_fb.CoordinateType.RATIO
    (location, about_location), (category, about_category), (score, about_score), (count, about_count) = DETECTOR_OUTPUTS
    feature = meta_fb.ContentProperties.FeatureProperties
    outputs = [
        _tensor(location, about_location, meta_fb.ContentProperties.BoundingBoxProperties, box, value_dim=2),
        _tensor(category, about_category, feature, meta_fb.FeaturePropertiesT(), value_dim=2),
        _tensor(score, about_score, feature, meta_fb.FeaturePropertiesT(), value_dim=2),
        _tensor(count, about_count, feature, meta_fb.FeaturePropertiesT()),
    ]
    outputs[1].associatedFiles = [
        _labels_file(meta_fb.AssociatedFileType.TENSOR_VALUE_LABELS, "Labels of the class ids in the category output.")
    ]
    return outputs


def _metadata_buffer(info: ClassifierMetadata, input_type: str, output_type: str) -> bytes:
    subgraph = meta_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_image_metadata(info, input_type)]
    subgraph.outputTensorMetadata = (
        _detector_outputs() if isinstance(info, DetectorMetadata) else _classifier_outputs(info, output_type)
    )
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


def _check_detector(graph: Any, info: ClassifierMetadata) -> None:
    outputs = [int(t) for t in graph.subgraph.outputs]
    producers = [graph.producer(t) for t in outputs]
    if len(outputs) != len(DETECTOR_OUTPUTS) or any(p is None or graph.op_types[p] != POSTPROCESS_OP for p in producers):
        raise ValueError(
            f"detector metadata needs the {len(DETECTOR_OUTPUTS)} outputs of {POSTPROCESS_OP} "
            "(export with nlighten_tf.export.detection.export_detector)"
        )
    num_classes = postprocess_num_classes(graph)
    if num_classes is not None and num_classes != len(info.labels):
        raise ValueError(f"the detector has {num_classes} classes but {len(info.labels)} labels were given")


def postprocess_num_classes(graph: Any) -> int | None:
    """``num_classes`` from the TFLite_Detection_PostProcess op's custom options (None if absent)."""
    from flatbuffers import flexbuffers

    for index, op in enumerate(graph.operators):
        if graph.op_types[index] == POSTPROCESS_OP and op.customOptions is not None:
            options = flexbuffers.Loads(bytes(bytearray(op.customOptions)))
            return int(options["num_classes"]) if "num_classes" in options else None
    return None


def embed(tflite: bytes, info: ClassifierMetadata) -> bytes:
    """`tflite` with the TFLITE_METADATA entry set (replacing one already there) and `labels.txt`
    appended as a zip archive. Raises ValueError if the model does not fit ``info``: a
    classifier needs one input and len(labels) outputs, a detector (`DetectorMetadata`) one
    input and the four outputs of TFLite_Detection_PostProcess over len(labels) classes."""
    graph = flatbuffer.parse(tflite)
    fb = flatbuffer.schema()
    inputs, outputs = list(graph.subgraph.inputs), list(graph.subgraph.outputs)
    what = "detector" if isinstance(info, DetectorMetadata) else "classifier"
    if len(inputs) != 1:
        raise ValueError(f"{what} metadata needs one input image, the model has {len(inputs)} inputs")
    if isinstance(info, DetectorMetadata):
        _check_detector(graph, info)
    else:
        if len(outputs) != 1:
            raise ValueError(f"classifier metadata needs one output, the model has {len(outputs)}")
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
        # A fixed timestamp (writestr would stamp the clock): the same model and labels give the
        # same bytes, so an export is reproducible to the byte (and its gzip size with it).
        entry = zipfile.ZipInfo(LABELS_FILE, date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(entry, "\n".join(info.labels) + "\n", compress_type=zipfile.ZIP_STORED)
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
        "outputs": [_text(t.name) for t in subgraph.outputTensorMetadata or []], "bounding_box": None,
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
        content = tensor.content
        if content is not None and content.contentPropertiesType == meta_fb.ContentProperties.BoundingBoxProperties:
            box = content.contentProperties
            result["bounding_box"] = {
                "index": [int(i) for i in box.index], "type": int(box.type), "coordinate_type": int(box.coordinateType),
            }  # fmt: skip
    packed = packed_files(tflite)
    label_kinds = (meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS, meta_fb.AssociatedFileType.TENSOR_VALUE_LABELS)
    for file in result["associated_files"]:
        if file["type"] in label_kinds and file["name"] in packed:
            result["labels"] = packed[file["name"]].decode("utf-8").splitlines()
    return result


def packed_files(tflite: bytes) -> dict[str, bytes]:
    """Associated files in the zip archive appended to the model ({} when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(tflite)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}
