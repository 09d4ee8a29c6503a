"""`load`, `load_raw` and `representative_dataset`: dataset specs -> tf.data pipelines."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from nlighten_tf.data import detection, digits, fashion_mnist, folder, tfds_source
from nlighten_tf.data.augment import AugmentConfig, Augmenter, parse_augment
from nlighten_tf.data.dataset_info import DatasetInfo
from nlighten_tf.data.errors import DataError
from nlighten_tf.data.preprocessing import (
    check_batch_size,
    check_image_size,
    eval_transform,
    normalize,
    resolve_scheme,
    to_rgb,
)
from nlighten_tf.data.raw import RawSplit, check_limit
from nlighten_tf.data.specs import is_training_split, parse_spec

AUTOTUNE = tf.data.AUTOTUNE


def open_raw(
    spec: str,
    split: str = "train",
    *,
    data_dir: str | None = None,
    download: bool = False,
    on_corrupt: str = "fail",
    limit: int | None = None,
    shuffle_files: bool = False,
    seed: int | None = 0,
) -> RawSplit:
    """One split of a source, validated, not yet decoded."""
    check_limit(limit)
    if on_corrupt not in folder.ON_CORRUPT:
        raise DataError(f"on_corrupt must be one of {', '.join(folder.ON_CORRUPT)}, got {on_corrupt!r}")
    parsed = parse_spec(spec)
    if parsed.kind == "synthetic":
        raise DataError(
            f"{spec} has no stored examples or labels: its images are synthesised from a model's BatchNorm "
            "statistics, for calibration (representative_dataset(..., keras_model=model); tools/export.py "
            "--data=synthetic:bn --labels=FILE) and data-free distillation"
        )
    if detection.is_detection_spec(parsed):
        raise DataError(
            f"{spec} is a detection data set: its examples carry boxes, not one class label; "
            "read it with nlighten_tf.data.load (data/detection.py)"
        )
    if parsed.kind == "digits":
        return digits.open_split(split, limit)
    if parsed.kind == "folder":
        return folder.open_split(parsed, split, on_corrupt=on_corrupt, limit=limit)
    remote = dict(data_dir=data_dir, download=download, limit=limit, shuffle_files=shuffle_files, seed=seed)
    if parsed.kind == "fashion_mnist":
        return fashion_mnist.open_split(split, **remote)
    return tfds_source.open_split(parsed, split, **remote)


def _decoded(raw: RawSplit, shuffle: bool, seed: int | None, cache: bool) -> tf.data.Dataset:
    """(uint8 image, int64 label) examples; shuffled before decoding unless cached, where the
    cache holds decoded images and the shuffle follows it."""
    dataset = raw.elements
    decode = raw.decode
    if cache and decode is not None:
        dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE).cache()
        decode = None
    if shuffle:
        dataset = dataset.shuffle(max(raw.shuffle_buffer, 1), seed=seed, reshuffle_each_iteration=True)
    if decode is not None:
        dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE)
    return dataset


def load_raw(
    spec: str,
    split: str = "train",
    *,
    shuffle: bool = False,
    seed: int | None = 0,
    data_dir: str | None = None,
    download: bool = False,
    on_corrupt: str = "fail",
    cache: bool = False,
    limit: int | None = None,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Unbatched (uint8 image (H, W, C), int64 label) examples as the source stores them
    (C = 1 for grayscale sets), e.g. for feeding `preprocess_for_eval` or a `.tflite` model."""
    raw = open_raw(
        spec, split, data_dir=data_dir, download=download, on_corrupt=on_corrupt, limit=limit,
        shuffle_files=shuffle and limit is None, seed=seed,
    )  # fmt: skip
    info = DatasetInfo(
        spec=spec, split=raw.split, num_classes=len(raw.class_names), class_names=raw.class_names,
        num_examples=raw.num_examples, source=raw.source, crop=raw.crop, skipped=raw.skipped,
    )  # fmt: skip
    return _decoded(raw, shuffle, seed, cache), info


def load(
    spec: str,
    split: str = "train",
    image_size: int = 224,
    batch_size: int = 32,
    preprocessing: str | None = None,
    model: str | None = None,
    augment: str | Mapping[str, Any] | AugmentConfig | None = None,
    shuffle: bool | None = None,
    seed: int | None = 0,
    data_dir: str | None = None,
    on_corrupt: str = "fail",
    cache: bool = False,
    limit: int | None = None,
    crop: bool | None = None,
    one_hot: bool = False,
    download: bool = False,
) -> tuple[tf.data.Dataset, DatasetInfo]:
    """A batched, prefetched dataset of (float32 images (B, S, S, 3), labels) and its DatasetInfo.

    Detection specs (``shapes``, ``tfds:coco/...``, ``tfds:voc/...``) go to
    `detection.load_detection`: labels are then keras-cv box dicts (``info.box_format``).

    Labels are int64 class indices (B,), or float32 one-hot vectors (B, num_classes) when
    `one_hot` or MixUp/CutMix is on.

    Args:
      spec: "tfds:NAME[:VERSION][/CONFIG]", "folder:PATH", "fashion_mnist" or "digits".
      split: "train", "test", "validation" (or "val"), with TFDS slicing for every source:
        "train[:90%]", "train[90%:]", "train[:100]+test".
      image_size: S, at least 32.
      preprocessing: normalisation scheme (preprocessing.SCHEMES); overrides `model`.
      model: model registry name whose scheme to use; "lite" when neither is given.
      augment: training augmentation (see augment.py); None = off. Calibration and
        evaluation never augment.
      shuffle: default True for training splits ("train", "train[...]"), False otherwise.
      seed: fixes the shuffle and the flip/crop draws (same seed -> same batches); None =
        random. keras-cv's RandAugment, MixUp and CutMix cannot be seeded (see augment.py).
      data_dir: TFDS data directory (tfds: specs and the fashion_mnist fallback).
      on_corrupt: for folder: specs, "fail" (DataError naming the file) or "skip" (left out,
        listed in info.skipped).
      cache: keep decoded images in memory after the first epoch (small data sets).
      limit: only the first `limit` examples of the split (before shuffling).
      crop: reference centre crop in the evaluation transform; default per source
        (folders and variable-size TFDS photos: yes; digits, Fashion-MNIST, fixed-size sets: no).
      one_hot: one-hot float32 labels (forced on by MixUp/CutMix).
      download: let TFDS download and prepare missing data (needs network).
    """
    if detection.is_detection_spec(spec):
        if augment is not None or one_hot or crop:
            raise DataError(f"{spec} is a detection data set: augment, one_hot and crop do not apply to it")
        return detection.load_detection(
            spec, split, image_size, batch_size, preprocessing, model, shuffle, seed, data_dir, cache, limit,
            download,
        )  # fmt: skip
    image_size = check_image_size(image_size)
    batch_size = check_batch_size(batch_size)
    scheme = resolve_scheme(preprocessing, model)
    config = parse_augment(augment)
    if shuffle is None:
        shuffle = is_training_split(split)
    raw = open_raw(
        spec, split, data_dir=data_dir, download=download, on_corrupt=on_corrupt, limit=limit,
        shuffle_files=shuffle and limit is None, seed=seed,
    )  # fmt: skip
    crop = raw.crop if crop is None else bool(crop)
    one_hot = one_hot or (config is not None and config.mixes_labels)
    num_classes = len(raw.class_names)

    def labels_out(labels: tf.Tensor) -> tf.Tensor:
        return tf.one_hot(labels, num_classes, dtype=tf.float32) if one_hot else labels

    dataset = _decoded(raw, shuffle, seed, cache)
    if config is None:
        # The one evaluation transform, shared with calibration and `.tflite` evaluation.
        dataset = dataset.map(
            lambda image, label: (eval_transform(image, image_size, scheme, crop), labels_out(label)),
            num_parallel_calls=AUTOTUNE,
        ).batch(batch_size)
    else:
        augmenter = Augmenter(config, image_size, seed)
        dataset = dataset.map(
            lambda image, label: (augmenter.resize(to_rgb(image)), labels_out(label)), num_parallel_calls=AUTOTUNE
        ).batch(batch_size)
        # Sequential on purpose: the layers draw from seeded generators, and parallel calls
        # would take the draws in a nondeterministic order.
        dataset = dataset.map(augmenter).map(lambda images, labels: (normalize(images, scheme), labels))
    info = DatasetInfo(
        spec=spec, split=raw.split, num_classes=num_classes, class_names=raw.class_names,
        num_examples=raw.num_examples, source=raw.source, image_size=image_size, batch_size=batch_size,
        preprocessing=scheme, crop=crop, augment=config.describe() if config else "none", one_hot=one_hot,
        skipped=raw.skipped,
    )  # fmt: skip
    return dataset.prefetch(AUTOTUNE), info


def representative_dataset(
    spec: str,
    n: int,
    image_size: int = 224,
    preprocessing: str | None = None,
    model: str | None = None,
    split: str = "train",
    shuffle: bool = True,
    seed: int | None = 0,
    data_dir: str | None = None,
    on_corrupt: str = "fail",
    crop: bool | None = None,
    download: bool = False,
    keras_model: Any = None,
    synthesis: Any = None,
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """For `converter.representative_dataset`: a generator function yielding `n` single
    examples `[float32 array (1, S, S, 3)]`, preprocessed exactly as `load` does for evaluation
    (no augmentation), drawn from the training split (a seeded random sample by default).

    ``synthetic:bn[:N]`` synthesises the examples from `keras_model`'s BatchNorm statistics
    instead (data/synthetic.py; `synthesis` a SynthesisConfig, N images, default `n`).

    The data are checked now; every call of the returned function yields the same examples."""
    if int(n) != n or n < 1:
        raise DataError(f"representative_dataset needs a positive number of examples, got n={n!r}")
    if parse_spec(spec).kind == "synthetic":
        return _synthetic_representative(spec, n, preprocessing, model, keras_model, synthesis, seed)
    options = dict(
        spec=spec, split=split, image_size=image_size, batch_size=1, preprocessing=preprocessing, model=model,
        shuffle=shuffle, seed=seed, data_dir=data_dir, on_corrupt=on_corrupt, crop=crop, download=download,
    )  # fmt: skip
    _, info = load(**options)
    if n > info.num_examples:
        raise DataError(
            f"representative_dataset asked for {n} examples but {spec} split {info.split!r} has "
            f"{info.num_examples}; fix: lower n or use a larger split"
        )

    def generate() -> Iterator[list[np.ndarray]]:
        # A fresh pipeline per call: a seeded shuffle then restarts at the same order.
        dataset, _ = load(**options)
        for images, _ in dataset.take(n).as_numpy_iterator():
            yield [images]

    return generate


def _synthetic_representative(
    spec: str, n: int, preprocessing: str | None, model: str | None, keras_model: Any, synthesis: Any, seed: int | None
) -> Callable[[], Iterator[list[np.ndarray]]]:
    import dataclasses

    from nlighten_tf.data import synthetic

    if keras_model is None:
        raise DataError(f"{spec}: synthetic data is synthesised from a model; pass keras_model= (the model to calibrate)")
    count = parse_spec(spec).count or n
    if n > count:
        raise DataError(f"representative_dataset asked for {n} examples but {spec} synthesises {count}; raise N")
    config = synthesis or synthetic.SynthesisConfig()
    if seed is not None:
        config = dataclasses.replace(config, seed=int(seed))
    images = synthetic.synthesize(keras_model, count, resolve_scheme(preprocessing, model), config).images[:n]
    return representative_arrays(images)


def representative_arrays(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """`representative_dataset`'s generator function over model inputs already in memory
    (N, H, W, C), one float32 example per yield."""
    images = np.asarray(images, np.float32)

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None]]

    return generate
