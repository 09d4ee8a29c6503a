"""The synthetic `shapes` detection dataset: deterministic, exact and valid boxes."""

import numpy as np
import pytest

from nlighten_tf.boxes import ANNOTATION_FORMAT
from nlighten_tf.data import shapes
from nlighten_tf.models import detection


def test_same_seed_same_data_and_prefixes_agree():
    a, b = shapes.generate(6, seed=3), shapes.generate(6, seed=3)
    for field in ("images", "boxes", "classes"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    longer = shapes.generate(8, seed=3)
    np.testing.assert_array_equal(longer.images[:6], a.images)
    np.testing.assert_array_equal(shapes.generate(2, seed=3, start=4).boxes, a.boxes[4:])
    assert not np.array_equal(shapes.generate(6, seed=4).images, a.images)


def test_boxes_are_valid_and_cover_every_class():
    config = shapes.ShapesConfig(image_size=96, max_objects=4, min_size=12, max_size=32)
    batch = shapes.generate(24, seed=0, config=config)
    assert batch.images.shape == (24, 96, 96, 3) and batch.images.dtype == np.uint8
    detection.validate_annotations(
        batch.annotations, (96, 96), ANNOTATION_FORMAT, num_classes=len(shapes.CLASSES)
    )
    real = batch.classes >= 0
    assert set(batch.classes[real].astype(int)) == {0, 1, 2}
    assert (real.sum(axis=1) >= 1).all() and real.sum() > 24
    sizes = batch.boxes[real][:, 2:] - batch.boxes[real][:, :2]
    assert (sizes >= 4).all() and (sizes <= 32).all()


def test_boxes_are_the_exact_pixel_bounds_of_each_shape():
    config = shapes.ShapesConfig(noise=0.0)  # flat background: shape pixels are those that differ
    for index in range(5):
        image, boxes, _ = shapes.sample(index, seed=1, config=config)
        changed = (image != image[0, 0]).any(axis=-1)
        covered = np.zeros_like(changed)
        for x0, y0, x1, y1 in boxes.astype(int):
            inside = changed[y0:y1, x0:x1]
            # Touches all four edges of its box: no slack.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            covered[y0:y1, x0:x1] = True
        assert not (changed & ~covered).any()  # no shape pixel outside the boxes


def test_dataset_yields_images_and_keras_cv_annotations():
    ds = shapes.dataset(3, seed=0)
    image, annotations = next(iter(ds))
    assert image.shape == (128, 128, 3)
    assert annotations["boxes"].shape == (3, 4) and annotations["classes"].shape == (3,)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="min_size <= max_size"):
        shapes.ShapesConfig(min_size=40, max_size=20)


# --- Dense annotations (segmentation masks, key points) ----------------------------------------


def test_dense_batch_is_the_same_images_with_masks_and_key_points():
    config = shapes.ShapesConfig(image_size=64, max_objects=3, min_size=12, max_size=32)
    plain, dense = shapes.generate(12, seed=5, config=config), shapes.generate_dense(12, seed=5, config=config)
    for field in ("images", "boxes", "classes"):
        np.testing.assert_array_equal(getattr(dense, field), getattr(plain, field))
    np.testing.assert_array_equal(shapes.generate_dense(4, seed=5, config=config, start=8).masks, dense.masks[8:])
    assert dense.masks.shape == (12, 64, 64) and dense.masks.dtype == np.uint8
    assert dense.keypoints.shape == (12, 3, shapes.KEYPOINTS_PER_SHAPE, 2)
    assert set(np.unique(dense.masks)) == {0, 1, 2, 3}


def test_masks_are_the_shape_pixels_with_their_class():
    config = shapes.ShapesConfig(noise=0.0)  # flat background: shape pixels are those that differ
    batch = shapes.generate_dense(6, seed=1, config=config)
    for image, mask, boxes, classes in zip(batch.images, batch.masks, batch.boxes, batch.classes, strict=True):
        np.testing.assert_array_equal(mask > 0, (image != image[0, 0]).any(axis=-1))
        for (x0, y0, x1, y1), kind in zip(boxes.astype(int), classes, strict=True):
            if kind < 0:
                continue
            inside = mask[y0:y1, x0:x1]
            assert set(np.unique(inside)) <= {0, int(kind) + 1} and (inside == kind + 1).any()
            # the mask's own bounds are the box
            rows, cols = np.flatnonzero((inside > 0).any(1)), np.flatnonzero((inside > 0).any(0))
            assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, y1 - y0 - 1, x1 - x0 - 1)


def test_key_points_sit_on_their_shapes():
    batch = shapes.generate_dense(40, seed=2)
    real = batch.classes >= 0
    assert (batch.visible[~real] == 0).all() and (batch.keypoints[~real] == -1).all()
    for kind in range(len(shapes.CLASSES)):
        chosen = real & (batch.classes == kind)
        points, visible, boxes = batch.keypoints[chosen], batch.visible[chosen], batch.boxes[chosen]
        assert len(points) > 0
        expected = [True, True, True, kind != 2]  # the triangle's fourth slot is empty
        assert (visible == expected).all()
        seen = points[:, :3]
        x0, y0, x1, y1 = (boxes[:, None, i] for i in range(4))
        # Inside the tight pixel box, give or take the pixels a sharp triangle corner covers no
        # pixel centre of (a tip loses up to height / width <= 3 rows here).
        slack = 4 if kind == 2 else 0
        assert ((seen[..., 0] >= x0 - slack) & (seen[..., 0] <= x1 + slack)).all()
        assert ((seen[..., 1] >= y0 - slack) & (seen[..., 1] <= y1)).all()
        if kind == 0:  # rectangle corners are its box corners exactly
            corners = np.stack([np.stack([x0, y0], -1), np.stack([x1, y0], -1), np.stack([x1, y1], -1),
                                np.stack([x0, y1], -1)], 1)[:, :, 0]  # fmt: skip
            np.testing.assert_array_equal(points, corners)
