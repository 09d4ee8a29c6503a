"""`fashion_mnist`: the real 60,000/10,000 Fashion-MNIST images from the IDX files Debian's
`dataset-fashion-mnist` package installs, falling back to `tfds:fashion_mnist`."""

from __future__ import annotations

import functools
import gzip
import os
import zlib

import numpy as np

from nlighten_tf.data.errors import DataError
from nlighten_tf.data.raw import RawSplit, from_arrays
from nlighten_tf.data.specs import parse_spec
from nlighten_tf.data.tfds_source import NotPreparedError
from nlighten_tf.data.tfds_source import open_split as open_tfds_split

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
DIR_ENV_VAR = "NLIGHTEN_TF_FASHION_MNIST_DIR"
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# IDX magic numbers: two zero bytes, 0x08 (unsigned byte data), number of dimensions.
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


def directory() -> str:
    return os.environ.get(DIR_ENV_VAR) or DEFAULT_DIR


def read_idx(path: str, magic: int) -> np.ndarray:
    """Parses one gzipped IDX file of unsigned bytes; DataError naming the file if it is corrupt."""

    def corrupt(why: str) -> DataError:
        return DataError(
            f"Fashion-MNIST file {path} is corrupt ({why}); fix: reinstall it "
            "(`apt-get install --reinstall dataset-fashion-mnist`)"
        )

    try:
        with gzip.open(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise corrupt(str(error) or type(error).__name__) from None
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        raise corrupt(f"IDX magic number is not {magic:#010x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt("truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != int(np.prod(shape)):
        raise corrupt(f"{len(data) - header} data bytes for shape {shape}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _signature(folder: str) -> tuple[tuple[str, int, int], ...] | None:
    """(path, size, mtime) of the four files, or None when any is missing."""
    paths = [os.path.join(folder, name) for pair in FILES.values() for name in pair]
    if not all(os.path.isfile(p) for p in paths):
        return None
    return tuple((p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths)


@functools.lru_cache(maxsize=2)
def _read_all(signature: tuple[tuple[str, int, int], ...]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    # Keyed on sizes and mtimes so that a replaced file is re-read.
    paths = iter(p for p, _, _ in signature)
    splits = {}
    for split in FILES:
        images_path, labels_path = next(paths), next(paths)
        images, labels = read_idx(images_path, _IMAGES_MAGIC), read_idx(labels_path, _LABELS_MAGIC)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"Fashion-MNIST file {images_path} holds shape {images.shape}, not (N, 28, 28)")
        if labels.shape != images.shape[:1] or labels.max(initial=0) >= len(CLASS_NAMES):
            raise DataError(
                f"Fashion-MNIST file {labels_path} does not match {images_path} "
                f"({labels.shape[0]} labels for {images.shape[0]} images, or a label >= 10)"
            )
        splits[split] = (images[..., np.newaxis], labels.astype(np.int64))
    return splits


def open_split(
    split: str, *, data_dir: str | None, download: bool, limit: int | None, shuffle_files: bool, seed: int | None
) -> RawSplit:
    folder = directory()
    signature = _signature(folder)
    if signature is not None:
        return from_arrays(
            _read_all(signature),
            split,
            where="fashion_mnist",
            class_names=CLASS_NAMES,
            source=f"Fashion-MNIST IDX files in {folder}",
            limit=limit,
        )
    try:
        return open_tfds_split(
            parse_spec("tfds:fashion_mnist"),
            split,
            data_dir=data_dir,
            download=download,
            limit=limit,
            shuffle_files=shuffle_files,
            seed=seed,
        )
    except NotPreparedError as error:
        raise DataError(
            f"Fashion-MNIST not found: no IDX files in {folder} (set {DIR_ENV_VAR} to another directory) "
            f"and TFDS 'fashion_mnist' is not prepared in {error.data_dir}; "
            "fix: `sudo apt-get install dataset-fashion-mnist`, or use spec tfds:fashion_mnist with "
            "data_dir=<directory holding a prepared copy> (download=True fetches it when online)"
        ) from None
