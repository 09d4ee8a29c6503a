"""load / representative_dataset behaviour common to every source."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import nlighten_tf.data as data
from nlighten_tf.data import DataError
from nlighten_tf.litert import runtime


def _batches(dataset: tf.data.Dataset, n: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    return list((dataset if n is None else dataset.take(n)).as_numpy_iterator())


def test_same_seed_same_batches_other_seed_other_order() -> None:
    def run(seed: int | None) -> list:
        return _batches(data.load("digits", "train", image_size=32, batch_size=16, seed=seed)[0], 3)

    first, again, other = run(7), run(7), run(8)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not all(np.array_equal(y1, y2) for (_, y1), (_, y2) in zip(first, other, strict=True))


def test_training_splits_shuffle_by_default_and_others_do_not() -> None:
    raw = np.concatenate([y for _, y in data.load_raw("digits", "train[:64]")[0].batch(64).as_numpy_iterator()])
    train = np.concatenate([y for _, y in _batches(data.load("digits", "train[:64]", image_size=32)[0])])
    assert sorted(train) == sorted(raw) and not np.array_equal(train, raw)

    test_raw = next(data.load_raw("digits", "test[:64]")[0].batch(64).as_numpy_iterator())[1]
    for seed in (1, 2):
        test = np.concatenate([y for _, y in _batches(data.load("digits", "test[:64]", image_size=32, seed=seed)[0])])
        np.testing.assert_array_equal(test, test_raw)
    # Each epoch is a new order: the same dataset object iterated twice.
    dataset, _ = data.load("digits", "train", image_size=32, batch_size=64)
    assert not np.array_equal(_batches(dataset, 1)[0][1], _batches(dataset, 1)[0][1])


@pytest.mark.parametrize("source", ["digits", "photos"])
def test_calibration_and_evaluation_preprocessing_are_identical(source: str, photo_tree: dict) -> None:
    spec, size, scheme = ("digits", 32, "lite") if source == "digits" else (f"folder:{photo_tree['root']}", 48, "imagenet")
    n = 6
    raw_dataset, raw_info = data.load_raw(spec, "train", limit=n)
    reference = np.stack(
        [data.preprocess_for_eval(image, size, scheme, crop=raw_info.crop) for image, _ in raw_dataset.as_numpy_iterator()]
    )
    evaluation, info = data.load(spec, "train", image_size=size, batch_size=n, preprocessing=scheme, shuffle=False, limit=n)
    calibration = data.representative_dataset(spec, n, image_size=size, preprocessing=scheme, shuffle=False)
    calibrated = [example for (example,) in calibration()]
    assert len(calibrated) == n and all(c.shape == (1, size, size, 3) and c.dtype == np.float32 for c in calibrated)
    np.testing.assert_array_equal(np.concatenate(calibrated), reference)
    np.testing.assert_array_equal(_batches(evaluation)[0][0], reference)
    assert info.crop is (source == "photos")


def test_representative_dataset_is_a_repeatable_seeded_sample() -> None:
    sample = data.representative_dataset("digits", 5, image_size=32, seed=3)
    first, second = [x for (x,) in sample()], [x for (x,) in sample()]
    assert len(first) == 5
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    head = [x for (x,) in data.representative_dataset("digits", 5, image_size=32, shuffle=False)()]
    assert not all(np.array_equal(a, b) for a, b in zip(first, head, strict=True))
    with pytest.raises(DataError, match=r"asked for 2000 examples but digits split 'train' has 1437"):
        data.representative_dataset("digits", 2000, image_size=32)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the converter: "Statistics for quantized inputs were expected"
def test_representative_dataset_feeds_the_int8_converter() -> None:
    model = tf_keras.Sequential(
        [
            tf_keras.layers.Input((32, 32, 3)),
            tf_keras.layers.Conv2D(4, 3, strides=2, activation="relu"),
            tf_keras.layers.GlobalAveragePooling2D(),
            tf_keras.layers.Dense(10),
        ]
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = data.representative_dataset("digits", 8, image_size=32)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    interpreter = runtime.load(converter.convert(), xnnpack=False).interpreter
    scale, zero_point = interpreter.get_input_details()[0]["quantization"]
    # Calibrated on lite-normalised inputs: the input range is about [-1, 1].
    assert (-128 - zero_point) * scale == pytest.approx(-127 / 128, abs=0.05)
    assert (127 - zero_point) * scale == pytest.approx(1.0, abs=0.05)


def test_info_and_label_options() -> None:
    dataset, info = data.load("digits", "test", image_size=32, batch_size=100, one_hot=True, limit=250)
    assert (info.num_examples, info.batch_size, info.steps_per_epoch, info.one_hot) == (250, 100, 3, True)
    _, labels = _batches(dataset, 1)[0]
    assert labels.shape == (100, 10) and labels.dtype == np.float32 and np.all(labels.sum(axis=1) == 1)


def test_cache_does_not_change_the_data(photo_tree: dict) -> None:
    spec = f"folder:{photo_tree['root']}"
    plain, _ = data.load(spec, image_size=32, batch_size=4, seed=5)
    cached, _ = data.load(spec, image_size=32, batch_size=4, seed=5, cache=True)
    plain_labels = np.concatenate([y for _, y in _batches(plain)])
    for _ in range(2):  # the second epoch reads from the cache
        cached_labels = np.concatenate([y for _, y in _batches(cached)])
        assert sorted(cached_labels) == sorted(plain_labels)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(image_size=31), "image_size 31 is below the minimum 32"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(limit=0), "limit must be a positive number"),
        (dict(model="no-such-model"), "no-such-model"),
        (dict(split="validation"), "split 'validation' does not exist in digits"),
    ],
)
def test_bad_arguments_get_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as raised:
        data.load("digits", **{"image_size": 32, **options})
    assert "\n" not in str(raised.value)


def test_model_name_selects_the_registry_scheme() -> None:
    from nlighten_tf.models import registry

    by_scheme = {registry.info(name).preprocessing: name for name in reversed(registry.names())}
    if "imagenet" not in by_scheme:
        pytest.skip("no registered model uses the imagenet scheme")
    dataset, info = data.load("digits", "test", image_size=32, batch_size=360, model=by_scheme["imagenet"])
    assert info.preprocessing == "imagenet"
    images = next(dataset.as_numpy_iterator())[0]
    # Black background under ImageNet statistics: -mean/std per channel.
    np.testing.assert_allclose(images.min(axis=(0, 1, 2)), [-2.1179, -2.0357, -1.8044], atol=1e-4)
    _, overridden = data.load("digits", "test", image_size=32, model=by_scheme["imagenet"], preprocessing="unit")
    assert overridden.preprocessing == "unit"
