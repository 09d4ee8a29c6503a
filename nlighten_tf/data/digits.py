"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images): the fastest real data."""

from __future__ import annotations

import functools

import numpy as np

from nlighten_tf.data.errors import DataError
from nlighten_tf.data.raw import RawSplit, from_arrays

CLASS_NAMES = tuple(str(d) for d in range(10))
# scikit-learn ships one set; a fixed permutation makes a stable 80/20 train/test split
# (1,437 / 360 images) that every run and machine agrees on.
SPLIT_SEED = 0
TRAIN_FRACTION = 0.8


@functools.cache
def _splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the 'digits' data set comes from scikit-learn, which is not installed; "
            "fix: pip install scikit-learn (or pip install -e '.[dev]')"
        ) from None
    bunch = load_digits()
    # 8x8 intensities 0..16 -> 0..255 grayscale, the range every other source has.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    cut = int(len(labels) * TRAIN_FRACTION)
    train, test = order[:cut], order[cut:]
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


def open_split(split: str, limit: int | None) -> RawSplit:
    return from_arrays(
        _splits(),
        split,
        where="digits",
        class_names=CLASS_NAMES,
        source="scikit-learn load_digits (8x8 grayscale, fixed 80/20 train/test split)",
        limit=limit,
    )
