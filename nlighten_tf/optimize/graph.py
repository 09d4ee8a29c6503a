"""Re-tracing a functional Keras graph with some layers replaced by sub-graphs.

`clone_model` can only swap one layer for one layer; factorisation (one layer -> two) and
channel surgery need to rebuild the graph. We replay the model's own config (its public
record of which layer feeds which) calling the existing layer objects, except where a
replacement function is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import tf_keras

Replacement = Callable[[object], object]  # input tensor(s) -> output tensor


def rebuild(model: tf_keras.Model, replacements: Mapping[str, Replacement], name: str | None = None) -> tf_keras.Model:
    """A new functional model; layers not in `replacements` are reused (weights shared)."""
    config = model.get_config()
    if "layers" not in config or "input_layers" not in config:
        raise ValueError(f"model {model.name!r} is not a functional model: cannot rebuild its graph")
    tensors: dict[tuple[str, int], object] = {}
    for layer_config in config["layers"]:
        layer_name = layer_config["name"]
        layer = model.get_layer(layer_name)
        nodes = layer_config["inbound_nodes"]
        if not nodes:  # an input layer
            batch_shape = layer_config["config"]["batch_input_shape"]
            tensors[(layer_name, 0)] = tf_keras.Input(batch_shape=batch_shape, name=layer_name)
            continue
        if len(nodes) > 1:
            raise ValueError(f"layer {layer_name!r} is called more than once; shared layers are not supported")
        inbound = _node_entries(nodes[0])
        inputs = [_output(tensors, entry) for entry in inbound]
        kwargs = inbound[0][3] if len(inbound[0]) > 3 else {}
        arguments = inputs[0] if len(inputs) == 1 else inputs
        if layer_name in replacements:
            tensors[(layer_name, 0)] = replacements[layer_name](arguments)
        else:
            tensors[(layer_name, 0)] = layer(arguments, **kwargs)
    outputs = [_output(tensors, entry) for entry in config["output_layers"]]
    inputs = [_output(tensors, entry) for entry in config["input_layers"]]
    return tf_keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name or model.name,
    )


def _node_entries(node):
    # tf_keras serialises a node as a list of [layer_name, node_index, tensor_index, kwargs].
    if isinstance(node, dict):  # newer format: {"args": ..., "kwargs": ...}
        raise ValueError("unsupported Keras config format (Keras 3); nlighten_tf needs tf_keras models")
    return node


def _output(tensors, entry):
    layer_name, node_index, tensor_index = entry[0], entry[1], entry[2]
    value = tensors[(layer_name, node_index)]
    if isinstance(value, list | tuple):
        return value[tensor_index]
    return value
