"""Atomic file writes: a temporary file in the target directory, then os.replace, so a crash
never leaves a half-written model, report or plot behind.

Also the up-front checks tools run on their output paths (`check_output_file`,
`check_output_dir`), so that a path that is a file, or a read-only directory, is one clear
error before any work instead of a traceback after it.

A leaf (imports only `nlighten_tf.errors`): every subpackage writes its outputs through it.
Importers name it `atomic` (`from nlighten_tf import io as atomic`), which says what it adds
and keeps the standard library's `io` free in the same module.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nlighten_tf.errors import NlightenError


class OutputPathError(NlightenError, ValueError):
    """An output path that cannot be written (a file where a directory is needed, read-only ...)."""


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask can only read
    by setting, which would briefly give files other threads create the wrong mode)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600 files whatever the umask; give the file the mode a plain
        # open() would (e.g. 0644 under umask 022), like the model.h5 Keras writes.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=False, default=_default) + "\n")


def _default(value: Any) -> Any:
    # numpy scalars and arrays, paths and tuples-in-dataclasses end up here.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _writable_ancestor(directory: Path, what: str) -> None:
    """`directory` is, or can be created as, a writable directory; nothing is created."""
    probe = directory
    while not probe.exists():
        if probe.is_symlink():  # a dangling link: mkdir would fail with FileExistsError
            raise OutputPathError(f"{what}: {probe} is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{what}: {probe} is a file, not a directory")
    # A real write, not os.access: access() says yes to root on read-only file systems such as
    # sysfs, and the probe file is gone again before this returns.
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".write-check."):
            pass
    except OSError as error:
        raise OutputPathError(f"{what}: directory {probe} is not writable ({error.strerror})") from None


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """Raises OutputPathError unless `path` is or can become a writable directory. `what` names
    the flag or key in the message, e.g. "--output_dir"."""
    _writable_ancestor(Path(path), f"{what} {path}")
    return Path(path)


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Raises OutputPathError unless a file can be written at `path` (its directory may not
    exist yet): not a directory, and its directory writable or creatable."""
    path = Path(path)
    label = f"{what} {path}"
    if path.is_dir():
        raise OutputPathError(f"{label}: is a directory; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{label}: the file is read-only")
    _writable_ancestor(path.parent if str(path.parent) else Path("."), label)
    return path
