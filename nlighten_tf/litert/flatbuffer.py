"""Reading `.tflite` flatbuffers with the TFLite schema shipped in the installed packages.

No hand-written parser: `ai_edge_litert.schema_py_generated` (TensorFlow's
`tensorflow.lite.python.schema_py_generated` as a fallback) is the FlatBuffers-generated
object API for schema.fbs. This module adds what the schema leaves to the reader: checking
that bytes are a whole, consistent TFLite file (`validate`), mapping enum numbers to names, and
decoding weights stored sparse (`Tensor.sparsity`, the input of DENSIFY ops) back to dense arrays.

Why `validate` exists: the Python FlatBuffers library does not verify a buffer (it reads
lazily and slices strings silently short), and the TFLite interpreter's Python wrapper builds
its model without FlatBuffers' verifier, so a corrupt file crashed the interpreter (SIGSEGV /
SIGABRT) or made the reader allocate tens of GiB. Every file is validated before any reader or
interpreter sees it; a failure is a `TFLiteFileError` naming the file and the tensor, operator or
byte offset at fault.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import struct
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from nlighten_tf.errors import NlightenError

TFLITE_IDENTIFIER = b"TFL3"


class TFLiteFileError(NlightenError, ValueError):
    """A path that is missing, not a TFLite flatbuffer, or truncated/corrupt."""


# Exceptions that reading a corrupt file raises inside the FlatBuffers library, NumPy or the
# inspectors (struct.error for a read past the end, TypeError for an offset outside uint32, ...).
READ_ERRORS = (
    struct.error, IndexError, KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError, OverflowError,
    ZeroDivisionError, RecursionError,
)  # fmt: skip


@contextlib.contextmanager
def reading(where: str, what: str) -> Iterator[None]:
    """Turns an exception raised while reading `what` of the file `where` into TFLiteFileError.

    The last line of defence: `validate` names the tensor/operator/offset for everything it
    knows about; this catches what it does not (an op whose inputs make no sense to an inspector).
    """
    try:
        yield
    except TFLiteFileError:
        raise
    except READ_ERRORS as error:
        message = " ".join(str(error).split())[:300]
        raise TFLiteFileError(
            f"{where}: corrupt or inconsistent TFLite file ({what}: {type(error).__name__}: {message})"
        ) from None


@cache
def schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:  # a machine with TensorFlow only
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


@cache
def _enum_names(enum_class_name: str) -> dict[int, str]:
    enum = getattr(schema(), enum_class_name)
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def op_name(code: int) -> str:
    return _enum_names("BuiltinOperator").get(code, f"BUILTIN_{code}")


def enum_name(enum_class_name: str, value: int) -> str:
    """The schema's name for an enum value, e.g. enum_name("ActivationFunctionType", 3) == "RELU6"."""
    return _enum_names(enum_class_name).get(value, f"{enum_class_name}_{value}")


def dtype_name(tensor_type: int) -> str:
    return _enum_names("TensorType").get(tensor_type, f"TYPE_{tensor_type}").lower()


NUMPY_DTYPES = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32, "int64": np.int64,
    "uint64": np.uint64, "bool": np.bool_,
}  # fmt: skip


@dataclasses.dataclass
class Graph:
    """The first subgraph of a model, with helpers the inspectors share."""

    model: Any  # schema ModelT
    raw: bytes
    subgraph: Any  # schema SubGraphT
    op_types: list[str]  # per operator in execution order

    @property
    def tensors(self) -> list[Any]:
        return self.subgraph.tensors

    @property
    def operators(self) -> list[Any]:
        return self.subgraph.operators

    def tensor_name(self, index: int) -> str:
        name = self.tensors[index].name
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)

    def buffer_bytes(self, tensor_index: int) -> np.ndarray | None:
        """The raw bytes of a constant tensor, or None for activations."""
        tensor = self.tensors[tensor_index]
        if tensor.buffer <= 0 or tensor.buffer >= len(self.model.buffers):
            return None
        buffer = self.model.buffers[tensor.buffer]
        if buffer.data is not None and len(buffer.data):
            return np.asarray(buffer.data, dtype=np.uint8)
        if buffer.offset > 1:  # models > 2 GB keep buffers after the flatbuffer
            end = buffer.offset + buffer.size
            if end > len(self.raw):
                raise TFLiteFileError(f"buffer {tensor.buffer} ends at byte {end} past the end of the file (truncated?)")
            return np.frombuffer(self.raw, np.uint8, buffer.size, buffer.offset)
        return None

    def is_constant(self, tensor_index: int) -> bool:
        return tensor_index >= 0 and self.buffer_bytes(tensor_index) is not None

    def consumers(self, tensor_index: int) -> list[int]:
        return [i for i, op in enumerate(self.operators) if op.inputs is not None and tensor_index in list(op.inputs)]

    def producer(self, tensor_index: int) -> int | None:
        for i, op in enumerate(self.operators):
            if op.outputs is not None and tensor_index in list(op.outputs):
                return i
        return None

    def shape(self, tensor_index: int) -> tuple[int, ...]:
        shape = self.tensors[tensor_index].shape
        return tuple(int(d) for d in shape) if shape is not None else ()

    def shape_signature(self, tensor_index: int) -> tuple[int, ...]:
        """The shape with -1 for dimensions unknown at conversion (the converter's `shape_signature`;
        the stored `shape` holds the size the interpreter allocates, e.g. batch 1 for -1)."""
        signature = self.tensors[tensor_index].shapeSignature
        return tuple(int(d) for d in signature) if signature is not None else self.shape(tensor_index)

    def values(self, tensor_index: int) -> np.ndarray:
        """Dense values of a constant tensor, decoding sparse storage (DENSIFY inputs)."""
        tensor = self.tensors[tensor_index]
        data = self.buffer_bytes(tensor_index)
        if data is None:
            raise ValueError(f"tensor {self.tensor_name(tensor_index)!r} is not a constant")
        shape = self.shape(tensor_index)
        if dtype_name(tensor.type) == "int4" and tensor.sparsity is None:
            return unpack_int4(data.tobytes(), int(np.prod(shape))).reshape(shape)
        dtype = NUMPY_DTYPES.get(dtype_name(tensor.type))
        if dtype is None:
            raise ValueError(f"tensor {self.tensor_name(tensor_index)!r}: unsupported dtype {dtype_name(tensor.type)}")
        stored = np.frombuffer(data.tobytes(), dtype=dtype)
        if tensor.sparsity is None:
            return stored.reshape(shape)
        return densify(stored, shape, tensor.sparsity)


def unpack_int4(packed: bytes, count: int) -> np.ndarray:
    """int4 values as TFLite packs them (LiteRT Quantizer's `int4_weights`): two per byte, the
    first in the low nibble, two's complement."""
    raw = np.frombuffer(packed, np.uint8)
    nibbles = np.stack([raw & 0x0F, raw >> 4], axis=-1).reshape(-1)[:count].astype(np.int8)
    return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)


def _index_vector(vector: Any) -> np.ndarray:
    # Int32Vector / Uint16Vector / Uint8Vector all hold `values`.
    values = getattr(vector, "values", None)
    return np.asarray(values if values is not None else [], dtype=np.int64)


def densify(stored: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """Decodes TFLite's sparse tensor format (schema.fbs `SparsityParameters`) to a dense array.

    Follows TFLite's FormatConverter::SparseToDense level by level, vectorised: each level of
    the traversal order is DENSE (every index 0..dense_size) or SPARSE_CSR (segments/indices
    per parent position); block dimensions follow the original ones and are folded back
    through `block_map`. Values are stored in traversal order, so the k-th path is value k.
    """
    rank = len(shape)
    order = [int(v) for v in sparsity.traversalOrder]
    block_map = [int(v) for v in (sparsity.blockMap if sparsity.blockMap is not None else [])]
    dims = sparsity.dimMetadata
    block_size = [int(dims[rank + i].denseSize) for i in range(len(block_map))]
    dense_format = schema().DimensionType.DENSE
    positions = np.zeros(1, dtype=np.int64)
    indices: list[np.ndarray] = []
    for level, meta in enumerate(dims):
        if meta.format == dense_format:
            size = int(meta.denseSize)
            new_positions = (positions[:, None] * size + np.arange(size)).ravel()
            indices = [np.repeat(a, size) for a in indices] + [np.tile(np.arange(size), len(positions))]
        else:
            segments, column = _index_vector(meta.arraySegments), _index_vector(meta.arrayIndices)
            starts, counts = segments[positions], segments[positions + 1] - segments[positions]
            parent = np.repeat(np.arange(len(positions)), counts)
            first = np.cumsum(counts) - counts
            new_positions = starts[parent] + np.arange(int(counts.sum())) - first[parent]
            indices = [a[parent] for a in indices] + [column[new_positions]]
        positions = new_positions
        del level
    original: list[np.ndarray] = [np.zeros(0, np.int64)] * rank
    for level in range(rank):
        original[order[level]] = indices[level]
    for level in range(rank, len(order)):
        block = order[level] - rank
        dim = block_map[block]
        original[dim] = original[dim] * block_size[block] + indices[level]
    dense = np.zeros(int(np.prod(shape)), dtype=stored.dtype)
    count = len(indices[0]) if indices else 0
    if count > len(stored):
        raise TFLiteFileError(f"sparse tensor lists {count} values but stores {len(stored)} (corrupt file?)")
    if count:
        dense[np.ravel_multi_index(tuple(original), shape)] = stored[:count]
    return dense.reshape(shape)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    path = Path(path)
    if not path.exists():
        raise TFLiteFileError(f"{path}: no such file")
    if path.is_dir():
        raise TFLiteFileError(f"{path}: is a directory, not a .tflite file")
    return path.read_bytes()


def check_tflite_bytes(raw: bytes, where: str = "model") -> None:
    """Raises TFLiteFileError unless `raw` starts like a TFLite flatbuffer."""
    if len(raw) < 8:
        raise TFLiteFileError(f"{where}: {len(raw)} bytes is too short to be a TFLite flatbuffer")
    if raw[4:8] != TFLITE_IDENTIFIER:
        raise TFLiteFileError(
            f"{where}: not a TFLite flatbuffer (file identifier {raw[4:8]!r}, expected {TFLITE_IDENTIFIER!r})"
        )
    root = int.from_bytes(raw[0:4], "little")
    if root >= len(raw):
        raise TFLiteFileError(f"{where}: truncated TFLite file (root table at byte {root} of {len(raw)})")


# --- validation -------------------------------------------------------------------------------

# Bits per element by TensorType name; None: no fixed size (strings, resources, variants).
_TYPE_BITS = {
    "FLOAT32": 32, "FLOAT16": 16, "INT32": 32, "UINT8": 8, "INT64": 64, "STRING": None, "BOOL": 8, "INT16": 16,
    "COMPLEX64": 64, "INT8": 8, "FLOAT64": 64, "COMPLEX128": 128, "UINT64": 64, "RESOURCE": None, "VARIANT": None,
    "UINT32": 32, "UINT16": 16, "INT4": 4, "BFLOAT16": 16, "INT2": 2, "UINT4": 4, "FLOAT8_E4M3FN": 8,
    "FLOAT8_E5M2": 8,
}  # fmt: skip
# No single activation tensor of an edge model comes near this; a flipped shape bit does (the
# interpreter would try to allocate it).
MAX_TENSOR_BYTES = 2**31
# A constant stored sparse may describe a dense tensor much larger than its stored values, but
# not arbitrarily: at most this many elements per byte of the file (~98.5% zeros across the whole
# file), and never less than 2**20 elements. `densify` allocates the dense form.
SPARSE_ELEMENTS_PER_FILE_BYTE = 64
# Inputs each op needs before the inspectors (and the interpreter's kernels) read them.
_MIN_INPUTS = {
    "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3, "PAD": 2, "PADV2": 2,
    "MEAN": 2, "SUM": 2, "REDUCE_MAX": 2, "REDUCE_MIN": 2, "PRELU": 2, "RESHAPE": 1, "DENSIFY": 1,
    "DEQUANTIZE": 1, "QUANTIZE": 1, "SOFTMAX": 1, "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2,
    "STRIDED_SLICE": 4, "SLICE": 3, "SPLIT": 2, "ADD": 2, "MUL": 2, "SUB": 2, "CONCATENATION": 1,
    "AVERAGE_POOL_2D": 1, "MAX_POOL_2D": 1,
}  # fmt: skip
# Ops whose options the interpreter divides by (strides, dilations, filter sizes): the options
# table must be present and of this type, its strides >= 1 (a zero stride is a SIGFPE in the kernel).
_STRIDED_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", {"stride_w": 6, "stride_h": 8}, {"dilation_w": 12, "dilation_h": 14}),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", {"stride_w": 6, "stride_h": 8}, {"dilation_w": 14, "dilation_h": 16}),
    "AVERAGE_POOL_2D": ("Pool2DOptions", {"stride_w": 6, "stride_h": 8, "filter_width": 10, "filter_height": 12}, {}),
    "MAX_POOL_2D": ("Pool2DOptions", {"stride_w": 6, "stride_h": 8, "filter_width": 10, "filter_height": 12}, {}),
    "TRANSPOSE_CONV": ("TransposeConvOptions", {"stride_w": 6, "stride_h": 8}, {}),
}  # fmt: skip


class _Verifier:
    """Bounds checks of the raw flatbuffer, as FlatBuffers' C++ Verifier does them: every table,
    vtable, vector and string lies inside the file, strings end in their NUL, and the number of
    tables visited is bounded by what the file can hold (no blow-up through shared offsets)."""

    def __init__(self, raw: bytes, where: str) -> None:
        self.raw, self.size, self.where = raw, len(raw), where
        self.tables_left = self.size // 4 + 16  # a table takes >= 4 bytes

    def fail(self, what: str, offset: int | None = None) -> None:
        raise TFLiteFileError(f"{self.where}: {what}" + (f" (offset {offset})" if offset is not None else ""))

    def scalar(self, fmt: str, pos: int, what: str) -> Any:
        if pos < 0 or pos + struct.calcsize(fmt) > self.size:
            self.fail(f"{what} lies outside the file of {self.size} bytes (truncated or corrupt)", pos)
        return struct.unpack_from(fmt, self.raw, pos)[0]

    def table(self, pos: int, what: str) -> _Table:
        self.tables_left -= 1
        if self.tables_left < 0:
            self.fail(f"more tables than a file of {self.size} bytes can hold at {what}", pos)
        vtable = pos - self.scalar("<i", pos, f"{what}: table")
        vsize = self.scalar("<H", vtable, f"{what}: vtable")
        tsize = self.scalar("<H", vtable + 2, f"{what}: vtable")
        if vsize < 4 or vsize % 2 or vtable + vsize > self.size:
            self.fail(f"{what}: vtable of {vsize} bytes is malformed or runs past the end of the file (truncated or corrupt)", vtable)
        if tsize < 4 or pos + tsize > self.size:
            self.fail(f"{what}: table of {tsize} bytes runs past the end of the file (truncated or corrupt)", pos)
        # Every field, including those this module never reads (the object API reads them all),
        # starts inside its table; readers check each field's width against the table as they go.
        offsets = struct.unpack_from(f"<{(vsize - 4) // 2}H", self.raw, vtable + 4)
        outside = [(i, o) for i, o in enumerate(offsets) if o and not 4 <= o < tsize]
        if outside:
            field, offset = outside[0]
            self.fail(f"{what}: field {field} at byte {offset} lies outside its table of {tsize} bytes", pos)
        return _Table(self, pos, vtable, vsize, tsize, what)


@dataclasses.dataclass
class _Table:
    verifier: _Verifier
    pos: int
    vtable: int
    vsize: int
    tsize: int
    what: str

    def _field(self, slot: int, width: int, name: str) -> int | None:
        if slot >= self.vsize:
            return None
        offset = self.verifier.scalar("<H", self.vtable + slot, f"{self.what}: vtable")
        if offset == 0:
            return None
        if offset + width > self.tsize:
            self.verifier.fail(f"{self.what}: field {name} lies outside its table", self.pos + offset)
        return self.pos + offset

    def scalar(self, slot: int, fmt: str, name: str, default: int = 0) -> Any:
        pos = self._field(slot, struct.calcsize(fmt), name)
        return default if pos is None else self.verifier.scalar(fmt, pos, f"{self.what}: {name}")

    def _target(self, slot: int, name: str) -> int | None:
        pos = self._field(slot, 4, name)
        if pos is None:
            return None
        target = pos + self.verifier.scalar("<I", pos, f"{self.what}: {name}")
        if target >= self.verifier.size:
            self.verifier.fail(f"{self.what}: {name} points to byte {target}, past the end of the file (truncated or corrupt)", pos)
        return target

    def vector(self, slot: int, width: int, name: str) -> tuple[int, int] | None:
        """(first element's offset, length), bounds-checked; None when the field is absent."""
        target = self._target(slot, name)
        if target is None:
            return None
        length = self.verifier.scalar("<I", target, f"{self.what}: {name} length")
        if target + 4 + length * width > self.verifier.size:
            self.verifier.fail(
                f"{self.what}: {name} of {length} elements runs past the end of the file (truncated or corrupt)", target
            )  # fmt: skip
        return target + 4, length

    def array(self, slot: int, dtype: str, name: str) -> np.ndarray | None:
        found = self.vector(slot, np.dtype(dtype).itemsize, name)
        if found is None:
            return None
        return np.frombuffer(self.verifier.raw, np.dtype(dtype), found[1], found[0]).astype(np.int64)

    def string(self, slot: int, name: str) -> bytes | None:
        found = self.vector(slot, 1, name)
        if found is None:
            return None
        start, length = found
        if self.verifier.scalar("<B", start + length, f"{self.what}: {name}") != 0:
            self.verifier.fail(f"{self.what}: string {name} is not NUL-terminated", start + length)
        return self.verifier.raw[start : start + length]

    def table(self, slot: int, name: str) -> _Table | None:
        target = self._target(slot, name)
        return None if target is None else self.verifier.table(target, f"{self.what}: {name}")

    def tables(self, slot: int, name: str, label: str) -> list[_Table]:
        found = self.vector(slot, 4, name)
        if found is None:
            return []
        start, length = found
        out = []
        for i in range(length):
            element = start + 4 * i
            target = element + self.verifier.scalar("<I", element, f"{label} {i}")
            if target >= self.verifier.size:
                self.verifier.fail(f"{label} {i} points to byte {target}, past the end of the file (truncated or corrupt)", element)
            out.append(self.verifier.table(target, f"{label} {i}"))
        return out


def _describe_tensor(index: int, name: bytes | None, subgraph: int) -> str:
    text = (name or b"").decode("utf-8", "replace")
    return f"tensor {index} {text!r}" + (f" of subgraph {subgraph}" if subgraph else "")


def _check_indices(verifier: _Verifier, values: np.ndarray | None, count: int, what: str, optional: bool) -> None:
    if values is None or not len(values):
        return
    low = -1 if optional else 0
    bad = values[(values < low) | (values >= count)]
    if len(bad):
        verifier.fail(f"{what} refers to tensor {int(bad[0])}, outside the subgraph's {count} tensors")


def _check_sparsity(
    verifier: _Verifier, sparsity: _Table, label: str, shape: list[int], stored: int, cap: int
) -> None:
    """The sparse-storage metadata against the dense shape and the stored values, level by level
    as TFLite's FormatConverter (and `densify`) walk it, so neither indexes out of bounds."""
    rank = len(shape)
    order = sparsity.array(4, "<i4", "traversal_order")
    block_map = sparsity.array(6, "<i4", "block_map")
    block_map = [] if block_map is None else [int(v) for v in block_map]
    dims = sparsity.tables(8, "dim_metadata", f"{label}: sparsity dim_metadata")
    order = [] if order is None else [int(v) for v in order]
    if len(order) != rank + len(block_map) or sorted(order) != list(range(len(order))) or sorted(order[:rank]) != list(
        range(rank)
    ):
        verifier.fail(f"{label}: sparsity traversal order {order} does not fit shape {shape} with {len(block_map)} block dims")
    if len(set(block_map)) != len(block_map) or any(not 0 <= d < rank for d in block_map):
        verifier.fail(f"{label}: sparsity block map {block_map} does not fit shape {shape}")
    if len(dims) != len(order):
        verifier.fail(f"{label}: sparsity has {len(dims)} dim_metadata entries for {len(order)} traversal levels")
    dense_type = schema().DimensionType.DENSE
    levels = []
    for level, meta in enumerate(dims):
        kind, dense_size = meta.scalar(4, "<b", "format"), meta.scalar(6, "<i", "dense_size")
        vectors = []
        for type_slot, value_slot, name in ((8, 10, "array_segments"), (12, 14, "array_indices")):
            vector_type = meta.scalar(type_slot, "<B", f"{name}_type")
            table = meta.table(value_slot, name) if vector_type else None
            dtype = {1: "<i4", 2: "<u2", 3: "<u1"}.get(vector_type)
            if vector_type and dtype is None:
                verifier.fail(f"{label}: sparsity level {level} {name} has unknown index type {vector_type}")
            vectors.append(table.array(4, dtype, "values") if table is not None else None)
        levels.append((kind, dense_size, *vectors))
    block_size = []
    for i, dim in enumerate(block_map):
        kind, size = levels[rank + i][0], levels[rank + i][1]
        if kind != dense_type or size < 1 or shape[dim] % size:
            verifier.fail(f"{label}: sparsity block {i} of size {size} does not divide dimension {dim} of shape {shape}")
        block_size.append(size)
    blocked = list(shape)
    for i, dim in enumerate(block_map):
        blocked[dim] //= block_size[i]
    count = 1
    for level, (kind, dense_size, segments, indices) in enumerate(levels):
        dim = order[level]
        size = blocked[dim] if dim < rank else block_size[dim - rank]
        where = f"{label}: sparsity level {level}"
        if kind == dense_type:
            if dense_size != size:
                verifier.fail(f"{where} is dense of size {dense_size} but shape {shape} gives {size}")
            count *= size
            if count > cap:
                verifier.fail(f"{where}: {count} positions, more than a file of {verifier.size} bytes can describe")
        elif kind == schema().DimensionType.SPARSE_CSR:
            if segments is None or indices is None:
                verifier.fail(f"{where} is SPARSE_CSR without segments and indices")
            if len(segments) != count + 1:
                verifier.fail(f"{where} has {len(segments)} segments for {count} parent positions (needs {count + 1})")
            if segments[0] != 0 or np.any(np.diff(segments) < 0) or segments[-1] != len(indices):
                verifier.fail(f"{where}: segments are not a non-decreasing 0..{len(indices)} sequence")
            if len(indices) and (indices.min() < 0 or indices.max() >= size):
                verifier.fail(f"{where}: an index lies outside the dimension's size {size}")
            count = len(indices)
        else:
            verifier.fail(f"{where} has unknown format {kind}")
    if count != stored:
        verifier.fail(f"{label}: sparsity metadata lists {count} values but the buffer stores {stored}")


def validate(raw: bytes, where: str = "model") -> None:
    """Walks the whole model with bounds checks before any reader or interpreter sees it.

    Structure: every table, vtable, vector and string inside the file; buffers kept after the
    flatbuffer (files > 2 GB) inside it. Consistency: buffer, opcode, tensor and subgraph indices
    in range; dense constant tensors exactly product(shape) * element size bytes; sparsity
    metadata (traversal order, block map, dim metadata, segments and indices) consistent with the
    shape and the stored values; shape products bounded (MAX_TENSOR_BYTES, and what the file can
    describe for sparse constants) before anything is allocated; per-channel quantization sized
    to its dimension; conv/pool strides >= 1. Raises TFLiteFileError("<where>: <what> (tensor N
    'name' / operator N / offset X)").
    """
    check_tflite_bytes(raw, where)
    verifier = _Verifier(raw, where)
    root = verifier.scalar("<I", 0, "root table offset")
    model = verifier.table(root, "model")
    codes = model.tables(6, "operator_codes", "operator code")
    opcodes = []
    for code in codes:
        deprecated, builtin = code.scalar(4, "<b", "deprecated_builtin_code"), code.scalar(10, "<i", "builtin_code")
        code.string(6, "custom_code")
        opcodes.append(op_name(max(deprecated, builtin)))
    subgraphs = model.tables(8, "subgraphs", "subgraph")
    if not subgraphs:
        verifier.fail("TFLite file has no subgraph")
    model.string(10, "description")
    buffers = model.tables(12, "buffers", "buffer")
    buffer_bytes = []
    for i, buffer in enumerate(buffers):
        data = buffer.vector(4, 1, "data")
        offset, size = buffer.scalar(6, "<Q", "offset"), buffer.scalar(8, "<Q", "size")
        if data is not None and data[1]:
            buffer_bytes.append(data[1])
        elif offset > 1:  # models > 2 GB keep buffers after the flatbuffer
            if offset + size > len(raw):
                verifier.fail(f"buffer {i} ends at byte {offset + size} past the end of the file (truncated?)", offset)
            buffer_bytes.append(size)
        else:
            buffer_bytes.append(0)
    metadata_buffer = model.array(14, "<i4", "metadata_buffer")
    if metadata_buffer is not None and len(metadata_buffer) and (
        metadata_buffer.min() < 0 or metadata_buffer.max() >= len(buffers)
    ):  # fmt: skip
        verifier.fail(f"metadata_buffer refers to a buffer outside the file's {len(buffers)}")
    for i, entry in enumerate(model.tables(16, "metadata", "metadata")):
        entry.string(4, "name")
        if entry.scalar(6, "<I", "buffer") >= len(buffers):
            verifier.fail(f"metadata {i} refers to buffer {entry.scalar(6, '<I', 'buffer')} of {len(buffers)}")
    cap = max(SPARSE_ELEMENTS_PER_FILE_BYTE * len(raw), 2**20)
    options_enum = _enum_names("BuiltinOptions")
    tensor_counts = []
    for sg, subgraph in enumerate(subgraphs):
        tensors = subgraph.tables(4, "tensors", "tensor" if not sg else f"subgraph {sg} tensor")
        tensor_counts.append(len(tensors))
        for t, tensor in enumerate(tensors):
            name = tensor.string(10, "name")
            label = _describe_tensor(t, name, sg)
            tensor.what = label
            shape = tensor.array(4, "<i4", "shape")
            shape = [] if shape is None else [int(d) for d in shape]
            tensor.array(18, "<i4", "shape_signature")
            type_code = tensor.scalar(6, "<b", "type")
            type_name = _enum_names("TensorType").get(type_code)
            if type_name is None:
                verifier.fail(f"{label}: unknown tensor type {type_code}")
            if any(d < 0 for d in shape):
                verifier.fail(f"{label}: negative dimension in shape {shape}")
            elements = math.prod(shape)
            bits = _TYPE_BITS.get(type_name)
            if bits is not None and elements * bits > 8 * MAX_TENSOR_BYTES:
                verifier.fail(f"{label}: shape {shape} {type_name.lower()} is {elements * bits // 8:,} bytes (limit {MAX_TENSOR_BYTES:,})")
            buffer_index = tensor.scalar(8, "<I", "buffer")
            if buffer_index >= len(buffers):
                verifier.fail(f"{label}: buffer index {buffer_index} outside the file's {len(buffers)} buffers")
            for variant in tensor.tables(22, "variant_tensors", f"{label}: variant"):
                variant.array(4, "<i4", "shape")
            quantization = tensor.table(12, "quantization")
            sparsity = tensor.table(16, "sparsity")
            if quantization is not None:
                _check_quantization(verifier, quantization, label, shape)
            stored = buffer_bytes[buffer_index] if buffer_index > 0 else 0
            if not stored or bits is None:
                if sparsity is not None and stored:
                    verifier.fail(f"{label}: {type_name.lower()} tensor cannot be stored sparse")
                continue
            if sparsity is not None:
                if (stored * 8) % bits:
                    verifier.fail(f"{label}: sparse buffer of {stored} bytes is not whole {type_name.lower()} values")
                if elements > cap:
                    verifier.fail(f"{label}: dense shape {shape} is {elements:,} elements, more than a file of {len(raw):,} bytes can describe")
                _check_sparsity(verifier, sparsity, label, shape, stored * 8 // bits, cap)
            elif stored != -(-elements * bits // 8):
                verifier.fail(
                    f"{label}: shape {shape} {type_name.lower()} needs {-(-elements * bits // 8):,} bytes but its buffer "
                    f"{buffer_index} holds {stored:,}"
                )  # fmt: skip
        count = len(tensors)
        for slot, name in ((6, "inputs"), (8, "outputs")):
            what = f"subgraph {sg} {name}"
            _check_indices(verifier, subgraph.array(slot, "<i4", name), count, what, optional=False)
        subgraph.string(12, "name")
        for o, op in enumerate(subgraph.tables(10, "operators", "operator" if not sg else f"subgraph {sg} operator")):
            _check_operator(verifier, op, o, sg, opcodes, count, options_enum, len(raw))
    for i, signature in enumerate(model.tables(18, "signature_defs", "signature")):
        index = signature.scalar(12, "<I", "subgraph_index")
        if index >= len(subgraphs):
            verifier.fail(f"signature {i} refers to subgraph {index} of {len(subgraphs)}")
        signature.string(8, "signature_key")
        signature.string(10, "deprecated_tag")
        for slot, name in ((4, "inputs"), (6, "outputs")):
            for entry in signature.tables(slot, name, f"signature {i} {name[:-1]}"):
                entry.string(4, "name")
                tensor_index = entry.scalar(6, "<I", "tensor_index")
                if tensor_index >= tensor_counts[index]:
                    verifier.fail(f"signature {i} {name[:-1]} refers to tensor {tensor_index} of {tensor_counts[index]}")


def _check_quantization(verifier: _Verifier, quantization: _Table, label: str, shape: list[int]) -> None:
    for slot, name in ((4, "min"), (6, "max")):
        quantization.vector(slot, 4, name)
    scale = quantization.vector(8, 4, "scale")
    zero_point = quantization.vector(10, 8, "zero_point")
    if quantization.scalar(12, "<B", "details_type"):
        details = quantization.table(14, "details")
        if details is not None:
            details.vector(4, 1, "custom")
    dimension = quantization.scalar(16, "<i", "quantized_dimension")
    # The interpreter's own rules (InterpreterBuilder::ParseQuantization), checked here so that
    # the inspectors can index scales per channel.
    if scale is None or zero_point is None:
        return
    if scale[1] != zero_point[1]:
        verifier.fail(f"{label}: {scale[1]} quantization scales but {zero_point[1]} zero points")
    if not scale[1]:
        return
    if shape and not 0 <= dimension < len(shape):
        verifier.fail(f"{label}: quantized dimension {dimension} outside shape {shape}")
    if scale[1] != 1 and shape and scale[1] != shape[dimension]:
        verifier.fail(f"{label}: {scale[1]} scales for dimension {dimension} of size {shape[dimension]}")


def _check_operator(
    verifier: _Verifier, op: _Table, index: int, subgraph: int, opcodes: list[str], tensors: int,
    options_enum: dict[int, str], file_size: int,
) -> None:  # fmt: skip
    code = op.scalar(4, "<I", "opcode_index")
    label = f"operator {index}" + (f" of subgraph {subgraph}" if subgraph else "")
    if code >= len(opcodes):
        verifier.fail(f"{label}: opcode index {code} outside the file's {len(opcodes)} operator codes")
    op_type = opcodes[code]
    label = f"{label} ({op_type})"
    op.what = label
    inputs, outputs = op.array(6, "<i4", "inputs"), op.array(8, "<i4", "outputs")
    _check_indices(verifier, inputs, tensors, f"{label} input", optional=True)
    _check_indices(verifier, outputs, tensors, f"{label} output", optional=True)
    _check_indices(verifier, op.array(20, "<i4", "intermediates"), tensors, f"{label} intermediate", optional=True)
    needed = _MIN_INPUTS.get(op_type, 0)
    if needed and (inputs is None or len(inputs) < needed or inputs[0] < 0 or outputs is None or not len(outputs)):
        verifier.fail(f"{label}: needs >= {needed} inputs and an output, has {0 if inputs is None else len(inputs)} "
                      f"and {0 if outputs is None else len(outputs)}")  # fmt: skip
    op.vector(14, 1, "custom_options")
    op.vector(18, 1, "mutating_variable_inputs")
    large_offset, large_size = op.scalar(22, "<Q", "large_custom_options_offset"), op.scalar(24, "<Q", "large_custom_options_size")
    if large_offset > 1 and large_offset + large_size > file_size:
        verifier.fail(f"{label}: custom options end at byte {large_offset + large_size}, past the end of the file")
    options = None
    for type_slot, value_slot, enum in ((10, 12, options_enum), (26, 28, _enum_names("BuiltinOptions2"))):
        options_type = op.scalar(type_slot, "<B", "builtin options type")
        if options_type and options_type not in enum:
            verifier.fail(f"{label}: unknown builtin options type {options_type}")
        table = op.table(value_slot, "builtin options") if options_type else None
        options_class = getattr(schema(), f"{enum.get(options_type)}T", None)
        if table is not None and options_class is not None:
            # Options tables hold vectors too (ReshapeOptions.new_shape, ...): reading the table
            # with the object API bounds-checks every one of them.
            try:
                options_class.InitFromBuf(verifier.raw, table.pos)
            except READ_ERRORS as error:
                verifier.fail(
                    f"{label}: {enum[options_type]} runs outside the file (truncated or corrupt; {type(error).__name__})",
                    table.pos,
                )  # fmt: skip
        if type_slot == 10:
            options = (enum.get(options_type), table)
    expected = _STRIDED_OPTIONS.get(op_type)
    if expected is not None:
        name, positive, dilations = expected
        if options[0] != name or options[1] is None:
            verifier.fail(f"{label}: needs {name}, has {options[0] or 'no options'}")
        for field, slot in positive.items():
            value = options[1].scalar(slot, "<i", field)
            if value < 1:
                verifier.fail(f"{label}: {field} is {value} (must be >= 1)")
        for field, slot in dilations.items():
            value = options[1].scalar(slot, "<i", field, default=1)
            if value < 1:
                verifier.fail(f"{label}: {field} is {value} (must be >= 1)")


def parse(raw: bytes, where: str = "model") -> Graph:
    """The model's object tree; TFLiteFileError for anything that is not a whole, consistent
    TFLite file (`validate` runs first)."""
    validate(raw, where)
    fb = schema()
    with reading(where, "model structure"):
        model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(raw, 0))
        subgraph = model.subgraphs[0]
        codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
        op_types = []
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            op_types.append(
                (code.customCode or b"CUSTOM").decode("utf-8", "replace") if op_name(codes[op.opcodeIndex]) == "CUSTOM"
                else op_name(codes[op.opcodeIndex])
            )  # fmt: skip
        graph = Graph(model=model, raw=raw, subgraph=subgraph, op_types=op_types)
    return graph


def load(path: str | os.PathLike[str]) -> Graph:
    return parse(read_bytes(path), str(path))
