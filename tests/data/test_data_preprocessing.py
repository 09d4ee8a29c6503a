import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from nlighten_tf.data import DataError, preprocess_for_eval, resolve_scheme
from nlighten_tf.data.preprocessing import SCHEMES, center_crop_and_resize, normalize


def test_lite_scheme_is_x_minus_127_over_128() -> None:
    pixels = tf.constant([[[0, 127, 255]]], tf.uint8)[..., tf.newaxis] * tf.ones([1, 1, 1, 3], tf.uint8)
    out = normalize(pixels, "lite").numpy()[0, :, :, 0]
    np.testing.assert_allclose(out, [[-127 / 128, 0.0, 1.0]])


def test_every_scheme_maps_the_pixel_range_to_known_bounds() -> None:
    bounds = {"lite": (-127 / 128, 1.0), "mobilenet": (-1.0, 1.0), "unit": (0.0, 1.0)}
    extremes = tf.constant([[[0, 0, 0], [255, 255, 255]]], tf.uint8)
    for scheme, (low, high) in bounds.items():
        out = normalize(extremes, scheme).numpy()
        np.testing.assert_allclose(out[0, 0], [low] * 3, atol=1e-6)
        np.testing.assert_allclose(out[0, 1], [high] * 3, atol=1e-6)
    # ImageNet statistics: (0 - mean) / std per channel.
    np.testing.assert_allclose(normalize(extremes, "imagenet").numpy()[0, 0], [-2.1179, -2.0357, -1.8044], atol=1e-4)
    assert set(SCHEMES) == {"lite", "imagenet", "mobilenet", "unit"}


def test_centre_crop_takes_the_reference_fraction() -> None:
    # camera() framed by a 37-pixel black border: at 224 the reference crop keeps 224/256 of
    # the 586-pixel side, i.e. exactly the 512-pixel photo, so crop+resize of the framed
    # image equals a plain resize of the photo.
    camera = skdata.camera()[..., np.newaxis]
    framed = np.pad(camera, ((37, 37), (37, 37), (0, 0)))
    cropped = preprocess_for_eval(framed, 224, "unit", crop=True)
    plain = preprocess_for_eval(camera, 224, "unit", crop=False)
    np.testing.assert_array_equal(cropped, plain)
    # Without the crop the border shows up as black edges.
    assert preprocess_for_eval(framed, 224, "unit", crop=False)[0, 0].max() == 0.0


def test_numpy_and_tensor_inputs_agree_and_grayscale_becomes_rgb() -> None:
    camera = skdata.camera()  # (H, W) grayscale
    as_numpy = preprocess_for_eval(camera, 64, "lite")
    as_tensor = preprocess_for_eval(tf.constant(camera[..., np.newaxis]), 64, "lite")
    assert isinstance(as_numpy, np.ndarray) and tf.is_tensor(as_tensor)
    assert as_numpy.shape == (64, 64, 3) and as_numpy.dtype == np.float32
    np.testing.assert_array_equal(as_numpy, as_tensor.numpy())
    np.testing.assert_array_equal(as_numpy[..., 0], as_numpy[..., 2])


def test_a_batch_is_preprocessed_like_its_images_one_by_one() -> None:
    photo = skdata.chelsea()
    batch = np.stack([photo, photo[::-1], photo[:, ::-1]])
    together = preprocess_for_eval(batch, 48, "imagenet", crop=True)
    alone = np.stack([preprocess_for_eval(image, 48, "imagenet", crop=True) for image in batch])
    np.testing.assert_array_equal(together, alone)
    # And the reference function itself, for a single image.
    np.testing.assert_allclose(
        center_crop_and_resize(tf.constant(photo), 48).numpy() / 255,
        preprocess_for_eval(photo, 48, "unit", crop=True),
        rtol=1e-6,
    )


def test_bad_inputs_are_refused_with_the_fix() -> None:
    with pytest.raises(DataError, match="below the minimum 32"):
        preprocess_for_eval(skdata.camera(), 31)
    with pytest.raises(DataError, match="1 or 3 channels"):
        preprocess_for_eval(np.zeros((40, 40, 4), np.uint8), 32)
    with pytest.raises(DataError, match=r"unknown preprocessing 'caffe'; valid: lite, imagenet"):
        preprocess_for_eval(skdata.camera(), 32, "caffe")


def test_scheme_resolution_prefers_explicit_then_model_then_lite() -> None:
    assert resolve_scheme() == "lite"
    assert resolve_scheme("imagenet", model="no-such-model") == "imagenet"  # explicit override wins
    with pytest.raises(DataError, match="no-such-model"):
        resolve_scheme(model="no-such-model")


def test_registered_models_resolve_to_their_registry_scheme() -> None:
    from nlighten_tf.models import registry

    try:
        names = registry.names()
    except ImportError as error:  # families still being written
        pytest.skip(f"model registry not importable yet: {error}")
    if not names:
        pytest.skip("no models registered yet")
    for name in names:
        assert resolve_scheme(model=name) == registry.info(name).preprocessing
        assert registry.info(name).preprocessing in SCHEMES
