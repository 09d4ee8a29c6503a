"""What a loaded data set is: `DatasetInfo`, returned by every loader (pipeline, detection,
segmentation). A module of its own so that the loaders import it without importing each other."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    spec: str
    split: str  # canonical split string (aliases such as "val" resolved)
    num_classes: int
    class_names: tuple[str, ...]
    num_examples: int  # after slicing, `limit` and skipped files
    source: str  # where the data came from, for people
    image_size: int | None = None  # None for load_raw
    batch_size: int | None = None
    preprocessing: str | None = None  # normalisation scheme; None for load_raw
    crop: bool = False  # whether the evaluation transform centre-crops
    augment: str = "none"
    one_hot: bool = False  # labels are one-hot float32 vectors instead of int64 indices
    skipped: tuple[str, ...] = ()  # unreadable files left out under on_corrupt="skip"
    # Detection sets (data/detection.py): labels are keras-cv box dicts in this format.
    box_format: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_examples / (self.batch_size or 1))
