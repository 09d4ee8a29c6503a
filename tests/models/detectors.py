"""The CPU-sized EfficientDet the detection tests share, and a batch of boxes for it."""

import numpy as np

from nlighten_tf import models

SIZE = 128
NUM_CLASSES = 3
# Half-width, half-depth backbone, 16-wide BiFPN, one cell, one head conv.
TINY = dict(
    input_shape=(SIZE, SIZE, 3),
    num_classes=NUM_CLASSES,
    backbone_options={"width_coefficient": 0.5, "depth_coefficient": 0.5},
    fpn_num_filters=16,
    fpn_cell_repeats=1,
    box_class_repeats=1,
)


def tiny(name="efficientdet_lite0", **overrides):
    return models.build(name, **{**TINY, **overrides})


def shapes_batch(n=4, seed=0):
    """Images with one or two filled rectangles; boxes in xyxy pixels, padded with -1 rows."""
    rng = np.random.RandomState(seed)
    images = rng.uniform(-0.2, 0.2, (n, SIZE, SIZE, 3)).astype(np.float32)
    boxes, classes = -np.ones((n, 2, 4), np.float32), -np.ones((n, 2), np.float32)
    for i in range(n):
        for j in range(1 + i % 2):
            h, w = rng.randint(24, 64, 2)
            y, x = rng.randint(0, SIZE - h), rng.randint(0, SIZE - w)
            c = rng.randint(NUM_CLASSES)
            images[i, y : y + h, x : x + w, c] = 1.0
            boxes[i, j], classes[i, j] = (x, y, x + w, y + h), c
    return images, {"boxes": boxes, "classes": classes}
