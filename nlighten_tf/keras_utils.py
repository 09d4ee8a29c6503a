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


def node_in_model(model: tf_keras.Model, node) -> bool:
    """Whether a Keras node (one call of a layer) belongs to `model`'s graph. Layer objects keep
    the nodes of every model they were called in (copies, rebuilt graphs), so counting a layer's
    calls or consumers must filter by model."""
    network_nodes = getattr(model, "_network_nodes", None)
    if not network_nodes:  # a subclassed model: its layers were called once
        return True
    layer = node.layer
    return f"{layer.name}_ib-{layer._inbound_nodes.index(node)}" in network_nodes


def calls_in(model: tf_keras.Model, layer) -> list[int]:
    """The node indices at which `model` calls `layer` (several for a shared layer)."""
    calls = [i for i, node in enumerate(layer.inbound_nodes) if node_in_model(model, node)]
    return calls or [0]
