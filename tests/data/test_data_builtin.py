"""The built-in real data sets: scikit-learn digits and Debian's Fashion-MNIST."""

import collections
import gzip
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

import nlighten_tf.data as data
from nlighten_tf.data import DataError

FASHION_MNIST_DIR = os.environ.get("NLIGHTEN_TF_FASHION_MNIST_DIR") or "/usr/share/datasets/fashion-mnist"
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isfile(os.path.join(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason=f"Fashion-MNIST IDX files absent from {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)


def test_digits_batches_are_lite_normalised_rgb() -> None:
    dataset, info = data.load("digits", "test", image_size=32, batch_size=64)
    assert (info.num_examples, info.num_classes, info.preprocessing, info.crop) == (360, 10, "lite", False)
    assert info.class_names == tuple("0123456789")
    images = np.concatenate([x for x, _ in dataset.as_numpy_iterator()])
    labels = np.concatenate([y for _, y in dataset.as_numpy_iterator()])
    assert images.shape == (360, 32, 32, 3) and images.dtype == np.float32 and labels.dtype == np.int64
    assert images.min() >= -127 / 128 and images.max() <= 128 / 128
    # Real digits: dark backgrounds (-127/128) and bright strokes reaching 1.0.
    assert images.min() == pytest.approx(-127 / 128) and images.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])  # grayscale replicated to RGB
    assert sorted(collections.Counter(labels.tolist())) == list(range(10))


def test_digits_split_is_a_fixed_partition_of_the_real_images_with_their_labels() -> None:
    bunch = load_digits()
    scaled = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    labels_of = collections.defaultdict(set)
    for image, target in zip(scaled, bunch.target, strict=True):
        labels_of[image.tobytes()].add(int(target))

    seen = collections.Counter()
    for split, count in (("train", 1437), ("test", 360)):
        dataset, info = data.load_raw("digits", split)
        assert info.num_examples == count
        examples = list(dataset.as_numpy_iterator())
        assert len(examples) == count
        for image, label in examples:
            assert image.shape == (8, 8, 1) and image.dtype == np.uint8
            assert int(label) in labels_of[image[..., 0].tobytes()]
            seen[image[..., 0].tobytes()] += 1
    assert seen == collections.Counter(image.tobytes() for image in scaled)  # disjoint, complete


@needs_fashion_mnist
def test_fashion_mnist_reads_the_real_idx_files() -> None:
    train, train_info = data.load_raw("fashion_mnist", "train")
    assert train_info.num_examples == 60_000 and train_info.source.endswith(FASHION_MNIST_DIR)
    assert train_info.class_names[9] == "Ankle boot" and train_info.class_names[0] == "T-shirt/top"
    labels = next(train.map(lambda image, label: label).batch(60_000).as_numpy_iterator())
    assert np.bincount(labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced

    test, test_info = data.load_raw("fashion_mnist", "test", limit=8)
    assert test_info.num_examples == 8
    images, labels = zip(*test.as_numpy_iterator(), strict=True)
    # The published first test labels: ankle boot, pullover, trouser, trouser, shirt, ...
    assert [test_info.class_names[i] for i in labels[:5]] == ["Ankle boot", "Pullover", "Trouser", "Trouser", "Shirt"]
    assert images[0].shape == (28, 28, 1) and images[0].dtype == np.uint8 and images[0].max() > 200


@needs_fashion_mnist
def test_fashion_mnist_is_resized_not_cropped() -> None:
    dataset, info = data.load("fashion_mnist", "test[:10]", image_size=56, batch_size=10, preprocessing="unit")
    assert info.crop is False and info.num_examples == 10
    images = next(iter(dataset))[0].numpy()
    raw = np.stack([x for x, _ in data.load_raw("fashion_mnist", "test[:10]")[0].as_numpy_iterator()])
    # A plain resize of the whole 28x28 image, no crop.
    np.testing.assert_allclose(images, data.preprocess_for_eval(raw, 56, "unit"), atol=0)
    assert images.shape == (10, 56, 56, 3) and images[..., 0].max() <= 1.0 and images.min() >= 0.0


def test_fashion_mnist_absent_and_offline_names_both_ways_to_get_it(no_fashion_mnist: str) -> None:
    with pytest.raises(DataError) as raised:
        data.load("fashion_mnist", image_size=32, data_dir=no_fashion_mnist)
    message = str(raised.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "tfds:fashion_mnist" in message and "data_dir" in message and no_fashion_mnist in message
    assert "\n" not in message
    # Nothing was fetched into the TFDS directory.
    assert not any(name.endswith((".tfrecord", ".json", ".array_record")) for _, _, names in os.walk(no_fashion_mnist) for name in names)


def _write_idx(path: str, magic: int, array: np.ndarray) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def test_corrupt_idx_files_are_named(tmp_path, monkeypatch) -> None:
    images, labels = np.zeros((3, 28, 28)), np.array([1, 2, 3])
    for prefix in ("train", "t10k"):
        _write_idx(str(tmp_path / f"{prefix}-images-idx3-ubyte.gz"), 0x803, images)
        _write_idx(str(tmp_path / f"{prefix}-labels-idx1-ubyte.gz"), 0x801, labels)
    monkeypatch.setenv("NLIGHTEN_TF_FASHION_MNIST_DIR", str(tmp_path))
    _, info = data.load_raw("fashion_mnist", "test")  # the tiny well-formed files are read
    assert info.num_examples == 3

    bad_magic = tmp_path / "t10k-labels-idx1-ubyte.gz"
    _write_idx(str(bad_magic), 0x803, labels)
    with pytest.raises(DataError, match=f"{bad_magic} is corrupt .*magic"):
        data.load_raw("fashion_mnist", "test")

    truncated = tmp_path / "train-images-idx3-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:20])
    with pytest.raises(DataError, match=f"{truncated} is corrupt"):
        data.load_raw("fashion_mnist", "train")
