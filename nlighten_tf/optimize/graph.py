"""Re-tracing a functional Keras graph with some layers replaced by sub-graphs.

`clone_model` can only swap one layer for one layer; factorisation (one layer -> two) and
channel surgery need to rebuild the graph. We replay the model's own config (its public
record of which layer feeds which) calling the existing layer objects, except where a
replacement function is given.

`nodes` is that record as a list (one home for reading it), `trace` replays it with any
per-layer call: symbolic `Input`s for `rebuild`, real tensors to read (or differentiate)
intermediate activations eagerly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tf_keras

Replacement = Callable[[object], object]  # input tensor(s) -> output tensor
Entry = tuple[str, int, int]  # (layer name, node index, tensor index)


@dataclasses.dataclass(frozen=True)
class Node:
    """One layer call of a functional model, in the model's topological order."""

    name: str
    layer: Any  # tf_keras layer
    inbound: tuple[Entry, ...]  # empty for an input layer
    kwargs: dict[str, Any]
    batch_input_shape: tuple | None = None  # input layers only

    @property
    def is_input(self) -> bool:
        return not self.inbound

    @property
    def inbound_names(self) -> tuple[str, ...]:
        return tuple(entry[0] for entry in self.inbound)


@dataclasses.dataclass(frozen=True)
class Topology:
    nodes: tuple[Node, ...]
    inputs: tuple[Entry, ...]
    outputs: tuple[Entry, ...]


def topology(model: tf_keras.Model) -> Topology:
    """The model's layer calls in order, read from its config. Raises ValueError for models
    that are not functional or that call one layer more than once."""
    config = model.get_config()
    if "layers" not in config or "input_layers" not in config:
        raise ValueError(f"model {model.name!r} is not a functional model: cannot rebuild its graph")
    nodes = []
    for layer_config in config["layers"]:
        layer_name = layer_config["name"]
        layer = model.get_layer(layer_name)
        inbound_nodes = layer_config["inbound_nodes"]
        if not inbound_nodes:  # an input layer
            shape = tuple(layer_config["config"]["batch_input_shape"])
            nodes.append(Node(layer_name, layer, (), {}, shape))
            continue
        if len(inbound_nodes) > 1:
            raise ValueError(f"layer {layer_name!r} is called more than once; shared layers are not supported")
        inbound = _node_entries(inbound_nodes[0])
        kwargs = inbound[0][3] if len(inbound[0]) > 3 else {}
        nodes.append(Node(layer_name, layer, tuple((e[0], e[1], e[2]) for e in inbound), dict(kwargs)))
    entries = lambda key: tuple((e[0], e[1], e[2]) for e in config[key])  # noqa: E731
    return Topology(tuple(nodes), entries("input_layers"), entries("output_layers"))


def nodes(model: tf_keras.Model) -> tuple[Node, ...]:
    return topology(model).nodes


@dataclasses.dataclass
class Trace:
    inputs: list
    outputs: list
    tensors: dict[str, object]  # layer name -> its output


def trace(
    model: tf_keras.Model,
    make_input: Callable[[Node], object],
    call: Callable[[Node, object], object],
    graph: Topology | None = None,
) -> Trace:
    """Replays the graph: `make_input(node)` for input layers, `call(node, arguments)` for the
    others (`arguments` is one tensor, or a list for multi-input layers)."""
    graph = graph or topology(model)
    tensors: dict[tuple[str, int], object] = {}
    for node in graph.nodes:
        if node.is_input:
            tensors[(node.name, 0)] = make_input(node)
            continue
        inputs = [_output(tensors, entry) for entry in node.inbound]
        tensors[(node.name, 0)] = call(node, inputs[0] if len(inputs) == 1 else inputs)
    return Trace(
        inputs=[_output(tensors, entry) for entry in graph.inputs],
        outputs=[_output(tensors, entry) for entry in graph.outputs],
        tensors={name: value for (name, _), value in tensors.items()},
    )


def rebuild(model: tf_keras.Model, replacements: Mapping[str, Replacement], name: str | None = None) -> tf_keras.Model:
    """A new functional model; layers not in `replacements` are reused (weights shared)."""

    def call(node: Node, arguments):
        if node.name in replacements:
            return replacements[node.name](arguments)
        return node.layer(arguments, **node.kwargs)

    traced = trace(model, lambda node: tf_keras.Input(batch_shape=node.batch_input_shape, name=node.name), call)
    return _model(traced.inputs, traced.outputs, name or model.name)


def run(model: tf_keras.Model, inputs: Sequence[object] | object, training: bool = False) -> Trace:
    """Runs the model eagerly layer by layer on real tensors, keeping every intermediate output
    (under a GradientTape, the tape sees them all: gradients with respect to activations)."""
    values = list(inputs) if isinstance(inputs, list | tuple) else [inputs]
    graph = topology(model)
    by_name = {entry[0]: value for entry, value in zip(graph.inputs, values, strict=True)}

    def call(node: Node, arguments):
        return node.layer(arguments, training=training, **node.kwargs)

    return trace(model, lambda node: by_name[node.name], call, graph)


def _model(inputs, outputs, name):
    return tf_keras.Model(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs[0] if len(outputs) == 1 else outputs,
        name=name,
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
