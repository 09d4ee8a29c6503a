import pytest
import tf_keras

from nlighten_tf import models
from nlighten_tf.models import registry

ALL_FAMILIES = {"efficientnet", "efficientnet_lite", "efficientnet_edgetpu", "mobilenet_v2"}


def test_every_family_is_registered():
    families = {models.info(n).family for n in models.names()}
    assert families == ALL_FAMILIES
    assert len(models.names("efficientnet")) == 8
    assert len(models.names("efficientnet_lite")) == 5
    assert len(models.names("efficientnet_edgetpu")) == 3


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'efficientnet_lite9'.*efficientnet_lite0"):
        models.build("efficientnet_lite9")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"unknown option\(s\) width_multiplier.*valid options: .*sparse_ready"):
        models.build("efficientnet_lite0", width_multiplier=0.5)


@pytest.mark.parametrize(
    "shape, message",
    [((16, 16, 3), "too small"), ((64, 31, 3), "too small"), ((64, 64, 1), "3 channels"), ((64, 64), "height, width, 3")],
)
def test_impossible_input_shapes_are_refused(shape, message):
    with pytest.raises(ValueError, match=message):
        models.build("mobilenet_v2", input_shape=shape)


def test_builds_plain_tf_keras_models_at_any_resolution():
    model = models.build("efficientnet_lite0", input_shape=(33, 47, 3), num_classes=7)
    assert isinstance(model, tf_keras.Model)
    assert model.output_shape == (None, 7)
    assert model.input_shape == (None, 33, 47, 3)


def test_default_resolution_and_classes_follow_the_reference():
    assert models.info("efficientnet_lite3").default_resolution == 280
    assert models.info("efficientnet_lite4").default_resolution == 300
    assert models.info("efficientnet_edgetpu_m").default_num_classes == 1001
    assert models.info("efficientnet_lite0").preprocessing == "lite"
    assert models.info("efficientnet_b0").preprocessing == "imagenet"


def test_registering_a_name_twice_fails():
    info = models.info("mobilenet_v2")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(info)
