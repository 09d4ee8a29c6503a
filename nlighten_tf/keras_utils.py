"""Layer introspection shared by the model zoo and the optimization techniques."""

from __future__ import annotations

import tf_keras
from tf_keras import layers


def unwrap(layer: layers.Layer) -> layers.Layer:
    """The Keras layer inside TFMOT wrappers (pruning, clustering, quantization)."""
    while hasattr(layer, "layer") and isinstance(layer.layer, layers.Layer):
        layer = layer.layer
    return layer


def kernel_of(layer: layers.Layer):
    """The weight tensor pruning and clustering act on (conv, depthwise or dense kernel), or None."""
    layer = unwrap(layer)
    if isinstance(layer, layers.DepthwiseConv2D):
        return layer.depthwise_kernel
    if isinstance(layer, layers.Conv2D | layers.Dense):
        return layer.kernel
    return None


def copy_model(model: tf_keras.Model) -> tf_keras.Model:
    """An independent copy (same architecture and weights, no shared layers or variables)."""
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
