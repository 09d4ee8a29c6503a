"""Which channels of a functional Keras graph must be pruned together, and the surgery.

A *channel space* is born at a producer (a Conv2D's filters, a Dense layer's units) and is
carried unchanged by BatchNormalization, depthwise convolutions, activations, padding,
pooling, dropout and reshapes to (1, 1, C). Element-wise merges (a residual `Add`, the
squeeze-excite `Multiply`) force their inputs to share one space, so the spaces joined by
them form one *group*: removing channel i removes it from every producer of the group, every
layer carrying it, and every consumer reading it (a Conv2D's or Dense layer's input axis). A
`Concatenate` on the channel axis lays several groups side by side; its consumers see each
group at an offset. Groups touching the model's inputs or outputs, or a layer whose channel
semantics we do not know (Lambda, LayerNormalization, grouped or transposed convolutions,
softmax over channels, ...), are fixed, with the reason.

`slice_model` is the surgery: a new plain model of fresh layers with the kept channels'
weights copied (no masks, no wrappers). `zero_inputs` is its exact equivalent on the
unpruned model — the removed channels' contributions cut at every consumer — which the tests
use to prove the surgery exact and the sensitivity scan uses to measure pruning cheaply.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

import numpy as np
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import unwrap
from nlighten_tf.models.complexity import per_layer_madds
from nlighten_tf.optimize import graph as graph_lib


def _types(*names: str) -> tuple[type, ...]:
    return tuple(getattr(layers, n) for n in names if hasattr(layers, n))


# Layers that carry their input channels unchanged (no weights, no per-channel config).
CARRIERS = _types(
    "ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout2D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity", "ZeroPadding2D", "Cropping2D",
    "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "UpSampling2D",
)  # fmt: skip
MERGES = _types("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
CHANNEL_COUPLING_ACTIVATIONS = ("softmax", "log_softmax")


def stage_of(name: str) -> str:
    """'block2a_project_conv' -> 'block2', 'block12_expand_conv' -> 'block12', 'stem_conv' -> 'stem'."""
    match = re.match(r"[A-Za-z]+\d*", name)
    return match.group(0) if match else name


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels that are pruned together. `name` is the first producer in graph order."""

    name: str
    size: int
    producers: tuple[str, ...]  # Conv2D / Dense layers whose output channels these are
    members: tuple[str, ...]  # layers carrying the channels (BN, depthwise, activations, Add, ...)
    consumers: tuple[tuple[str, int], ...]  # (Conv2D/Dense reading them on its input axis, offset)
    taps: tuple[tuple[str, int], ...]  # (layer whose output a consumer reads, offset): where activations are seen
    fixed: str | None = None  # why these channels cannot be pruned (None: prunable)

    @property
    def prunable(self) -> bool:
        return self.fixed is None and self.size > 1

    @property
    def stage(self) -> str:
        return stage_of(self.name)

    def as_dict(self) -> dict:
        return {
            "size": self.size, "stage": self.stage, "producers": list(self.producers),
            "consumers": [c for c, _ in self.consumers], "fixed": self.fixed,
        }  # fmt: skip


Segment = tuple[str, int]  # (group name, channels): a tensor's channel axis is a list of segments


@dataclasses.dataclass(frozen=True)
class ChannelGraph:
    topology: graph_lib.Topology
    groups: dict[str, ChannelGroup]  # in graph order
    outputs: dict[str, tuple[Segment, ...]]  # layer -> the segments of its output channel axis
    inputs: dict[str, tuple[tuple[Segment, ...], ...]]  # layer -> segments of each of its inputs
    terms: tuple[CostTerm, ...]  # the cost model: see `cost`

    @property
    def prunable(self) -> dict[str, ChannelGroup]:
        return {name: g for name, g in self.groups.items() if g.prunable}

    def group_of_layer(self, layer_name: str) -> ChannelGroup:
        """The group of a layer's output channels; ValueError naming the layer if there is none."""
        if layer_name not in self.outputs:
            raise ValueError(
                f"no layer named {layer_name!r} in the model; prunable layers are e.g. "
                f"{', '.join(_sample(self.producer_names(), 8))}"
            )
        segments = self.outputs[layer_name]
        if len(segments) != 1:
            raise ValueError(
                f"layer {layer_name!r} outputs a concatenation of {len(segments)} channel groups "
                f"({', '.join(s[0] for s in segments)}): name one of those instead"
            )
        return self.groups[segments[0][0]]

    def producer_names(self) -> list[str]:
        return [p for g in self.prunable.values() for p in g.producers]

    def stages(self) -> list[str]:
        return list(dict.fromkeys(g.stage for g in self.prunable.values()))

    def sizes(self) -> dict[str, int]:
        return {name: g.size for name, g in self.groups.items()}

    def cost(self, counts: Mapping[str, int] | None = None) -> tuple[int, int]:
        """(MAdds, trainable parameters) of the model with `counts[group]` channels kept per
        group (the others whole), from the analysed model's per-layer MAdds and weight shapes.
        Equals `count_madds` / `count_params` of the model `slice_model` would build."""
        counts = counts or {}
        width = lambda segments: sum(counts.get(g, n) for g, n in segments)  # noqa: E731
        madds = 0.0
        params = 0
        for term in self.terms:
            inp, out = width(term.inputs), width(term.outputs)
            if term.madds:
                madds += term.madds * (out if term.depthwise else inp * out)
            for fixed, in_axes, out_axes in term.weights:
                params += fixed * inp**in_axes * out**out_axes
        return int(round(madds)), params


@dataclasses.dataclass(frozen=True)
class CostTerm:
    """One layer's MAdds and trainable parameters as functions of its channel widths:
    madds * in * out (madds * channels for depthwise), and per weight fixed * in^a * out^b."""

    inputs: tuple[Segment, ...]
    outputs: tuple[Segment, ...]
    madds: float
    depthwise: bool
    weights: tuple[tuple[int, int, int], ...]


def cost_terms(model, topology, outputs, inputs) -> tuple[CostTerm, ...]:
    madds = per_layer_madds(model)
    terms = []
    for node in topology.nodes:
        if node.is_input:
            continue
        layer = node.layer
        ins, outs = inputs[node.name][0], outputs[node.name]
        depthwise = isinstance(layer, layers.DepthwiseConv2D)
        base = float(madds.get(node.name, 0))
        if base:
            base /= width_full(outs) if depthwise else width_full(ins) * width_full(outs)
        weights = []
        for weight in layer.trainable_weights:
            shape = list(weight.shape)
            axes = channel_axes(layer, weight)
            for axis in axes:
                shape[axis] = 1
            roles = list(axes.values())
            weights.append((int(np.prod(shape)), roles.count("in"), roles.count("out")))
        if base or weights:
            terms.append(CostTerm(ins, outs, base, depthwise, tuple(weights)))
    return tuple(terms)


def width_full(segments: Iterable[Segment]) -> int:
    return sum(n for _, n in segments)


def channel_axes(layer: layers.Layer, weight) -> dict[int, str]:
    """Which axes of one of `layer`'s weights index its input ('in') or output ('out') channels."""
    role = weight.name.split("/")[-1].split(":")[0]
    if type(layer) is layers.Conv2D:
        return {2: "in", 3: "out"} if role == "kernel" else {0: "out"}
    if isinstance(layer, layers.DepthwiseConv2D):
        return {2: "in"} if role == "depthwise_kernel" else {0: "out"}
    if type(layer) is layers.Dense:
        return {0: "in", 1: "out"} if role == "kernel" else {0: "out"}
    if isinstance(layer, layers.BatchNormalization):
        return {0: "out"}
    return {}


class _Spaces:
    """Union-find over channel spaces, remembering sizes, producers and why a space is fixed."""

    def __init__(self):
        self.parent: list[int] = []
        self.size: list[int] = []
        self.fixed: dict[int, str] = {}
        self.producers: dict[int, list[str]] = {}

    def new(self, size: int, producer: str | None = None, fixed: str | None = None) -> int:
        index = len(self.parent)
        self.parent.append(index)
        self.size.append(int(size))
        self.producers[index] = [producer] if producer else []
        if fixed:
            self.fixed[index] = fixed
        return index

    def find(self, index: int) -> int:
        while self.parent[index] != index:
            self.parent[index] = self.parent[self.parent[index]]
            index = self.parent[index]
        return index

    def fix(self, index: int, reason: str) -> None:
        self.fixed.setdefault(self.find(index), reason)

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if a > b:
            a, b = b, a
        self.parent[b] = a
        self.producers[a] += self.producers.pop(b)
        if b in self.fixed:
            self.fixed.setdefault(a, self.fixed.pop(b))


def analyze(model: tf_keras.Model) -> ChannelGraph:
    """The channel groups of a plain functional model (raises ValueError for TFMOT-wrapped ones:
    channel pruning comes before unstructured pruning, clustering and QAT)."""
    topology = graph_lib.topology(model)
    for node in topology.nodes:
        if unwrap(node.layer) is not node.layer or isinstance(node.layer, tf_keras.Model):
            kind = "a TFMOT wrapper" if unwrap(node.layer) is not node.layer else "a nested model"
            raise ValueError(
                f"layer {node.name!r} is {kind}: channel pruning needs a plain functional model of standard "
                "layers (run it before unstructured pruning, clustering and QAT, or strip the wrappers)"
            )
    spaces = _Spaces()
    descs: dict[str, list[int]] = {}  # layer -> output channel spaces
    input_descs: dict[str, list[list[int]]] = {}
    consumers: list[tuple[str, str, list[int]]] = []  # (consumer, inbound layer, its spaces)

    def fix_all(desc_list, reason):
        for desc in desc_list:
            for space in desc:
                spaces.fix(space, reason)

    for node in topology.nodes:
        layer = node.layer
        if node.is_input:
            descs[node.name] = [spaces.new(node.batch_input_shape[-1], fixed=f"model input {node.name!r}")]
            input_descs[node.name] = [[]]
            continue
        ins = [descs[name] for name in node.inbound_names]
        input_descs[node.name] = ins
        out_channels = _out_channels(layer)
        kind = _kind(layer, ins, spaces)
        if kind == "producer":
            consumers.append((node.name, node.inbound_names[0], ins[0]))
            descs[node.name] = [spaces.new(out_channels, producer=node.name)]
        elif kind == "carrier":
            descs[node.name] = list(ins[0])
        elif kind == "merge":
            first = ins[0]
            for other in ins[1:]:
                if [spaces.size[s] for s in other] == [spaces.size[s] for s in first]:
                    for a, b in zip(first, other, strict=True):
                        spaces.union(a, b)
                else:  # broadcasting across differently split channel axes: keep them whole
                    fix_all(ins, f"{type(layer).__name__} {node.name!r} joins differently split channels")
            descs[node.name] = list(first)
        elif kind == "concat":
            descs[node.name] = [space for desc in ins for space in desc]
        else:
            fix_all(ins, f"{type(layer).__name__} {node.name!r}: {kind}")
            descs[node.name] = [spaces.new(out_channels, fixed=f"output of {type(layer).__name__} {node.name!r}")]
    for entry in topology.outputs:
        fix_all([descs[entry[0]]], f"model output {entry[0]!r}")
    return _finish(model, topology, spaces, descs, input_descs, consumers)


def _out_channels(layer) -> int:
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return int(shape[-1])


def _kind(layer, ins, spaces: _Spaces) -> str:
    """'producer', 'carrier', 'merge', 'concat', or why the layer fixes its channels."""
    width = sum(spaces.size[s] for s in ins[0])
    if type(layer) is layers.Conv2D:
        return "producer" if layer.groups == 1 else f"grouped convolution (groups={layer.groups})"
    if type(layer) is layers.Dense:
        return "producer"
    if isinstance(layer, layers.DepthwiseConv2D):
        return "carrier" if layer.depth_multiplier == 1 else f"depth_multiplier {layer.depth_multiplier}"
    if isinstance(layer, layers.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
        rank = len(layer.input_shape)
        return "carrier" if [a % rank for a in axis] == [rank - 1] else f"normalises over axis {layer.axis}"
    if isinstance(layer, layers.Activation):
        name = getattr(layer.activation, "__name__", str(layer.activation))
        return f"activation {name} couples channels" if name in CHANNEL_COUPLING_ACTIVATIONS else "carrier"
    if isinstance(layer, CARRIERS):
        return "carrier"
    if isinstance(layer, layers.Rescaling):
        scalar = np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0
        return "carrier" if scalar else "per-channel rescaling"
    if isinstance(layer, layers.Flatten | layers.Reshape):
        in_shape, out_shape = layer.input_shape, layer.output_shape
        if in_shape[-1] == out_shape[-1] == width and np.prod(in_shape[1:-1]) == np.prod(out_shape[1:-1]):
            return "carrier"
        return f"reshapes the channel axis {in_shape} -> {out_shape}"
    if isinstance(layer, MERGES):
        return "merge"
    if isinstance(layer, layers.Concatenate):
        rank = len(layer.output_shape)
        return "concat" if layer.axis % rank == rank - 1 else "merge"
    return "unknown channel semantics"


def _finish(model, topology, spaces, descs, input_descs, consumers) -> ChannelGraph:
    order: dict[int, str] = {}  # root -> group name (first producer, else first carrier)
    for node in topology.nodes:
        for space in descs[node.name]:
            root = spaces.find(space)
            producers = spaces.producers[root]
            order.setdefault(root, producers[0] if producers else node.name)
    group_name = {root: name for root, name in order.items()}
    members: dict[int, list[str]] = {root: [] for root in order}
    group_consumers: dict[int, list[tuple[str, int]]] = {root: [] for root in order}
    taps: dict[int, list[tuple[str, int]]] = {root: [] for root in order}
    for node in topology.nodes:
        for space in dict.fromkeys(spaces.find(s) for s in descs[node.name]):
            if node.name not in spaces.producers[space] and not node.is_input:
                members[space].append(node.name)
    for consumer, inbound, desc in consumers:
        offset = 0
        for space in desc:
            root = spaces.find(space)
            group_consumers[root].append((consumer, offset))
            if (inbound, offset) not in taps[root]:
                taps[root].append((inbound, offset))
            offset += spaces.size[space]
    groups = {}
    for root, name in group_name.items():
        groups[name] = ChannelGroup(
            name=name, size=spaces.size[root], producers=tuple(spaces.producers[root]), members=tuple(members[root]),
            consumers=tuple(group_consumers[root]), taps=tuple(taps[root]), fixed=spaces.fixed.get(root),
        )  # fmt: skip
    segments = lambda desc: tuple((group_name[spaces.find(s)], spaces.size[s]) for s in desc)  # noqa: E731
    outputs = {name: segments(desc) for name, desc in descs.items()}
    inputs = {name: tuple(segments(d) for d in ins) for name, ins in input_descs.items()}
    return ChannelGraph(topology, groups, outputs, inputs, cost_terms(model, topology, outputs, inputs))


def _sample(names: list[str], n: int) -> list[str]:
    return names[:n] + (["..."] if len(names) > n else [])


# --- Surgery ----------------------------------------------------------------------------------


def check_keep(cgraph: ChannelGraph, keep: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sorted, unique, in-range, non-empty kept indices per group; only prunable groups."""
    checked = {}
    for name, indices in keep.items():
        if name not in cgraph.groups:
            known = ", ".join(_sample(list(cgraph.prunable), 8))
            raise ValueError(f"no channel group named {name!r}; prunable groups: {known}")
        group = cgraph.groups[name]
        indices = np.unique(np.asarray(indices, dtype=np.int64))
        if indices.size == group.size:
            continue
        if group.fixed:
            raise ValueError(f"channel group {name!r} cannot be pruned: {group.fixed}")
        if indices.size == 0 or indices[0] < 0 or indices[-1] >= group.size:
            raise ValueError(f"channel group {name!r} ({group.size} channels): kept indices must be a non-empty "
                             f"subset of 0..{group.size - 1}")  # fmt: skip
        checked[name] = indices
    return checked


def segment_indices(segments: Iterable[Segment], keep: Mapping[str, np.ndarray]) -> np.ndarray:
    """Positions kept along an axis made of `segments` (group, size), given each group's kept
    indices (`keep`; groups not named keep every channel)."""
    parts, offset = [], 0
    for name, size in segments:
        parts.append(offset + (keep[name] if name in keep else np.arange(size)))
        offset += size
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def slice_model(
    model: tf_keras.Model, cgraph: ChannelGraph, keep: Mapping[str, np.ndarray], name: str | None = None
) -> tf_keras.Model:
    """A new model of fresh layers keeping `keep[group]` channels (indices) of each group
    named; every other group whole. Weights are copied; the input model is unchanged."""
    keep = check_keep(cgraph, keep)

    def replacement(node: graph_lib.Node):
        layer = node.layer
        out_idx = segment_indices(cgraph.outputs[node.name], keep)
        in_idx = segment_indices(cgraph.inputs[node.name][0], keep)
        config = layer.get_config()
        if type(layer) is layers.Conv2D:
            config["filters"] = len(out_idx)
        elif type(layer) is layers.Dense:
            config["units"] = len(out_idx)
        elif isinstance(layer, layers.Reshape):
            config["target_shape"] = (*tuple(config["target_shape"])[:-1], len(out_idx))
        fresh = type(layer).from_config(config)
        values = []
        for weight in layer.weights:
            value = weight.numpy()
            for axis, role in channel_axes(layer, weight).items():
                value = np.take(value, in_idx if role == "in" else out_idx, axis=axis)
            values.append(value)

        def apply(arguments):
            output = fresh(arguments, **node.kwargs)
            fresh.set_weights(values)
            return output

        return apply

    replacements = {node.name: replacement(node) for node in cgraph.topology.nodes if not node.is_input}
    return graph_lib.rebuild(model, replacements, name=name)


def zero_inputs(model: tf_keras.Model, cgraph: ChannelGraph, removed: Mapping[str, np.ndarray]) -> dict[str, list]:
    """Cuts the `removed[group]` channels out of `model` in place by zeroing their input weights
    at every consumer: the unpruned model then computes exactly what `slice_model` keeping the
    complement computes. Returns the consumers' previous weights for `restore`."""
    saved: dict[str, list] = {}
    for name, channels in removed.items():
        group = cgraph.groups[name]
        channels = np.asarray(channels, dtype=np.int64)
        for consumer, offset in group.consumers:
            layer = model.get_layer(consumer)
            weights = layer.get_weights()
            saved.setdefault(consumer, [w.copy() for w in weights])
            axis = 2 if type(layer) is layers.Conv2D else 0
            index = [slice(None)] * weights[0].ndim
            index[axis] = offset + channels
            weights[0][tuple(index)] = 0.0
            layer.set_weights(weights)
    return saved


def restore(model: tf_keras.Model, saved: Mapping[str, list]) -> None:
    for consumer, weights in saved.items():
        model.get_layer(consumer).set_weights(weights)
