"""``shapes``: a seeded synthetic detection dataset of rectangles, ellipses and triangles.

For tests, demos and smoke-training detectors offline. Every image holds 1..``max_objects``
non-overlapping filled shapes in random colours on a noisy background; each box is the exact
pixel bounding box of its shape's pixels (``xyxy`` pixel edges, `nlighten_tf.boxes.ANNOTATION_FORMAT`: a
shape covering columns x0..x1-1 has xmin = x0, xmax = x1), so nothing is occluded and no box is loose. Image ``i`` of
seed ``s`` depends on ``(s, i)`` only: the first images of a longer dataset are the same.

Annotations are keras-cv bounding-box dicts, dense with -1 padding, the form
`nlighten_tf.models.detection.encode_targets` and ``validate_annotations`` take.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLASSES = ("rectangle", "ellipse", "triangle")


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    image_size: int = 128
    max_objects: int = 3
    min_size: int = 16  # shape bounding-box side, pixels
    max_size: int = 48
    noise: float = 20.0  # background noise standard deviation, 0..255 scale

    def __post_init__(self) -> None:
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")
        if not 4 <= self.min_size <= self.max_size <= self.image_size:
            raise ValueError(
                f"need 4 <= min_size <= max_size <= image_size, got {self.min_size}, {self.max_size}, {self.image_size}"
            )


@dataclasses.dataclass
class ShapesBatch:
    images: np.ndarray  # [N, H, W, 3] uint8
    boxes: np.ndarray  # [N, max_objects, 4] float32 xyxy pixels, -1 rows as padding
    classes: np.ndarray  # [N, max_objects] float32 class ids (index into CLASSES), -1 padding

    @property
    def annotations(self) -> dict[str, np.ndarray]:
        return {"boxes": self.boxes, "classes": self.classes}


def _mask(kind: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask [height, width] of one shape drawn inside its height x width box."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    if kind == 0:
        return np.ones((height, width), bool)
    if kind == 1:
        cy, cx = height / 2, width / 2
        return ((ys - cy) / (height / 2)) ** 2 + ((xs - cx) / (width / 2)) ** 2 <= 1.0
    # Triangle: apex on the top edge, base on the bottom edge.
    apex = rng.uniform(0.2, 0.8) * width
    left = (ys / height) * (0.0 - apex) + apex  # left edge x at each row
    right = (ys / height) * (width - apex) + apex
    return (xs >= left) & (xs <= right)


def _colour(background: float, rng: np.random.Generator) -> np.ndarray:
    """A colour at least 80 (of 255) away from the background level in some channel."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).max() >= 80:
            return colour


def sample(index: int, seed: int = 0, config: ShapesConfig = ShapesConfig()):
    """(image [H, W, 3] uint8, boxes [M, 4] xyxy, classes [M]) of image `index`."""
    rng = np.random.default_rng([seed, index])
    size = config.image_size
    background = float(rng.integers(40, 216))
    image = np.clip(rng.normal(background, config.noise, (size, size, 3)), 0, 255)
    boxes, classes, taken = [], [], np.zeros((size, size), bool)
    wanted = int(rng.integers(1, config.max_objects + 1))
    for _ in range(50 * wanted):  # placement attempts
        if len(boxes) == wanted:
            break
        height, width = rng.integers(config.min_size, config.max_size + 1, 2)
        y, x = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
        if taken[max(y - 2, 0) : y + height + 2, max(x - 2, 0) : x + width + 2].any():
            continue  # keep a 2-pixel gap: no occlusion, no touching shapes
        kind = int(rng.integers(len(CLASSES)))
        mask = _mask(kind, int(height), int(width), rng)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        image[y : y + height, x : x + width][mask] = _colour(background, rng)
        taken[y : y + height, x : x + width] = True
        boxes.append((x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1))
        classes.append(kind)
    return (
        image.astype(np.uint8),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.float32),
    )


def generate(n: int, seed: int = 0, config: ShapesConfig = ShapesConfig(), start: int = 0) -> ShapesBatch:
    """Images ``start .. start + n - 1`` of the dataset with this seed, annotations padded with -1."""
    size, m = config.image_size, config.max_objects
    images = np.zeros((n, size, size, 3), np.uint8)
    boxes, classes = -np.ones((n, m, 4), np.float32), -np.ones((n, m), np.float32)
    for i in range(n):
        image, image_boxes, image_classes = sample(start + i, seed, config)
        images[i], boxes[i, : len(image_boxes)], classes[i, : len(image_classes)] = (
            image,
            image_boxes,
            image_classes,
        )
    return ShapesBatch(images, boxes, classes)


def dataset(n: int, seed: int = 0, config: ShapesConfig = ShapesConfig()):
    """``tf.data.Dataset`` of ``(image uint8 [H, W, 3], {"boxes": [M, 4], "classes": [M]})``."""
    import tensorflow as tf

    batch = generate(n, seed, config)
    return tf.data.Dataset.from_tensor_slices((batch.images, batch.annotations))


# --- Dense annotations: class masks and key points --------------------------------------------
#
# The same images as `sample`, with what a segmenter and a key-point model train on. `_render`
# replays `sample`'s random draws one for one (tests/data/test_shapes.py checks the images,
# boxes and classes are identical), so image `i` of seed `s` is the same in every form.

# Every shape has this many key-point slots (pixel-edge xy, like the boxes), in clockwise order:
# rectangle: its four corners from the top-left; ellipse: its top, right, bottom and left
# extreme points; triangle: apex, bottom-right, bottom-left corners and an invisible fourth slot.
KEYPOINTS_PER_SHAPE = 4
KEYPOINT_NAMES = {
    "rectangle": ("top_left", "top_right", "bottom_right", "bottom_left"),
    "ellipse": ("top", "right", "bottom", "left"),
    "triangle": ("apex", "bottom_right", "bottom_left", None),
}


@dataclasses.dataclass
class DenseShapesBatch(ShapesBatch):
    masks: np.ndarray  # [N, H, W] uint8: 0 background, 1 + class id on the shape's pixels
    keypoints: np.ndarray  # [N, max_objects, KEYPOINTS_PER_SHAPE, 2] float32 xy pixels, -1 padding
    visible: np.ndarray  # [N, max_objects, KEYPOINTS_PER_SHAPE] bool (False for padding)


def _keypoints(kind: int, x: int, y: int, height: int, width: int, apex: float | None) -> np.ndarray:
    if kind == 0:
        return np.array([(x, y), (x + width, y), (x + width, y + height), (x, y + height)], np.float32)
    if kind == 1:
        cx, cy = x + width / 2, y + height / 2
        return np.array([(cx, y), (x + width, cy), (cx, y + height), (x, cy)], np.float32)
    return np.array([(x + apex, y), (x + width, y + height), (x, y + height), (-1, -1)], np.float32)


def _render(index: int, seed: int, config: ShapesConfig):
    """`sample`'s image, boxes and classes plus the class mask, key points and visibility."""
    rng = np.random.default_rng([seed, index])
    size = config.image_size
    background = float(rng.integers(40, 216))
    image = np.clip(rng.normal(background, config.noise, (size, size, 3)), 0, 255)
    boxes, classes, points, taken = [], [], [], np.zeros((size, size), bool)
    class_mask = np.zeros((size, size), np.uint8)
    wanted = int(rng.integers(1, config.max_objects + 1))
    for _ in range(50 * wanted):
        if len(boxes) == wanted:
            break
        height, width = rng.integers(config.min_size, config.max_size + 1, 2)
        y, x = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
        if taken[max(y - 2, 0) : y + height + 2, max(x - 2, 0) : x + width + 2].any():
            continue
        kind = int(rng.integers(len(CLASSES)))
        apex = None
        if kind == 2:  # peek at the apex draw `_mask` is about to make
            probe = np.random.Generator(np.random.PCG64())
            probe.bit_generator.state = rng.bit_generator.state
            apex = probe.uniform(0.2, 0.8) * width
        mask = _mask(kind, int(height), int(width), rng)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        image[y : y + height, x : x + width][mask] = _colour(background, rng)
        class_mask[y : y + height, x : x + width][mask] = kind + 1
        taken[y : y + height, x : x + width] = True
        boxes.append((x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1))
        classes.append(kind)
        points.append(_keypoints(kind, x, y, int(height), int(width), apex))
    keypoints = np.asarray(points, np.float32).reshape(-1, KEYPOINTS_PER_SHAPE, 2)
    return (
        image.astype(np.uint8),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.float32),
        class_mask,
        keypoints,
        keypoints[..., 0] >= 0,
    )


def generate_dense(
    n: int, seed: int = 0, config: ShapesConfig = ShapesConfig(), start: int = 0
) -> DenseShapesBatch:
    """`generate`'s images and boxes with per-pixel class masks and per-shape key points."""
    size, m = config.image_size, config.max_objects
    batch = DenseShapesBatch(
        images=np.zeros((n, size, size, 3), np.uint8),
        boxes=-np.ones((n, m, 4), np.float32),
        classes=-np.ones((n, m), np.float32),
        masks=np.zeros((n, size, size), np.uint8),
        keypoints=-np.ones((n, m, KEYPOINTS_PER_SHAPE, 2), np.float32),
        visible=np.zeros((n, m, KEYPOINTS_PER_SHAPE), bool),
    )
    for i in range(n):
        image, boxes, classes, mask, keypoints, visible = _render(start + i, seed, config)
        count = len(boxes)
        batch.images[i], batch.masks[i] = image, mask
        batch.boxes[i, :count], batch.classes[i, :count] = boxes, classes
        batch.keypoints[i, :count], batch.visible[i, :count] = keypoints, visible
    return batch
