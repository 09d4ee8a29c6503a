"""The synthetic `shapes` detection dataset: deterministic, exact and valid boxes."""

import numpy as np
import pytest

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
        batch.annotations, (96, 96), shapes.BOX_FORMAT, num_classes=len(shapes.CLASSES)
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
