"""tfds: specs through TFDS itself: tiny real builders prepared from local images into a
temporary data_dir, then loaded by name with `tfds.builder`. Nothing is mocked or downloaded."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from skimage import data as skdata
from sklearn.datasets import load_digits

import nlighten_tf.data as data
from nlighten_tf.data import DataError

PHOTO_CLASSES = ("camera", "cat", "coffee")


def photos(per_class: int) -> list[tuple[np.ndarray, int]]:
    """Crops of real photos, of varying size; camera() is grayscale, stacked to RGB."""
    sources = (np.stack([skdata.camera()] * 3, axis=-1), skdata.chelsea(), skdata.coffee())
    examples = []
    for label, image in enumerate(sources):
        for i in range(per_class):
            examples.append((image[i * 17 : 90 + i * 23, i * 11 : 130 + i * 7], label))
    return examples


class NltTinyPhotos(tfds.core.GeneratorBasedBuilder):
    """Variable-size RGB photos, three classes, two configs of different sizes."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="two", description="2 crops per class"),
        tfds.core.BuilderConfig(name="four", description="4 crops per class"),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly: dataset_info_from_configs reads metadata files next to the
        # builder's package, and this module is not in one.
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(shape=(None, None, 3)), "label": tfds.features.ClassLabel(names=PHOTO_CLASSES)}
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        per_class = 2 if self.builder_config.name == "two" else 4
        return {"train": self._generate_examples(per_class), "test": self._generate_examples(1)}

    def _generate_examples(self, per_class):
        for i, (image, label) in enumerate(photos(per_class)):
            yield i, {"image": image, "label": label}


class NltTinyDigits(tfds.core.GeneratorBasedBuilder):
    """Fixed-size 16x16 grayscale digits, no supervised keys and an extra text feature."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "picture": tfds.features.Image(shape=(16, 16, 1)),
                    "digit": tfds.features.ClassLabel(num_classes=10),
                    "note": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 40), "validation": self._generate_examples(40, 60)}

    def _generate_examples(self, start, stop):
        bunch = load_digits()
        for i in range(start, stop):
            image = np.kron(np.round(bunch.images[i] * 255 / 16), np.ones((2, 2))).astype(np.uint8)[..., None]
            yield i, {"picture": image, "digit": int(bunch.target[i]), "note": f"digit {bunch.target[i]}"}


class NltTinyText(tfds.core.GeneratorBasedBuilder):
    """A text-classification set: must be refused."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["neg", "pos"])}
            ),
            supervised_keys=("text", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        yield 0, {"text": "fine", "label": "pos"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = str(tmp_path_factory.mktemp("tfds"))
    for name in ("nlt_tiny_photos/two", "nlt_tiny_photos/four", "nlt_tiny_digits"):
        tfds.builder(name, data_dir=root).download_and_prepare()
    return root


def test_a_builder_loads_by_name_with_labels_matching_images(data_dir: str) -> None:
    dataset, info = data.load_raw("tfds:nlt_tiny_photos/two", "train", data_dir=data_dir)
    assert info.class_names == PHOTO_CLASSES and info.num_examples == 6 and info.crop is True
    assert "nlt_tiny_photos/two/1.0.0" in info.source
    expected = photos(2)
    got = list(dataset.as_numpy_iterator())
    assert len(got) == 6
    for image, label in got:  # PNG-encoded by TFDS, so exact
        assert image.dtype == np.uint8
        assert any(np.array_equal(image, e) and label == lab for e, lab in expected)


def test_configs_versions_and_slices_go_through_tfds(data_dir: str) -> None:
    _, four = data.load_raw("tfds:nlt_tiny_photos:1.0.0/four", "train", data_dir=data_dir)
    assert four.num_examples == 12
    dataset, half = data.load("tfds:nlt_tiny_photos/four", "train[:50%]", image_size=32, batch_size=4, data_dir=data_dir)
    assert half.num_examples == 6 and half.split == "train[:50%]"
    images = np.concatenate([x for x, _ in dataset.as_numpy_iterator()])
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.float32
    assert -127 / 128 <= images.min() < 0 < images.max() <= 1.0


def test_features_found_without_supervised_keys_and_val_alias(data_dir: str) -> None:
    dataset, info = data.load("tfds:nlt_tiny_digits", "val", image_size=32, batch_size=32, data_dir=data_dir)
    assert info.split == "validation" and info.num_examples == 20 and info.crop is False
    images, labels = next(dataset.as_numpy_iterator())
    assert images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])  # grayscale made RGB
    bunch = load_digits()
    label_of = {
        np.kron(np.round(image * 255 / 16), np.ones((2, 2))).astype(np.uint8).tobytes(): target
        for image, target in zip(bunch.images[40:60], bunch.target[40:60], strict=True)
    }
    raw, _ = data.load_raw("tfds:nlt_tiny_digits", "validation", data_dir=data_dir)
    for image, label in raw.as_numpy_iterator():  # TFDS reorders examples; match by content
        assert image.shape == (16, 16, 1) and label_of[image.tobytes()] == label
    with pytest.raises(DataError, match=r"split 'test' does not exist .*available splits: train, validation"):
        data.load("tfds:nlt_tiny_digits", "test", image_size=32, data_dir=data_dir)


def test_unprepared_data_is_not_downloaded(tmp_path) -> None:
    with pytest.raises(DataError, match=r"not prepared in .*download=True") as raised:
        data.load("tfds:nlt_tiny_photos/two", image_size=32, data_dir=str(tmp_path))
    assert str(tmp_path) in str(raised.value)
    assert not any(files for _, _, files in os.walk(tmp_path))


def test_non_image_classification_sets_are_refused(tmp_path) -> None:
    with pytest.raises(DataError, match=r"tfds:nlt_tiny_text is not an image-classification data set \(features: text: Text"):
        data.load("tfds:nlt_tiny_text", image_size=32, data_dir=str(tmp_path))


def test_unknown_names_and_configs_are_refused(data_dir: str) -> None:
    with pytest.raises(DataError, match=r"TFDS has no data set named 'nlt_no_such_set'"):
        data.load("tfds:nlt_no_such_set", data_dir=data_dir)
    with pytest.raises(DataError, match=r"tfds:nlt_tiny_photos/eight: .*config"):
        data.load("tfds:nlt_tiny_photos/eight", data_dir=data_dir)


def test_calibration_matches_evaluation_for_tfds_photos(data_dir: str) -> None:
    spec, n = "tfds:nlt_tiny_photos/four", 5
    raw, raw_info = data.load_raw(spec, "train", data_dir=data_dir, limit=n)
    reference = np.stack([data.preprocess_for_eval(x, 40, "lite", crop=True) for x, _ in raw.as_numpy_iterator()])
    sample = data.representative_dataset(spec, n, image_size=40, shuffle=False, data_dir=data_dir)
    np.testing.assert_array_equal(np.concatenate([x for (x,) in sample()]), reference)
    evaluation, info = data.load(spec, "train", image_size=40, batch_size=n, shuffle=False, limit=n, data_dir=data_dir)
    np.testing.assert_array_equal(next(evaluation.as_numpy_iterator())[0], reference)
    assert raw_info.crop and info.crop
