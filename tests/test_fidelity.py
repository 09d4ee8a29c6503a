"""Fidelity against a float reference (top-1 agreement, output SNR) and the real reference images."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras

from nlighten_tf import fidelity
from nlighten_tf.data import reference_images
from nlighten_tf.data.errors import DataError
from nlighten_tf.export import tflite


def test_snr_and_agreement_are_computed_from_the_outputs():
    reference = np.array([[1.0, 0.0], [0.0, 2.0]])
    noisy = np.array([[0.0, 0.5], [0.0, 2.0]])  # noise power 1.25 on signal power 5: 6.02 dB
    result = fidelity.compare(reference, noisy)
    assert result["top1_agreement"] == 0.5
    assert result["snr_db"] == pytest.approx(10 * np.log10(5 / 1.25))
    assert result["max_abs_diff"] == 1.0
    assert fidelity.compare(reference, reference)["snr_db"] == float("inf")
    # Only the second row's reference is a clear decision (softmax top-1 0.79); the flat first row's
    # is 0.36.
    flat = np.array([[0.1, 0.0, 0.0], [0.0, 2.0, 0.0]])
    result = fidelity.compare(flat, np.array([[0.0, 0.1, 0.0], [0.0, 2.0, 0.0]]))
    assert result["top1_agreement"] == 0.5
    assert result["confident_examples"] == 1 and result["top1_agreement_confident"] == 1.0
    probabilities = np.array([[0.45, 0.55], [0.3, 0.7]])  # already probabilities: taken as they are
    assert fidelity.compare(probabilities, probabilities)["confident_examples"] == 2
    assert fidelity.compare(flat[:1], flat[:1])["top1_agreement_confident"] is None
    with pytest.raises(ValueError, match="cannot be compared"):
        fidelity.compare(reference, noisy[:1])


def test_reference_photos_are_real_square_crops_and_mirrors():
    crops = reference_images.photo_crops()
    per_photo = 2 * sum(len(positions) ** 2 for _, positions in reference_images.CROPS)
    assert len(crops) == per_photo * len(reference_images.PHOTOS) and reference_images.CROPS_PER_PHOTO == per_photo
    assert all(c.shape[0] == c.shape[1] and c.shape[2] == 3 and c.dtype == np.uint8 for c in crops)
    np.testing.assert_array_equal(crops[1], crops[0][:, ::-1])
    assert min(float(c.std()) for c in crops) > 1.0  # real content, not blank padding


def test_reference_images_mix_sources_and_preprocess(tmp_path):
    from skimage import data as skimage_data
    from skimage import io as skimage_io

    skimage_io.imsave(tmp_path / "cat.png", skimage_data.chelsea())
    images = reference_images.load(("photos", "digits"), per_set=5, folder=tmp_path)
    counts = images.counts()
    assert counts["digits"] == 5 and counts["folder"] == 1 and counts["photos"] == len(reference_images.photo_crops())
    inputs = images.preprocessed(32, "mobilenet")
    assert inputs.shape == (len(images.sources), 32, 32, 3) and inputs.dtype == np.float32
    assert -1.0 <= inputs.min() < inputs.max() <= 1.0
    with pytest.raises(DataError, match="no .jpg"):
        reference_images.load(("digits",), per_set=1, folder=tmp_path / "missing")
    with pytest.raises(DataError, match="unknown reference image sources"):
        reference_images.load(("imagenet",))


def test_an_int8_file_follows_its_float_file_closely_and_a_different_model_does_not(tmp_path):
    tf_keras.utils.set_random_seed(0)
    inputs_layer = tf_keras.Input((32, 32, 3))
    x = tf_keras.layers.Conv2D(8, 3, activation="relu")(inputs_layer)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs_layer, tf_keras.layers.Dense(10)(x))
    images = reference_images.load(("digits",), per_set=64).preprocessed(32, "mobilenet")
    tflite.export(model, tmp_path / "fp32.tflite", "fp32", sidecar=False)
    tflite.export(
        model, tmp_path / "int8.tflite", "int8_float_io", lambda: ([x[None]] for x in images[:32]), sidecar=False
    )
    tf_keras.utils.set_random_seed(1)
    other = tf_keras.models.clone_model(model)
    tflite.export(other, tmp_path / "other.tflite", "fp32", sidecar=False)
    result = fidelity.compare_files(
        tmp_path / "fp32.tflite", {"int8": tmp_path / "int8.tflite", "other": tmp_path / "other.tflite"}, images
    )
    assert result["int8"]["examples"] == 64
    assert result["int8"]["snr_db"] > 20 and result["int8"]["top1_agreement"] >= 0.9
    assert result["other"]["snr_db"] < 5 and result["other"]["top1_agreement"] < 0.5
