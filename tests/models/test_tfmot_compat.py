"""Every family must be wrappable whole by TFMOT's pruning, clustering and QAT APIs."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from nlighten_tf import models
from nlighten_tf.optimize import quantize

FAMILY_REPRESENTATIVES = {
    "efficientnet_lite0": {},
    "efficientnet_b0": {},
    "efficientnet_edgetpu_s": {},
    "mobilenet_v2": {"width_multiplier": 0.5},
}
SHAPE = (64, 64, 3)


def small(name):
    return models.build(name, input_shape=SHAPE, num_classes=10, **FAMILY_REPRESENTATIVES[name])


def run(model):
    return model(np.random.RandomState(0).uniform(-1, 1, (2, *SHAPE)).astype(np.float32)).numpy()


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_prune_low_magnitude_wraps_every_prunable_layer(name):
    model = small(name)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    wrapped = [layer for layer in pruned.layers if isinstance(layer, PruneLowMagnitude)]
    assert len(wrapped) == len(model.layers) - 1  # every layer but the input
    assert run(pruned).shape == (2, 10)


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_cluster_weights_wraps_whole_model(name):
    clustered = tfmot.clustering.keras.cluster_weights(
        small(name),
        number_of_clusters=8,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR,
    )
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    kernel = stripped.get_layer("predictions").kernel.numpy()
    assert len(np.unique(kernel)) <= 8


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_edgetpu_s", "mobilenet_v2"])
def test_quantize_model_wraps_whole_model(name):
    quantized = tfmot.quantization.keras.quantize_model(small(name))
    assert run(quantized).shape == (2, 10)


def test_b_models_need_the_multiply_quantize_config():
    # TFMOT's default registry has no config for Multiply (the SE gate). If this starts passing,
    # nlighten_tf.optimize.quantize can drop its extra config.
    with pytest.raises(RuntimeError, match="Multiply"):
        tfmot.quantization.keras.quantize_model(small("efficientnet_b0"))
    quantized = quantize.quantize_model(small("efficientnet_b0"))
    multiplies = [
        layer for layer in quantized.layers
        if isinstance(layer, tfmot.quantization.keras.QuantizeWrapperV2) and layer.layer.__class__.__name__ == "Multiply"
    ]
    assert len(multiplies) == 16
    assert run(quantized).shape == (2, 10)
