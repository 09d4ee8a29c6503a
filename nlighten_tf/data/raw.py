"""What every source hands the pipeline: one split's undecoded examples in a fixed order."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf

from nlighten_tf.data.errors import DataError
from nlighten_tf.data.specs import resolve_split


@dataclasses.dataclass(frozen=True)
class RawSplit:
    # Cheap elements (arrays, file paths or encoded bytes) in a fixed order; shuffling them
    # before `decode` keeps the shuffle buffer small.
    elements: tf.data.Dataset
    # element -> (uint8 image (H, W, C), int64 label); None when elements are already that.
    decode: Callable[..., tuple[tf.Tensor, tf.Tensor]] | None
    num_examples: int
    class_names: tuple[str, ...]
    source: str  # for people: where the data came from
    split: str  # canonical split string
    crop: bool  # whether evaluation centre-crops by default (photos yes, tiny fixed-size images no)
    shuffle_buffer: int
    skipped: tuple[str, ...] = ()  # unreadable files left out under on_corrupt="skip"


def check_limit(limit: int | None) -> None:
    if limit is not None and (int(limit) != limit or limit < 1):
        raise DataError(f"limit must be a positive number of examples or None, got {limit!r}")


def from_arrays(
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    split: str,
    *,
    where: str,
    class_names: tuple[str, ...],
    source: str,
    limit: int | None,
    crop: bool = False,
) -> RawSplit:
    """A RawSplit over in-memory uint8 images (N, H, W, C) and integer labels (N,), sliced
    with the same TFDS split grammar as every other source."""
    resolved = resolve_split(split, {name: len(labels) for name, (_, labels) in splits.items()}, where)
    images = np.concatenate([splits[name][0][start:stop] for name, start, stop in resolved.ranges])
    labels = np.concatenate([splits[name][1][start:stop] for name, start, stop in resolved.ranges])
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return RawSplit(
        elements=tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64))),
        decode=None,
        num_examples=len(labels),
        class_names=class_names,
        source=source,
        split=resolved.text,
        crop=crop,
        shuffle_buffer=len(labels),  # already in memory: a full shuffle costs nothing extra
    )
