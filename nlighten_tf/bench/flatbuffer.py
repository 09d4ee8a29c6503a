"""Reading `.tflite` flatbuffers with the TFLite schema shipped in the installed packages.

No hand-written parser: `ai_edge_litert.schema_py_generated` (TensorFlow's
`tensorflow.lite.python.schema_py_generated` as a fallback) is the FlatBuffers-generated
object API for schema.fbs. This module adds what the schema leaves to the reader: checking
that bytes are a whole TFLite file, mapping enum numbers to names, and decoding weights
stored sparse (`Tensor.sparsity`, the input of DENSIFY ops) back to dense arrays.
"""

from __future__ import annotations

import dataclasses
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

TFLITE_IDENTIFIER = b"TFL3"


class TFLiteFileError(ValueError):
    """A path that is missing, not a TFLite flatbuffer, or truncated/corrupt."""


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
        dtype = NUMPY_DTYPES.get(dtype_name(tensor.type))
        if dtype is None:
            raise ValueError(f"tensor {self.tensor_name(tensor_index)!r}: unsupported dtype {dtype_name(tensor.type)}")
        stored = np.frombuffer(data.tobytes(), dtype=dtype)
        shape = self.shape(tensor_index)
        if tensor.sparsity is None:
            return stored.reshape(shape)
        return densify(stored, shape, tensor.sparsity)


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


def parse(raw: bytes, where: str = "model") -> Graph:
    """The model's object tree; TFLiteFileError for anything that is not a whole TFLite file."""
    check_tflite_bytes(raw, where)
    fb = schema()
    try:
        model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(raw, 0))
        if not model.subgraphs:
            raise TFLiteFileError(f"{where}: TFLite file has no subgraph")
        subgraph = model.subgraphs[0]
        codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
        op_types = []
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            op_types.append(
                (code.customCode or b"CUSTOM").decode() if op_name(codes[op.opcodeIndex]) == "CUSTOM" else
                op_name(codes[op.opcodeIndex])
            )  # fmt: skip
        graph = Graph(model=model, raw=raw, subgraph=subgraph, op_types=op_types)
        for index in range(len(subgraph.tensors or [])):
            graph.buffer_bytes(index)  # bounds-checks buffers kept after the flatbuffer
    except TFLiteFileError:
        raise
    except Exception as error:  # flatbuffers reports truncation as struct/index/value errors
        raise TFLiteFileError(
            f"{where}: truncated or corrupt TFLite file ({type(error).__name__}: {error})"
        ) from None
    return graph


def load(path: str | os.PathLike[str]) -> Graph:
    return parse(read_bytes(path), str(path))
