"""Dataset specs -> tf.data pipelines, preprocessing and augmentation.

Specs: ``tfds:NAME[:VERSION][/CONFIG]``, ``folder:PATH``, ``fashion_mnist``, ``digits``, and
the detection specs ``shapes``, ``tfds:coco/...``, ``tfds:voc/...`` (data/detection.py; see
docs/data.md). Entry points: `load`, `load_raw`, `representative_dataset`, and
`preprocess_for_eval` for code that feeds models outside tf.data (the `.tflite` evaluator).
Segmentation masks (``shapes``, ``tfds:oxford_iiit_pet``): `load_segmentation`
(data/segmentation.py), not `load`, where those specs mean detection / classification.
"""

from __future__ import annotations

from nlighten_tf.data.augment import AugmentConfig, parse_augment
from nlighten_tf.data.dataset_info import DatasetInfo
from nlighten_tf.data.errors import DataError
from nlighten_tf.data.pipeline import load, load_raw, representative_dataset
from nlighten_tf.data.preprocessing import (
    DEFAULT_SCHEME,
    MIN_IMAGE_SIZE,
    SCHEMES,
    eval_transform,
    preprocess_for_eval,
    resolve_scheme,
)
from nlighten_tf.data.segmentation import load_segmentation
from nlighten_tf.data.specs import parse_spec

__all__ = [
    "DEFAULT_SCHEME",
    "MIN_IMAGE_SIZE",
    "SCHEMES",
    "AugmentConfig",
    "DataError",
    "DatasetInfo",
    "eval_transform",
    "load",
    "load_raw",
    "load_segmentation",
    "parse_augment",
    "parse_spec",
    "preprocess_for_eval",
    "representative_dataset",
    "resolve_scheme",
]
