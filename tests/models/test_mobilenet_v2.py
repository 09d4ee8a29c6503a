import pytest

from nlighten_tf import models


def test_width_multiplier_scales_channels_but_keeps_1280_head_below_one():
    model = models.build("mobilenet_v2", input_shape=(64, 64, 3), width_multiplier=0.5, num_classes=10)
    assert model.get_layer("stem_conv").filters == 16
    assert model.get_layer("block16_project_conv").filters == 160
    assert model.get_layer("top_conv").filters == 1280
    wide = models.build("mobilenet_v2", input_shape=(64, 64, 3), width_multiplier=1.4)
    assert wide.get_layer("top_conv").filters == 1792


def test_batchnorm_momentum_is_short_training_safe():
    # Keras' 0.999 leaves moving statistics at their initial values after short trainings.
    model = models.build("mobilenet_v2", input_shape=(64, 64, 3))
    momenta = {layer.momentum for layer in model.layers if layer.name.endswith("_bn")}
    assert momenta == {0.99}


def test_non_positive_width_is_refused():
    with pytest.raises(ValueError, match="width_multiplier"):
        models.build("mobilenet_v2", input_shape=(64, 64, 3), width_multiplier=0)
