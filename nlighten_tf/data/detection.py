"""Detection data: ``shapes`` (offline, seeded) and ``tfds:coco/2017`` / ``tfds:voc/2012``.

`load_detection` (reached through `nlighten_tf.data.load` for these specs) yields batches of
``(images, {"boxes", "classes"})``:

* images: float32 ``[B, S, S, 3]``, normalised with the model's scheme exactly as the
  classifiers' pipeline does (`preprocessing.normalize`);
* annotations: a keras-cv bounding-box dict, dense with -1 rows as padding (at most
  ``max_boxes`` per image), boxes in ``ANNOTATION_FORMAT`` (`nlighten_tf.boxes`) absolute pixels of the S x S
  model input, classes float32 ids into ``DatasetInfo.class_names``.

`nlighten_tf.models.detection.training_dataset` turns such batches into the per-anchor targets
``model.fit`` needs; `nlighten_tf.bench.detection.evaluate_map` scores detectors on them.

``shapes`` is `nlighten_tf.data.shapes` drawn at the requested image size: the ``train`` split is
images ``0 .. 1999`` of the seed, ``test`` images ``1_000_000 .. 1_000_199`` (disjoint index
ranges; ``train[:500]``, ``limit`` etc. slice them as for every source). Shape sizes scale with
the image (``SHAPES_SIZE_FRACTIONS`` of its side) unless a `ShapesConfig` is passed.

TFDS detection sets (nothing downloaded unless ``download=True``): images are resized to S x S
without keeping the aspect ratio (the boxes follow exactly); COCO crowd boxes and VOC
"difficult" boxes are dropped, as are images left without a box in training splits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from nlighten_tf.boxes import ANNOTATION_FORMAT, TFDS_FORMAT
from nlighten_tf.data import shapes
from nlighten_tf.data.errors import DataError
from nlighten_tf.data.preprocessing import (
    check_batch_size,
    check_image_size,
    normalize,
    resolve_scheme,
    to_rgb,
)
from nlighten_tf.data.raw import check_limit
from nlighten_tf.data.specs import Spec, is_training_split, parse_spec, resolve_split

DEFAULT_MAX_BOXES = 100
# The only detection builders known by name: their `objects` feature holds `bbox` (relative
# ymin, xmin, ymax, xmax) and `label`; the flag names the boxes to leave out of training.
TFDS_DETECTION = {"coco": "is_crowd", "voc": "is_difficult"}
SHAPES_SPLITS = {"train": (0, 2000), "test": (1_000_000, 200)}  # split: (first index, size)
SHAPES_SIZE_FRACTIONS = (0.125, 0.375)  # shape side range as fractions of the image side
SHAPES_SEED = 0

AUTOTUNE = tf.data.AUTOTUNE


def is_detection_spec(spec: str | Spec) -> bool:
    """``shapes``, ``tfds:coco...`` or ``tfds:voc...``."""
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    return parsed.kind == "shapes" or (parsed.kind == "tfds" and parsed.name in TFDS_DETECTION)


def shapes_config_for(image_size: int, max_boxes: int | None = None) -> shapes.ShapesConfig:
    """The ShapesConfig `load_detection` draws ``shapes`` with at this image size."""
    low, high = SHAPES_SIZE_FRACTIONS
    objects = (
        shapes.ShapesConfig.max_objects
        if max_boxes is None
        else min(max_boxes, shapes.ShapesConfig.max_objects)
    )
    return shapes.ShapesConfig(
        image_size=image_size,
        max_objects=objects,
        min_size=max(4, round(low * image_size)),
        max_size=max(4, round(high * image_size)),
    )


def _pad(boxes: tf.Tensor, classes: tf.Tensor, max_boxes: int) -> dict[str, tf.Tensor]:
    """[M, 4] / [M] -> [max_boxes, 4] / [max_boxes] with -1 padding (extra boxes cut)."""
    boxes, classes = boxes[:max_boxes], classes[:max_boxes]
    missing = max_boxes - tf.shape(classes)[0]
    return {
        "boxes": tf.concat([tf.cast(boxes, tf.float32), -tf.ones([missing, 4])], axis=0),
        "classes": tf.concat([tf.cast(classes, tf.float32), -tf.ones([missing])], axis=0),
    }


def tfds_example_to_boxes(
    example: Mapping[str, Any], image_size: int, drop_flag: str | None = None
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One decoded TFDS detection example -> (uint8 image [S, S, 3], boxes [M, 4] ``xyxy``
    pixels of the resized image, float32 classes [M]).

    ``example`` has ``image`` (uint8 [H, W, C]) and ``objects`` with ``bbox`` ([M, 4] relative
    ``ymin, xmin, ymax, xmax``, TFDS's BBoxFeature) and ``label``; objects whose ``drop_flag``
    (``is_crowd``, ``is_difficult``) is set are left out, and so are boxes of zero area.
    """
    from keras_cv import bounding_box

    image = to_rgb(tf.convert_to_tensor(example["image"]))
    resized = tf.cast(
        tf.round(tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size))), tf.uint8
    )
    objects = example["objects"]
    relative = tf.reshape(tf.cast(objects["bbox"], tf.float32), [-1, 4])
    labels = tf.reshape(tf.cast(objects["label"], tf.float32), [-1])
    keep = tf.logical_and(relative[:, 2] > relative[:, 0], relative[:, 3] > relative[:, 1])
    if drop_flag is not None and drop_flag in objects:
        keep = tf.logical_and(keep, ~tf.cast(tf.reshape(objects[drop_flag], [-1]), tf.bool))
    relative = tf.clip_by_value(tf.boolean_mask(relative, keep), 0.0, 1.0)
    boxes = bounding_box.convert_format(
        relative, source=TFDS_FORMAT, target=ANNOTATION_FORMAT, image_shape=(image_size, image_size, 3)
    )
    return resized, tf.reshape(boxes, [-1, 4]), tf.boolean_mask(labels, keep)


@dataclasses.dataclass(frozen=True)
class _Source:
    examples: tf.data.Dataset  # unbatched (uint8 image [S, S, 3], {"boxes", "classes"} padded)
    num_examples: int
    class_names: tuple[str, ...]
    source: str
    split: str
    filtered: bool = False  # some examples may be dropped, num_examples is an upper bound


def _shapes_source(
    split: str, image_size: int, max_boxes: int, limit: int | None, seed: int, config: shapes.ShapesConfig
) -> _Source:
    if config.image_size != image_size:
        raise DataError(
            f"shapes: ShapesConfig.image_size {config.image_size} differs from image_size {image_size}"
        )
    if config.max_objects > max_boxes:
        raise DataError(f"shapes: max_objects {config.max_objects} exceeds max_boxes {max_boxes}")
    resolved = resolve_split(split, {name: size for name, (_, size) in SHAPES_SPLITS.items()}, "shapes")
    indices = np.concatenate(
        [np.arange(SHAPES_SPLITS[name][0] + a, SHAPES_SPLITS[name][0] + b) for name, a, b in resolved.ranges]
    )
    if limit is not None:
        indices = indices[:limit]
    images = np.zeros((len(indices), image_size, image_size, 3), np.uint8)
    boxes = -np.ones((len(indices), max_boxes, 4), np.float32)
    classes = -np.ones((len(indices), max_boxes), np.float32)
    for row, index in enumerate(indices):
        image, image_boxes, image_classes = shapes.sample(int(index), seed, config)
        images[row], boxes[row, : len(image_boxes)], classes[row, : len(image_classes)] = (
            image,
            image_boxes,
            image_classes,
        )
    return _Source(
        examples=tf.data.Dataset.from_tensor_slices((images, {"boxes": boxes, "classes": classes})),
        num_examples=len(indices),
        class_names=shapes.CLASSES,
        source=f"generated shapes (seed {seed}, {config})",
        split=resolved.text,
    )


def _tfds_source(
    spec: Spec,
    split: str,
    image_size: int,
    max_boxes: int,
    limit: int | None,
    data_dir: str | None,
    download: bool,
    shuffle_files: bool,
    seed: int | None,
) -> _Source:

    from nlighten_tf.data import tfds_source

    builder = tfds_source.builder(spec, data_dir)
    features = builder.info.features
    if "image" not in features or "objects" not in features or "bbox" not in features["objects"]:
        raise DataError(
            f"{spec.text} has no image + objects/bbox features (features: {', '.join(features.keys())}); "
            "detection loading reads the TFDS object-detection layout of coco and voc"
        )
    dataset, resolved = tfds_source.read_split(
        builder, spec, split, download=download, shuffle_files=shuffle_files, seed=seed
    )
    if limit is not None:
        dataset = dataset.take(limit)
    drop_flag = TFDS_DETECTION.get(spec.name or "")
    training = is_training_split(resolved.text)

    def convert(example):
        image, boxes, classes = tfds_example_to_boxes(example, image_size, drop_flag)
        return image, _pad(boxes, classes, max_boxes)

    examples = dataset.map(convert, num_parallel_calls=AUTOTUNE)
    if training:  # images without a box train nothing and fail validation
        examples = examples.filter(lambda image, target: tf.reduce_any(target["classes"] >= 0))
    return _Source(
        examples=examples,
        num_examples=min(resolved.num_examples, limit or resolved.num_examples),
        class_names=tuple(features["objects"]["label"].names),
        source=f"TFDS {builder.info.full_name} in {builder.data_dir_root}",
        split=resolved.text,
        filtered=training,
    )


def batch_examples(
    examples: tf.data.Dataset, num_examples: int, batch_size: int, scheme: str, cache: bool, shuffle: bool,
    seed: int | None,
) -> tf.data.Dataset:  # fmt: skip
    """Unbatched (uint8 image, targets) examples -> prefetched batches of (normalised images,
    targets): the tail shared by the detection and segmentation loaders."""
    if cache:
        examples = examples.cache()
    if shuffle:
        examples = examples.shuffle(min(max(num_examples, 1), 10_000), seed=seed, reshuffle_each_iteration=True)
    batched = examples.batch(batch_size).map(
        lambda images, targets: (normalize(images, scheme), targets), num_parallel_calls=AUTOTUNE
    )
    return batched.prefetch(AUTOTUNE)


def load_detection(
    spec: str,
    split: str = "train",
    image_size: int = 320,
    batch_size: int = 32,
    preprocessing: str | None = None,
    model: str | None = None,
    shuffle: bool | None = None,
    seed: int | None = 0,
    data_dir: str | None = None,
    cache: bool = False,
    limit: int | None = None,
    download: bool = False,
    max_boxes: int | None = None,
    shapes_config: shapes.ShapesConfig | None = None,
):
    """A batched, prefetched detection dataset (module doc) and its `DatasetInfo`.

    ``shapes`` ignores ``data_dir``/``download`` and is drawn with ``seed`` (default 0; None
    means 0). ``max_boxes`` is the number of annotation rows per image (more boxes are cut):
    by default ``DEFAULT_MAX_BOXES`` for TFDS sets and the config's ``max_objects`` for shapes.
    """
    from nlighten_tf.data.dataset_info import DatasetInfo

    image_size = check_image_size(image_size)
    batch_size = check_batch_size(batch_size)
    if max_boxes is not None and (int(max_boxes) != max_boxes or max_boxes < 1):
        raise DataError(f"max_boxes must be a positive integer, got {max_boxes!r}")
    check_limit(limit)
    scheme = resolve_scheme(preprocessing, model)
    parsed = parse_spec(spec)
    if not is_detection_spec(parsed):
        raise DataError(f"{spec!r} is not a detection data set; use shapes, tfds:coco/2017 or tfds:voc/2012")
    if shuffle is None:
        shuffle = is_training_split(split)
    if parsed.kind == "shapes":
        config = shapes_config or shapes_config_for(image_size, max_boxes)
        source = _shapes_source(split, image_size, max_boxes or config.max_objects, limit,
                                SHAPES_SEED if seed is None else seed, config)  # fmt: skip
    else:
        source = _tfds_source(parsed, split, image_size, max_boxes or DEFAULT_MAX_BOXES, limit, data_dir,
                              download, shuffle and limit is None, seed)  # fmt: skip
    dataset = batch_examples(source.examples, source.num_examples, batch_size, scheme, cache, shuffle, seed)
    info = DatasetInfo(
        spec=spec, split=source.split, num_classes=len(source.class_names), class_names=source.class_names,
        num_examples=source.num_examples, source=source.source, image_size=image_size, batch_size=batch_size,
        preprocessing=scheme, box_format=ANNOTATION_FORMAT,
    )  # fmt: skip
    return dataset, info
