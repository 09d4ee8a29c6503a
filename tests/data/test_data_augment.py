"""Training augmentation through keras-cv layers."""

import numpy as np
import pytest

import nlighten_tf.data as data
from nlighten_tf.data import AugmentConfig, DataError, parse_augment

LITE_RANGE = (-127 / 128, 1.0)


def test_parsing_presets_lists_and_dicts() -> None:
    assert parse_augment(None) is None and parse_augment("none") is None and parse_augment({"flip": False}) is None
    assert parse_augment("basic") == AugmentConfig(flip=True, crop=True)
    assert parse_augment("strong, mixup") == AugmentConfig(flip=True, crop=True, randaugment=True, mixup=True)
    config = parse_augment({"crop": True, "randaugment": {"magnitude": 0.6, "augmentations_per_image": 1}, "cutmix": {"alpha": 0.5}})
    assert config == AugmentConfig(crop=True, randaugment=True, randaugment_magnitude=0.6, randaugment_layers=1, cutmix=True, cutmix_alpha=0.5)
    assert config.describe() == "crop,randaugment,cutmix" and config.mixes_labels


@pytest.mark.parametrize(
    "value, message",
    [
        ("zoom", "unknown component 'zoom'; valid: flip, crop"),
        ({"mixup": {"beta": 1}}, "mixup has no option 'beta'; valid: alpha"),
        ("mixup,cutmix", "choose one of mixup and cutmix"),
        ({"randaugment": {"magnitude": 3}}, r"magnitude must be in \[0, 1\]"),
        (3, "augment must be None, a string, a dict"),
    ],
)
def test_bad_augmentation_options(value: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_augment(value)


def _first(augment: object, seed: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    dataset, info = data.load("digits", "train", image_size=32, batch_size=16, augment=augment, seed=seed, limit=64)
    return next(dataset.as_numpy_iterator())


def test_flip_and_crop_are_seeded_and_change_the_images() -> None:
    plain_images, plain_labels = _first(None)
    images, labels = _first("basic")
    again, _ = _first("basic")
    other, _ = _first("basic", seed=1)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
    np.testing.assert_array_equal(labels, plain_labels)  # same shuffle, same labels
    assert images.shape == plain_images.shape == (16, 32, 32, 3)
    assert not np.array_equal(images, plain_images)
    assert LITE_RANGE[0] <= images.min() and images.max() <= LITE_RANGE[1]


@pytest.mark.parametrize("augment", ["strong,mixup", "cutmix"])
def test_mixing_gives_one_hot_soft_labels(augment: str) -> None:
    dataset, info = data.load("digits", "train", image_size=32, batch_size=16, augment=augment, limit=64)
    assert info.one_hot and info.augment == augment.replace("strong", "flip,crop,randaugment")
    for images, labels in dataset.as_numpy_iterator():
        assert images.shape[1:] == (32, 32, 3) and np.isfinite(images).all()
        assert LITE_RANGE[0] <= images.min() and images.max() <= LITE_RANGE[1]
        assert labels.shape == (len(images), 10) and labels.dtype == np.float32
        np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert (labels.max(axis=1) < 1.0).any()  # some examples really were mixed


def test_evaluation_and_calibration_never_augment() -> None:
    # representative_dataset has no augment option; load without one is the evaluation transform.
    plain, _ = data.load("digits", "train", image_size=32, batch_size=4, shuffle=False, limit=4)
    sample = [x for (x,) in data.representative_dataset("digits", 4, image_size=32, shuffle=False)()]
    np.testing.assert_array_equal(next(plain.as_numpy_iterator())[0], np.concatenate(sample))
