"""Detection data: the `shapes` spec through `data.load`, TFDS detection examples converted to
the same box format, and per-anchor training targets."""

import numpy as np
import pytest
import tensorflow as tf

from nlighten_tf import data
from nlighten_tf.data import detection as detection_data
from nlighten_tf.data import shapes
from nlighten_tf.models import detection


def batches(dataset):
    images, boxes, classes = [], [], []
    for x, y in dataset.as_numpy_iterator():
        images.append(x), boxes.append(y["boxes"]), classes.append(y["classes"])
    return np.concatenate(images), np.concatenate(boxes), np.concatenate(classes)


def test_shapes_spec_gives_normalised_images_and_xyxy_pixel_boxes():
    dataset, info = data.load("shapes", split="train[:12]", image_size=64, batch_size=5, shuffle=False)
    assert info.box_format == "xyxy" and info.class_names == shapes.CLASSES and info.num_examples == 12
    images, boxes, classes = batches(dataset)
    assert images.shape == (12, 64, 64, 3) and images.dtype == np.float32
    assert -1.0 <= images.min() and images.max() <= 1.0  # "lite": (x - 127) / 128
    config = detection_data.shapes_config_for(64)
    assert boxes.shape == (12, config.max_objects, 4)
    # The generator's own images and boxes, preprocessed: nothing moved or rescaled.
    expected = shapes.generate(12, seed=0, config=config)
    np.testing.assert_allclose(images, (expected.images.astype(np.float32) - 127.0) / 128.0)
    np.testing.assert_array_equal(boxes, expected.boxes)
    np.testing.assert_array_equal(classes, expected.classes)
    valid = classes >= 0
    assert valid.any(axis=1).all()
    assert (boxes[valid][:, 2:] <= 64).all() and (boxes[valid][:, :2] >= 0).all()
    detection.validate_annotations({"boxes": boxes, "classes": classes}, (64, 64), info.box_format, 3)


def test_shapes_splits_are_disjoint_seeded_ranges():
    _, train_info = data.load("shapes", split="train", image_size=32, batch_size=8, limit=4)
    _, test_info = data.load("shapes", split="test", image_size=32, batch_size=8)
    assert (train_info.num_examples, test_info.num_examples) == (4, detection_data.SHAPES_SPLITS["test"][1])
    assert detection_data.SHAPES_SPLITS["train"][1] == 2000
    train, _ = data.load("shapes", split="train[:6]", image_size=32, batch_size=6, shuffle=False)
    test, _ = data.load("shapes", split="test[:6]", image_size=32, batch_size=6, shuffle=False)
    again, _ = data.load("shapes", split="test[:6]", image_size=32, batch_size=6, shuffle=False)
    train_images, test_images, again_images = (batches(d)[0] for d in (train, test, again))
    np.testing.assert_array_equal(test_images, again_images)  # deterministic
    assert not any(np.array_equal(a, b) for a in train_images for b in test_images)
    start = detection_data.SHAPES_SPLITS["test"][0]
    config = detection_data.shapes_config_for(32)
    np.testing.assert_array_equal(
        test_images[2], (shapes.sample(start + 2, 0, config)[0].astype(np.float32) - 127.0) / 128.0
    )
    shuffled, _ = data.load("shapes", split="train[:6]", image_size=32, batch_size=6)  # train: shuffled
    assert sorted(map(bytes, batches(shuffled)[0])) == sorted(map(bytes, train_images))


def test_detection_specs_refuse_what_does_not_apply():
    with pytest.raises(data.DataError, match="split 'validation' does not exist in shapes"):
        data.load("shapes", split="validation", image_size=32)
    with pytest.raises(data.DataError, match="augment, one_hot and crop do not apply"):
        data.load("shapes", augment="basic", image_size=32)
    with pytest.raises(data.DataError, match="detection data set"):
        data.load_raw("shapes")
    with pytest.raises(data.DataError, match="max_boxes 2"):
        detection_data.load_detection(
            "shapes", image_size=32, max_boxes=2, shapes_config=shapes.ShapesConfig(32, 3, 8, 16)
        )
    assert detection_data.is_detection_spec("tfds:coco/2017") and detection_data.is_detection_spec(
        "tfds:voc/2012"
    )
    assert not detection_data.is_detection_spec("tfds:cifar10") and not detection_data.is_detection_spec(
        "digits"
    )


def test_tfds_voc_and_coco_examples_convert_to_xyxy_pixels():
    """A hand-made example in the TFDS object-detection layout (relative ymin, xmin, ymax, xmax
    bboxes; VOC `is_difficult` / COCO `is_crowd` flags); the real builders cannot be prepared
    offline, so `load_detection` on them is not exercised here."""
    image = np.zeros((50, 100, 3), np.uint8)  # H 50, W 100: resized to 64 x 64 without keeping aspect
    example = {
        "image": image,
        "objects": {
            "bbox": np.array([[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.3, 0.4]], np.float32),
            "label": np.array([4, 7, 2]),
            "is_difficult": np.array([False, True, False]),
        },
    }
    resized, boxes, classes = detection_data.tfds_example_to_boxes(example, 64, "is_difficult")
    assert resized.shape == (64, 64, 3) and resized.dtype == tf.uint8
    # Box 1 is difficult and box 2 has zero height: both left out.
    np.testing.assert_allclose(boxes.numpy(), [[0.2 * 64, 0.1 * 64, 0.6 * 64, 0.5 * 64]], atol=1e-4)
    np.testing.assert_array_equal(classes.numpy(), [4])
    coco = {"image": np.zeros((20, 20, 1), np.uint8),
            "objects": {"bbox": np.array([[0.0, 0.5, 0.5, 1.0]], np.float32), "label": np.array([0]),
                        "is_crowd": np.array([False])}}  # fmt: skip
    resized, boxes, classes = detection_data.tfds_example_to_boxes(coco, 32, "is_crowd")
    assert resized.shape == (32, 32, 3)  # grayscale -> RGB
    np.testing.assert_allclose(boxes.numpy(), [[16, 0, 32, 16]])


def test_missing_tfds_detection_data_names_the_fix(tmp_path):
    with pytest.raises(data.DataError, match="not prepared.*tfds build voc/2012"):
        data.load("tfds:voc/2012", image_size=64, data_dir=str(tmp_path))


def test_training_dataset_encodes_per_anchor_targets():
    dataset, info = data.load("shapes", split="train[:4]", image_size=64, batch_size=4, shuffle=False)
    anchors = detection.generate_anchors((64, 64))
    images, targets = next(iter(detection.training_dataset(dataset, anchors, info.box_format)))
    labels = targets[detection.CLASS_OUTPUT].numpy()
    assert labels.shape == (4, len(anchors), 5)
    _, boxes, classes = batches(dataset)
    expected = detection.encode_targets({"boxes": boxes, "classes": classes}, anchors, (64, 64), "xyxy")
    np.testing.assert_allclose(labels, expected.numpy(), atol=1e-5)
    positives = labels[..., 4] >= 0
    assert positives.any(axis=1).all()  # every image has matched anchors
