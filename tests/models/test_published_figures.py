"""Parameter and MAdds counts of the built graphs against the published figures (docs/facts.md)."""

import pytest
import tf_keras

from nlighten_tf import models

# B-model figures are published rounded to 2-3 significant digits.
TOLERANCE = {"efficientnet": 0.03, "efficientnet_lite": 0.005, "efficientnet_edgetpu": 0.005, "mobilenet_v2": 0.005}


@pytest.mark.parametrize("name", models.names())
def test_parameter_count_matches_published(name):
    info = models.info(name)
    model = models.build(name, num_classes=info.published.classes)
    params = models.count_params(model)
    assert abs(params / info.published.params - 1) <= TOLERANCE[info.family], (
        f"{name}: {params:,} params vs published {info.published.params:,.0f}"
    )


@pytest.mark.parametrize(
    "name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite3",
             "efficientnet_lite4", "efficientnet_b0", "mobilenet_v2"]
)
def test_madds_match_published(name):
    info = models.info(name)
    madds = models.count_madds(models.build(name))
    assert abs(madds / info.published.madds - 1) <= 0.10, f"{name}: {madds / 1e9:.3f}B MAdds"


def test_madds_counter_against_hand_computed_layers():
    inputs = tf_keras.Input((16, 16, 8))
    x = tf_keras.layers.Conv2D(16, 3, padding="same")(inputs)  # 16*16 * 3*3*8 * 16
    x = tf_keras.layers.DepthwiseConv2D(5, strides=2, padding="same")(x)  # 8*8 * 5*5 * 16
    x = tf_keras.layers.Conv2D(12, 1, groups=4)(x)  # 8*8 * 16/4 * 12
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    x = tf_keras.layers.Dense(10)(x)  # 12 * 10
    model = tf_keras.Model(inputs, x)
    expected = 16 * 16 * 9 * 8 * 16 + 8 * 8 * 25 * 16 + 8 * 8 * 4 * 12 + 12 * 10
    assert models.count_madds(model) == expected


def test_parameter_counter_excludes_batchnorm_statistics():
    model = tf_keras.Sequential([tf_keras.Input((4, 4, 3)), tf_keras.layers.BatchNormalization()])
    assert models.count_params(model) == 6
    assert models.count_params(model, trainable_only=False) == 12
