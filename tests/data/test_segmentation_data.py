"""Segmentation data: `load_segmentation` on generated shapes (masks identical to
`shapes.generate_dense`), Oxford-IIIT Pet trimaps converted from hand-made TFDS-style examples,
and the errors for bad input and missing data."""

import numpy as np
import pytest
import tensorflow as tf

from nlighten_tf import data
from nlighten_tf.data import detection as detection_data
from nlighten_tf.data import segmentation, shapes
from nlighten_tf.models import heads


def batches(dataset):
    images, masks = zip(*dataset.as_numpy_iterator(), strict=True)
    return np.concatenate(images), np.concatenate(masks)


def test_shapes_masks_are_generate_dense_and_images_are_normalised_as_for_classifiers():
    dataset, info = segmentation.load_segmentation(
        "shapes", "train[:6]", image_size=64, batch_size=4, model="lraspp_mobilenet_v2", shuffle=False
    )
    assert info.class_names == ("background", "rectangle", "ellipse", "triangle") and info.num_classes == 4
    assert info.num_examples == 6 and info.preprocessing == "mobilenet"
    images, masks = batches(dataset)
    assert images.dtype == np.float32 and images.shape == (6, 64, 64, 3)
    assert masks.dtype == np.int32 and masks.shape == (6, 64, 64)
    expected = shapes.generate_dense(6, seed=0, config=detection_data.shapes_config_for(64))
    np.testing.assert_array_equal(masks, expected.masks)
    # The classifiers' one evaluation transform, same scheme: identical inputs.
    np.testing.assert_allclose(
        images, data.preprocess_for_eval(expected.images, 64, "mobilenet", crop=False), atol=1e-6
    )
    assert set(np.unique(masks)) == {0, 1, 2, 3}
    heads.validate_masks(masks, info.num_classes, images.shape)  # what the segmenter trains on


def test_shapes_splits_are_disjoint_and_match_the_detection_pictures():
    test, info = segmentation.load_segmentation("shapes", "test[:3]", image_size=32, batch_size=3)
    assert info.split == "test[:3]"
    test_images, test_masks = batches(test)
    start = detection_data.SHAPES_SPLITS["test"][0]
    expected = shapes.generate_dense(3, seed=0, config=detection_data.shapes_config_for(32), start=start)
    np.testing.assert_array_equal(test_masks, expected.masks)
    boxes, _ = data.load("shapes", split="test[:3]", image_size=32, batch_size=3)  # the detection set
    np.testing.assert_array_equal(test_images, next(iter(boxes))[0].numpy())  # same pictures
    train, _ = segmentation.load_segmentation(
        "shapes", "train[:3]", image_size=32, batch_size=3, shuffle=False
    )
    train_images, _ = batches(train)
    assert not any(np.array_equal(a, b) for a in train_images for b in test_images)
    shuffled, _ = segmentation.load_segmentation("shapes", "train[:3]", image_size=32, batch_size=3)
    assert sorted(map(bytes, batches(shuffled)[0])) == sorted(map(bytes, train_images))  # train: shuffled
    _, limited = segmentation.load_segmentation("shapes", "train+test", image_size=32, limit=5)
    assert limited.num_examples == 5


def trimap_example(channels=3):
    """8x8: left half pet (1), right top background (2), right bottom border (3)."""
    trimap = np.full((8, 8), 1, np.uint8)
    trimap[:4, 4:], trimap[4:, 4:] = 2, 3
    image = np.arange(8 * 8 * channels, dtype=np.uint8).reshape(8, 8, channels)
    return {"image": image, "segmentation_mask": trimap[..., None]}, trimap


def test_oxford_trimaps_map_to_background_pet_and_ignore():
    example, trimap = trimap_example()
    image, mask = segmentation.tfds_example_to_mask(example, 32)
    assert image.shape == (32, 32, 3) and image.dtype == tf.float32
    assert mask.shape == (32, 32) and mask.dtype == tf.int32
    classes = np.select([trimap == 1, trimap == 2], [1, 0], segmentation.IGNORE_LABEL)
    np.testing.assert_array_equal(mask.numpy(), np.kron(classes, np.ones((4, 4), int)))  # nearest: 4x4 blocks
    _, as_pet = segmentation.tfds_example_to_mask(example, 32, pet_border="pet")
    np.testing.assert_array_equal(as_pet.numpy(), np.kron(np.where(trimap == 2, 0, 1), np.ones((4, 4), int)))
    # The image is resized as the classifiers' transform resizes it (no crop).
    np.testing.assert_allclose(
        image.numpy() / 128 - 127 / 128, data.preprocess_for_eval(example["image"], 32, "lite"), atol=1e-5
    )
    # A non-integer scale keeps the labels discrete; grayscale becomes RGB.
    odd = {
        "image": np.zeros((10, 14, 1), np.uint8),
        "segmentation_mask": np.resize(trimap, (10, 14))[..., None],
    }
    image, mask = segmentation.tfds_example_to_mask(odd, 32)
    assert image.shape == (32, 32, 3)
    assert set(np.unique(mask.numpy())) == {0, 1, segmentation.IGNORE_LABEL}
    # Graph mode (inside tf.data, as load_segmentation runs it) gives the same result.
    graph = tf.data.Dataset.from_tensors(example).map(lambda e: segmentation.tfds_example_to_mask(e, 32))
    np.testing.assert_array_equal(next(iter(graph))[1].numpy(), np.kron(classes, np.ones((4, 4), int)))


def test_bad_trimaps_are_named():
    example, trimap = trimap_example()
    with pytest.raises(data.DataError, match="segmentation_mask is 8x6 but the image is 8x8"):
        segmentation.tfds_example_to_mask({**example, "segmentation_mask": trimap[:, :6, None]}, 32)
    bad = trimap.copy()
    bad[2, 5] = 7
    with pytest.raises(
        data.DataError, match=r"value 7 at \(row, column\) \(2, 5\).*1 \(pet\), 2 \(background\)"
    ):
        segmentation.tfds_example_to_mask({**example, "segmentation_mask": bad[..., None]}, 32)
    with pytest.raises(data.DataError, match="segmentation_mask must be"):
        segmentation.tfds_example_to_mask({**example, "segmentation_mask": np.ones((8, 8, 3), np.uint8)}, 32)
    with pytest.raises(data.DataError, match="pet_border must be one of ignore, pet"):
        segmentation.tfds_example_to_mask(example, 32, pet_border="border")
    # In a tf.data map the checks are graph assertions with the same wording.
    graph = tf.data.Dataset.from_tensors({**example, "segmentation_mask": bad[..., None]})
    with pytest.raises(tf.errors.InvalidArgumentError, match="segmentation_mask value above 3"):
        next(iter(graph.map(lambda e: segmentation.tfds_example_to_mask(e, 32))))


def test_missing_pet_data_and_wrong_specs_are_named(tmp_path):
    from nlighten_tf.data.tfds_source import NotPreparedError

    with pytest.raises(NotPreparedError, match=f"oxford_iiit_pet.*not prepared in {tmp_path}") as error:
        data.load_segmentation("tfds:oxford_iiit_pet", image_size=64, data_dir=str(tmp_path))
    assert error.value.data_dir == str(tmp_path)
    assert "tfds build oxford_iiit_pet" in str(error.value)
    with pytest.raises(data.DataError, match="'digits' is not a segmentation data set"):
        data.load_segmentation("digits")
    with pytest.raises(data.DataError, match="split 'validation' does not exist in shapes"):
        data.load_segmentation("shapes", "validation", image_size=32)
    with pytest.raises(data.DataError, match="ShapesConfig.image_size 64 differs from image_size 32"):
        data.load_segmentation("shapes", image_size=32, shapes_config=shapes.ShapesConfig(64))
    assert segmentation.is_segmentation_spec("tfds:oxford_iiit_pet:4.0.0")
    assert not segmentation.is_segmentation_spec("tfds:voc/2012")
