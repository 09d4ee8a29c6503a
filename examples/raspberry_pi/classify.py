"""Classify an image on a Raspberry Pi with a `.tflite` exported by nlighten_tf.

Needs only tflite-runtime (or ai-edge-litert), NumPy and Pillow:

  python3 classify.py --model model.tflite --image photo.jpg [--top_k 5] [--threads 4] [--no_crop] [--json]

Labels and input normalisation come from the file itself: nlighten_tf embeds TFLite metadata
(the `TFLITE_METADATA` flatbuffer: the input tensor's NormalizationOptions mean/std, applied to
[0, 255] RGB pixels) and packs `labels.txt` into a zip archive appended to the flatbuffer (the
same `.tflite` is a valid zip). The metadata flatbuffer is read with the small reader below,
so no flatbuffers/tflite-support package is needed.

Preprocessing matches nlighten_tf's evaluation transform: RGB, a central square crop of
size/(size+32) of the shorter side (the reference EfficientNet crop; --no_crop resizes the whole
image, as for tiny fixed-size images), bilinear resize to the model's input size (TensorFlow's
bilinear: half-pixel centres, no antialiasing), then
(pixel - mean) / std; int8/uint8 inputs are quantized with the file's own scale and zero point.
"""

import argparse
import io
import json
import struct
import sys
import time
import zipfile

import numpy as np
from PIL import Image

try:  # Raspberry Pi OS bookworm (Python 3.11): tflite-runtime; newer images: ai-edge-litert
    from tflite_runtime.interpreter import Interpreter
except ImportError:  # pragma: no cover - depends on the device
    from ai_edge_litert.interpreter import Interpreter

CROP_PADDING = 32
METADATA_NAME = b"TFLITE_METADATA"


# --- A minimal FlatBuffers reader: tables, vectors, strings (all we need) -------------------


class Table:
    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index):
        """Absolute offset of field `index`, or None if absent."""
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return None
        offset = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return self.pos + offset if offset else None

    def scalar(self, index, fmt, default=0):
        at = self._field(index)
        return default if at is None else struct.unpack_from("<" + fmt, self.buf, at)[0]

    def _indirect(self, at):
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, index):
        at = self._field(index)
        return None if at is None else Table(self.buf, self._indirect(at))

    def vector(self, index):
        """(start, length) of a vector field, or None."""
        at = self._field(index)
        if at is None:
            return None
        start = self._indirect(at)
        return start + 4, struct.unpack_from("<I", self.buf, start)[0]

    def tables(self, index):
        vec = self.vector(index)
        if vec is None:
            return []
        start, length = vec
        return [Table(self.buf, self._indirect(start + 4 * i)) for i in range(length)]

    def floats(self, index):
        vec = self.vector(index)
        return [] if vec is None else list(struct.unpack_from(f"<{vec[1]}f", self.buf, vec[0]))

    def string(self, index):
        vec = self.vector(index)
        return None if vec is None else bytes(self.buf[vec[0] : vec[0] + vec[1]])

    def bytes_vector(self, index):
        vec = self.vector(index)
        return None if vec is None else bytes(self.buf[vec[0] : vec[0] + vec[1]])


def root(buf):
    return Table(buf, struct.unpack_from("<I", buf, 0)[0])


# Field indices from the schemas (tensorflow/lite/schema/schema.fbs, metadata_schema.fbs).
MODEL_METADATA, MODEL_BUFFERS = 6, 4  # Model.metadata, Model.buffers
METADATA_NAME_FIELD, METADATA_BUFFER = 0, 1  # Metadata.name, Metadata.buffer
BUFFER_DATA = 0  # Buffer.data
MM_SUBGRAPHS = 3  # ModelMetadata.subgraph_metadata
SG_INPUTS, SG_OUTPUTS = 2, 3  # SubGraphMetadata.input/output_tensor_metadata
TM_PROCESS_UNITS, TM_ASSOCIATED_FILES = 4, 6  # TensorMetadata.process_units, associated_files
PU_OPTIONS_TYPE, PU_OPTIONS = 0, 1  # ProcessUnit.options (union)
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions.NormalizationOptions
NORM_MEAN, NORM_STD = 0, 1
FILE_NAME, FILE_TYPE = 0, 2  # AssociatedFile.name, .type
LABEL_FILE_TYPES = (2, 3)  # AssociatedFileType.TENSOR_AXIS_LABELS, TENSOR_VALUE_LABELS


def read_metadata(model_bytes):
    """{"mean", "std", "labels_file"} from the embedded TFLite metadata (None values if absent)."""
    out = {"mean": None, "std": None, "labels_file": None}
    model = root(model_bytes)
    buffers = model.tables(MODEL_BUFFERS)
    for entry in model.tables(MODEL_METADATA):
        if entry.string(METADATA_NAME_FIELD) != METADATA_NAME:
            continue
        data = buffers[entry.scalar(METADATA_BUFFER, "I")].bytes_vector(BUFFER_DATA)
        subgraphs = root(data).tables(MM_SUBGRAPHS) if data else []
        if not subgraphs:
            break
        inputs, outputs = subgraphs[0].tables(SG_INPUTS), subgraphs[0].tables(SG_OUTPUTS)
        for unit in inputs[0].tables(TM_PROCESS_UNITS) if inputs else []:
            if unit.scalar(PU_OPTIONS_TYPE, "B") == NORMALIZATION_OPTIONS:
                options = unit.table(PU_OPTIONS)
                out["mean"], out["std"] = options.floats(NORM_MEAN), options.floats(NORM_STD)
        for file in outputs[0].tables(TM_ASSOCIATED_FILES) if outputs else []:
            if file.scalar(FILE_TYPE, "b") in LABEL_FILE_TYPES and out["labels_file"] is None:
                out["labels_file"] = (file.string(FILE_NAME) or b"").decode("utf-8")
    return out


def read_labels(model_bytes, name):
    """Lines of the associated file `name` from the zip appended to the model."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            text = archive.read(name).decode("utf-8")
    except (zipfile.BadZipFile, KeyError):
        return None
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- Preprocessing and inference -------------------------------------------------------------


def resize_bilinear(pixels, size):
    """(H, W, C) float -> (size, size, C), as TensorFlow's `tf.image.resize(..., "bilinear")`
    (half-pixel centres, no antialiasing) which the model was trained and evaluated with;
    Pillow's BILINEAR antialiases when shrinking and would feed the model different pixels."""

    def axis(n_in):
        src = np.clip((np.arange(size, dtype=np.float64) + 0.5) * (n_in / size) - 0.5, 0.0, n_in - 1)
        low = np.floor(src).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (src - low).astype(np.float32)

    y0, y1, wy = axis(pixels.shape[0])
    x0, x1, wx = axis(pixels.shape[1])
    top = pixels[y0][:, x0] * (1 - wx)[None, :, None] + pixels[y0][:, x1] * wx[None, :, None]
    bottom = pixels[y1][:, x0] * (1 - wx)[None, :, None] + pixels[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bottom * wy[:, None, None]


def preprocess(path, size, mean, std, crop):
    image = Image.open(path).convert("RGB")  # grayscale/CMYK/RGBA photos become 3-channel RGB
    pixels = np.asarray(image, dtype=np.float32)
    if crop:
        height, width = pixels.shape[:2]
        side = int(size / (size + CROP_PADDING) * min(width, height))
        top, left = (height - side + 1) // 2, (width - side + 1) // 2
        pixels = pixels[top : top + side, left : left + side]
    pixels = resize_bilinear(pixels, size)
    return (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def quantize(x, detail):
    if np.dtype(detail["dtype"]).kind == "f":
        return x.astype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def dequantize(y, detail):
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale


def classify(model_path, image_path, top_k=5, threads=1, crop=True):
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise ValueError(f"{model_path}: not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        meta = read_metadata(model_bytes)
    except (struct.error, IndexError, UnicodeDecodeError) as error:
        raise ValueError(f"{model_path}: unreadable TFLite metadata ({error}); is the file truncated?") from None
    if meta["mean"] is None:
        raise ValueError(f"{model_path}: no normalisation in the TFLite metadata (export it with nlighten_tf's metadata)")
    labels = read_labels(model_bytes, meta["labels_file"]) if meta["labels_file"] else None
    interpreter = Interpreter(model_path=model_path, num_threads=threads)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    size = int(inp["shape"][1])
    x = preprocess(image_path, size, meta["mean"], meta["std"], crop)
    interpreter.set_tensor(inp["index"], quantize(x[np.newaxis], inp))
    start = time.perf_counter()
    interpreter.invoke()
    ms = (time.perf_counter() - start) * 1e3
    scores = dequantize(interpreter.get_tensor(out["index"]), out)[0]
    order = np.argsort(-scores)[:top_k]
    return {
        "top": [{"index": int(i), "label": labels[i] if labels and i < len(labels) else str(i), "score": float(scores[i])}
                for i in order],
        "scores": [float(s) for s in scores], "invoke_ms": ms, "input_size": size,
        "mean": meta["mean"], "std": meta["std"], "labels_file": meta["labels_file"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no_crop", action="store_true", help="resize the whole image (no centre crop)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    try:
        result = classify(args.model, args.image, args.top_k, args.threads, crop=not args.no_crop)
    except (OSError, ValueError, RuntimeError) as error:  # missing/corrupt model or image
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for entry in result["top"]:
            print(f"{entry['score']:10.4f}  {entry['label']}")
        print(f"({result['invoke_ms']:.1f} ms per invoke)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
