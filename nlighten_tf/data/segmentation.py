"""Segmentation data: ``shapes`` (offline, seeded) and ``tfds:oxford_iiit_pet`` (trimaps).

`load_segmentation` is the entry point; it is not reached through `nlighten_tf.data.load`,
where ``shapes`` already means the detection set and ``tfds:oxford_iiit_pet`` the 37-breed
classifier set. It yields batches of ``(images, masks)``:

* images: float32 ``[B, S, S, 3]``, normalised with the model's scheme exactly as the other
  pipelines do (`preprocessing.normalize`; no centre crop, the whole image is resized);
* masks: int32 ``[B, S, S]`` class ids into ``DatasetInfo.class_names`` (0 = background), plus
  `IGNORE_LABEL` on pixels no class is claimed for; what `heads.segmentation_compile_options`
  and `heads.mean_iou` take (pass them ``ignore_label=IGNORE_LABEL``).

``shapes`` is `nlighten_tf.data.shapes.generate_dense` at the requested size, with the split
index ranges and size fractions of the detection ``shapes`` set (`detection.SHAPES_SPLITS`,
`detection.shapes_config_for`): image ``i`` is the same picture in both; class 0 = background,
1..3 = rectangle, ellipse, triangle.

``tfds:oxford_iiit_pet`` (nothing downloaded unless ``download=True``): the
``segmentation_mask`` trimap holds 1 = pet, 2 = background, 3 = border (the uncertain outline
drawn around the pet). Mapped to 0 = background, 1 = pet and, by default
(``pet_border="ignore"``), border = `IGNORE_LABEL` (255, the PASCAL VOC convention): the outline
is neither trained nor scored. ``pet_border="pet"`` counts it as pet instead. Images are resized
bilinearly to S x S (aspect ratio not kept), masks with nearest neighbour, so labels stay
discrete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from nlighten_tf.data import detection, shapes
from nlighten_tf.data.errors import DataError
from nlighten_tf.data.preprocessing import check_batch_size, check_image_size, resize, resolve_scheme, to_rgb
from nlighten_tf.data.raw import check_limit
from nlighten_tf.data.specs import Spec, is_training_split, parse_spec, resolve_split

IGNORE_LABEL = 255
SHAPES_CLASSES = ("background", *shapes.CLASSES)
PET_CLASSES = ("background", "pet")
PET_BORDERS = ("ignore", "pet")
# Oxford-IIIT Pet trimap values (1-based, as the data set ships them).
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3
TFDS_SEGMENTATION = ("oxford_iiit_pet",)

AUTOTUNE = tf.data.AUTOTUNE


def is_segmentation_spec(spec: str | Spec) -> bool:
    """``shapes`` or ``tfds:oxford_iiit_pet[...]``."""
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    return parsed.kind == "shapes" or (parsed.kind == "tfds" and parsed.name in TFDS_SEGMENTATION)


def _check_border(pet_border: str) -> None:
    if pet_border not in PET_BORDERS:
        raise DataError(f"pet_border must be one of {', '.join(PET_BORDERS)}, got {pet_border!r}")


def _check_trimap_eagerly(image: tf.Tensor, trimap: tf.Tensor, where: str) -> None:
    """Readable errors for hand-made or corrupt examples (eager tensors only)."""
    if trimap.shape.rank not in (2, 3) or (trimap.shape.rank == 3 and trimap.shape[-1] != 1):
        raise DataError(f"{where}: segmentation_mask must be [H, W, 1] or [H, W], got shape {trimap.shape}")
    if tuple(trimap.shape[:2]) != tuple(image.shape[:2]):
        raise DataError(
            f"{where}: segmentation_mask is {trimap.shape[0]}x{trimap.shape[1]} but the image is "
            f"{image.shape[0]}x{image.shape[1]}; they must be the same size"
        )
    values = np.asarray(trimap).reshape(trimap.shape[:2])
    bad = (values < TRIMAP_PET) | (values > TRIMAP_BORDER)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{where}: segmentation_mask value {values[row, column]} at (row, column) ({row}, {column}); "
            f"Oxford-IIIT Pet trimaps hold 1 (pet), 2 (background), 3 (border); {int(bad.sum())} such pixels"
        )


def tfds_example_to_mask(
    example: Mapping[str, Any], image_size: int, pet_border: str = "ignore"
) -> tuple[tf.Tensor, tf.Tensor]:
    """One decoded ``oxford_iiit_pet`` example -> (float32 image [S, S, 3] in [0, 255], int32
    mask [S, S] of 0 background, 1 pet, border = `IGNORE_LABEL` or 1 per ``pet_border``).

    ``example`` has ``image`` (uint8 [H, W, 1 or 3]) and ``segmentation_mask`` (uint8 trimap
    [H, W, 1]). Eagerly a size mismatch or a value outside 1..3 raises `DataError`; inside a
    tf.data map the same checks are graph assertions with the same wording.
    """
    _check_border(pet_border)
    image = to_rgb(tf.convert_to_tensor(example["image"]))
    trimap = tf.convert_to_tensor(example["segmentation_mask"])
    where = "tfds:oxford_iiit_pet example"
    if tf.executing_eagerly():
        _check_trimap_eagerly(image, trimap, where)
    if trimap.shape.rank == 2:
        trimap = trimap[..., None]
    trimap = tf.cast(trimap, tf.int32)
    if not tf.executing_eagerly():
        checks = [
            tf.debugging.assert_equal(
                tf.shape(trimap)[:2], tf.shape(image)[:2],
                message=f"{where}: segmentation_mask and image differ in size",
            ),
            tf.debugging.assert_greater_equal(
                tf.reduce_min(trimap), TRIMAP_PET, message=f"{where}: segmentation_mask value below 1"
            ),
            tf.debugging.assert_less_equal(
                tf.reduce_max(trimap), TRIMAP_BORDER, message=f"{where}: segmentation_mask value above 3"
            ),
        ]  # fmt: skip
        with tf.control_dependencies(checks):
            trimap = tf.identity(trimap)
    border = IGNORE_LABEL if pet_border == "ignore" else 1
    # index = trimap value: 0 unused, 1 pet, 2 background, 3 border
    table = tf.constant([0, 1, 0, border], tf.int32)
    labels = tf.gather(table, trimap)
    mask = tf.image.resize(labels, (image_size, image_size), method="nearest")[..., 0]
    return resize(image, image_size, crop=False), tf.cast(mask, tf.int32)


def _shapes_examples(
    split: str, image_size: int, limit: int | None, seed: int, config: shapes.ShapesConfig
) -> tuple[tf.data.Dataset, int, str, str]:
    if config.image_size != image_size:
        raise DataError(
            f"shapes: ShapesConfig.image_size {config.image_size} differs from image_size {image_size}"
        )
    sizes = {name: size for name, (_, size) in detection.SHAPES_SPLITS.items()}
    resolved = resolve_split(split, sizes, "shapes")
    images, masks, wanted = [], [], limit
    for name, a, b in resolved.ranges:
        count = b - a if wanted is None else min(b - a, wanted - sum(len(m) for m in masks))
        if count <= 0:
            break
        batch = shapes.generate_dense(count, seed, config, start=detection.SHAPES_SPLITS[name][0] + a)
        images.append(batch.images)
        masks.append(batch.masks.astype(np.int32))
    images = np.concatenate(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)
    masks = np.concatenate(masks) if masks else np.zeros((0, image_size, image_size), np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    return dataset, len(masks), f"generated shapes masks (seed {seed}, {config})", resolved.text


def _tfds_examples(
    spec: Spec,
    split: str,
    image_size: int,
    limit: int | None,
    data_dir: str | None,
    download: bool,
    shuffle_files: bool,
    seed: int | None,
    pet_border: str,
) -> tuple[tf.data.Dataset, int, str, str]:

    from nlighten_tf.data import tfds_source

    builder = tfds_source.builder(spec, data_dir)
    features = builder.info.features
    if "image" not in features or "segmentation_mask" not in features:
        raise DataError(
            f"{spec.text} has no image + segmentation_mask features (features: {', '.join(features.keys())})"
        )
    dataset, resolved = tfds_source.read_split(
        builder, spec, split, download=download, shuffle_files=shuffle_files, seed=seed
    )
    if limit is not None:
        dataset = dataset.take(limit)
    examples = dataset.map(
        lambda example: tfds_example_to_mask(example, image_size, pet_border), num_parallel_calls=AUTOTUNE
    )
    count = min(resolved.num_examples, limit or resolved.num_examples)
    return examples, count, f"TFDS {builder.info.full_name} in {builder.data_dir_root}", resolved.text


def load_segmentation(
    spec: str,
    split: str = "train",
    image_size: int = 224,
    batch_size: int = 32,
    preprocessing: str | None = None,
    model: str | None = None,
    shuffle: bool | None = None,
    seed: int | None = 0,
    data_dir: str | None = None,
    cache: bool = False,
    limit: int | None = None,
    download: bool = False,
    shapes_config: shapes.ShapesConfig | None = None,
    pet_border: str = "ignore",
):
    """A batched, prefetched ``(images, masks)`` dataset (module doc) and its
    `DatasetInfo` (``class_names`` starts with ``"background"``).

    ``spec``: ``shapes`` or ``tfds:oxford_iiit_pet``. Arguments as `nlighten_tf.data.load`;
    ``shapes`` ignores ``data_dir``/``download`` and is drawn with ``seed`` (None means 0) and
    ``shapes_config`` (default `detection.shapes_config_for(image_size)`). ``pet_border``:
    ``"ignore"`` (border pixels = `IGNORE_LABEL`) or ``"pet"``.
    """
    from nlighten_tf.data.dataset_info import DatasetInfo

    image_size = check_image_size(image_size)
    batch_size = check_batch_size(batch_size)
    check_limit(limit)
    _check_border(pet_border)
    scheme = resolve_scheme(preprocessing, model)
    parsed = parse_spec(spec)
    if not is_segmentation_spec(parsed):
        raise DataError(f"{spec!r} is not a segmentation data set; use shapes or tfds:oxford_iiit_pet")
    if shuffle is None:
        shuffle = is_training_split(split)
    if parsed.kind == "shapes":
        config = shapes_config or detection.shapes_config_for(image_size)
        examples, count, source, resolved = _shapes_examples(
            split, image_size, limit, detection.SHAPES_SEED if seed is None else seed, config
        )
        class_names = SHAPES_CLASSES
    else:
        examples, count, source, resolved = _tfds_examples(
            parsed, split, image_size, limit, data_dir, download, shuffle and limit is None, seed, pet_border
        )
        class_names = PET_CLASSES
    dataset = detection.batch_examples(examples, count, batch_size, scheme, cache, shuffle, seed)
    info = DatasetInfo(
        spec=spec, split=resolved, num_classes=len(class_names), class_names=class_names, num_examples=count,
        source=source, image_size=image_size, batch_size=batch_size, preprocessing=scheme,
    )  # fmt: skip
    return dataset, info
