"""What is inside a `.tflite`: ops, weights (dtype, sparsity, clusters, sparse storage), which
ops XNNPACK takes, and whether XNNPACK's sparse inference can run the graph.

The eligibility rules are those of docs/facts.md ("XNNPACK sparse inference"), taken from
XNNPACK's subgraph analysis: an fp32/fp16 graph with sparse-stored (DENSIFY) weights whose
sparse subgraph starts with a 3x3 stride-2 CONV_2D over 3 channels padded 1 on each side,
holds only 1x1 CONV_2D without padding (>= 2/3 zeros across them), 3x3/5x5 DEPTHWISE_CONV_2D
with stride 1/2 and symmetric padding, 4D ADD/MUL, RESIZE_BILINEAR and unary activations, and
ends with a MEAN over the spatial axes (or DEPTH_TO_SPACE).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

import numpy as np

from nlighten_tf.litert import flatbuffer
from nlighten_tf.litert.flatbuffer import Graph

# Builtin ops XNNPACK's TFLite delegate can take (xnnpack_delegate.cc's Visit*Node list).
# Static: the delegate also checks dtypes, shapes and options per node when it is applied.
XNNPACK_OPS = frozenset(
    """ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CEIL CONCATENATION CONV_2D COS DEPTH_TO_SPACE
    DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EXP EXPAND_DIMS FLOOR FULLY_CONNECTED GELU HARD_SWISH
    LEAKY_RELU LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MUL NEG PAD PRELU QUANTIZE RELU RELU_N1_TO_1
    RELU6 RESHAPE RESIZE_BILINEAR ROUND RSQRT SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT SQRT SQUARE
    SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV""".split()
)
# DENSIFY of a static fp32/fp16 weight is folded by the delegate (it reads the sparse weights).
XNNPACK_FOLDED = frozenset({"DENSIFY"})

SPARSE_UNARY = frozenset(
    {"RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "LOGISTIC", "TANH", "ELU", "LEAKY_RELU", "ABS", "NEG",
     "SQUARE", "SQRT", "CEIL", "FLOOR", "ROUND", "GELU"}
)  # fmt: skip
# Ops that only carry weights into compute ops (sparse storage, fp16 weights).
WEIGHT_PLUMBING = frozenset({"DENSIFY", "DEQUANTIZE"})
MIN_SPARSE_FRACTION = 2 / 3  # of 1x1 convolution weights, across the subgraph (docs/facts.md)
SPARSE_READY_HINT = "build with sparse_ready=True (explicit ZeroPadding2D(1) + 'valid')"

# Weight layout per consumer: which axis is the output channel (per-channel quantization axis).
_CHANNEL_AXIS = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "TRANSPOSE_CONV": 0, "DEPTHWISE_CONV_2D": 3}


@dataclasses.dataclass
class WeightInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    size: int
    sparsity: float  # fraction of zeros in the dense tensor
    unique: int  # distinct values in the whole tensor
    unique_per_channel: int | None  # max distinct values in one output channel (clusters)
    stored_sparse: bool  # Tensor.sparsity set: read by a DENSIFY op
    consumers: list[str]  # e.g. ["CONV_2D #4"]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Eligibility:
    eligible: bool
    reason: str  # "eligible: ..." or "<OP> #<index>: <why>; <fix>"
    op: str | None = None  # the first op that breaks eligibility, "CONV_2D #0"
    conv1x1_sparsity: float | None = None
    subgraph_ops: int = 0  # compute ops XNNPACK's sparse kernels would run

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Report:
    path: str
    size_bytes: int
    op_histogram: dict[str, int]
    weights: list[WeightInfo]
    xnnpack_ops: int
    other_ops: dict[str, int]  # op types XNNPACK leaves to the builtin kernels
    sparse_weights: int
    eligibility: Eligibility
    warnings: list[str]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    size_breakdown: dict[str, int]  # bytes of the file by kind (size_breakdown())

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["weights"] = [w.as_dict() for w in self.weights]
        out["eligibility"] = self.eligibility.as_dict()
        return out


def _op_label(graph: Graph, index: int) -> str:
    return f"{graph.op_types[index]} #{index}"


def _options(graph: Graph, index: int) -> Any:
    return graph.operators[index].builtinOptions


def weight_source(graph: Graph, tensor_index: int) -> int | None:
    """The constant tensor behind an op input, looking through DENSIFY/DEQUANTIZE."""
    if graph.is_constant(tensor_index):
        return tensor_index
    producer = graph.producer(tensor_index)
    if producer is not None and graph.op_types[producer] in WEIGHT_PLUMBING:
        source = int(graph.operators[producer].inputs[0])
        if graph.is_constant(source):
            return source
    return None


def op_madds(graph: Graph, index: int) -> int:
    """Multiply-adds of one op from its tensor shapes, with the convention of
    `nlighten_tf.models.complexity` (the Keras-side count): convolutions, depthwise convolutions,
    transposed convolutions and fully-connected layers; 0 for every other op."""
    op_type = graph.op_types[index]
    op = graph.operators[index]
    if op_type not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") or op.inputs is None:
        return 0
    output = graph.shape(int(op.outputs[0]))
    if op_type == "TRANSPOSE_CONV":  # inputs: output_shape, weights OHWI, input
        weights, data = graph.shape(int(op.inputs[1])), graph.shape(int(op.inputs[2]))
        return int(np.prod(data[:-1], dtype=np.int64)) * int(np.prod(weights, dtype=np.int64))
    weights = graph.shape(int(op.inputs[1]))
    if not output or not weights:
        return 0
    if op_type == "CONV_2D":  # weights OHWI: every output value takes kh*kw*in_channels MACs
        return int(np.prod(output, dtype=np.int64)) * int(np.prod(weights[1:], dtype=np.int64))
    if op_type == "DEPTHWISE_CONV_2D":  # weights 1HWC: kh*kw MACs per output value
        return int(np.prod(output, dtype=np.int64)) * weights[1] * weights[2]
    return int(np.prod(output, dtype=np.int64)) * weights[-1]  # FULLY_CONNECTED: weights [out, in]


def analyse_weights(graph: Graph) -> list[WeightInfo]:
    """Every constant tensor of rank >= 2 that feeds a compute op (weights, not shapes/biases)."""
    consumers: dict[int, list[int]] = collections.defaultdict(list)
    for index, op in enumerate(graph.operators):
        if graph.op_types[index] in WEIGHT_PLUMBING:
            continue
        for tensor_index in op.inputs if op.inputs is not None else []:
            tensor_index = int(tensor_index)
            if tensor_index < 0:
                continue
            source = weight_source(graph, tensor_index)
            if source is not None:
                consumers[source].append(index)
    weights = []
    for tensor_index, ops in sorted(consumers.items()):
        tensor = graph.tensors[tensor_index]
        dtype = flatbuffer.dtype_name(tensor.type)
        shape = graph.shape(tensor_index)
        if len(shape) < 2 or dtype in ("int32", "int64", "bool", "string"):
            continue
        values = graph.values(tensor_index)
        axis = _CHANNEL_AXIS.get(graph.op_types[ops[0]])
        per_channel = None
        if axis is not None and axis < values.ndim:
            channels = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
            per_channel = max(len(np.unique(c)) for c in channels) if channels.size else 0
        weights.append(
            WeightInfo(
                name=graph.tensor_name(tensor_index),
                dtype=dtype,
                shape=shape,
                size=int(values.size),
                sparsity=float(np.count_nonzero(values == 0) / max(values.size, 1)),
                unique=int(len(np.unique(values))),
                unique_per_channel=per_channel,
                stored_sparse=tensor.sparsity is not None,
                consumers=[_op_label(graph, i) for i in ops],
            )
        )
    return weights


def _same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite/TensorFlow SAME padding (before, after): the odd pixel goes after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _conv_geometry(graph: Graph, index: int, fused_pad: list[list[int]] | None) -> dict[str, Any]:
    """Kernel, stride and effective (top, bottom, left, right) padding of a conv/dwconv,
    counting a PAD that XNNPACK fuses into it."""
    op = graph.operators[index]
    options = _options(graph, index)
    weights_shape = graph.shape(int(op.inputs[1]))
    # CONV_2D weights are OHWI, DEPTHWISE_CONV_2D 1HWC.
    kernel_h, kernel_w = weights_shape[1], weights_shape[2]
    input_shape = graph.shape(int(op.inputs[0]))
    height, width = input_shape[1], input_shape[2]
    stride_h, stride_w = options.strideH, options.strideW
    same = options.padding == flatbuffer.schema().Padding.SAME
    pad_h = _same_padding(height, kernel_h, stride_h, options.dilationHFactor) if same else (0, 0)
    pad_w = _same_padding(width, kernel_w, stride_w, options.dilationWFactor) if same else (0, 0)
    if fused_pad is not None:
        pad_h = (pad_h[0] + fused_pad[1][0], pad_h[1] + fused_pad[1][1])
        pad_w = (pad_w[0] + fused_pad[2][0], pad_w[1] + fused_pad[2][1])
    return {
        "kernel": (kernel_h, kernel_w), "stride": (stride_h, stride_w), "padding": (*pad_h, *pad_w),
        "in_channels": weights_shape[3] if graph.op_types[index] == "CONV_2D" else input_shape[3],
    }  # fmt: skip


def _pad_amounts(graph: Graph, index: int) -> list[list[int]] | None:
    op = graph.operators[index]
    if len(op.inputs) < 2 or not graph.is_constant(int(op.inputs[1])):
        return None
    amounts = graph.values(int(op.inputs[1]))
    if amounts.size % 2 or amounts.size < 6:  # not [before, after] pairs for N, H, W: not a fusable PAD
        return None
    return amounts.reshape(-1, 2).tolist()


def _padding_problem(geometry: dict[str, Any]) -> str | None:
    top, bottom, left, right = geometry["padding"]
    if top == bottom and left == right:
        return None
    return (
        f"asymmetric padding (top {top}, bottom {bottom}, left {left}, right {right}: Keras 'same' "
        f"with stride {geometry['stride'][0]} on an even input pads only after); {SPARSE_READY_HINT}"
    )


def check_sparse_eligibility(graph: Graph) -> Eligibility:
    """XNNPACK sparse-inference verdict, naming the first op that breaks it and why."""
    ops = graph.op_types
    if "DENSIFY" not in ops:
        return Eligibility(
            False,
            "no weights stored sparse (no DENSIFY ops): prune the 1x1 convolutions and export with "
            "EXPERIMENTAL_SPARSITY (target fp32_sparse)",
        )
    # Compute ops in execution order; DENSIFY/DEQUANTIZE only bring weights in.
    compute = [i for i, t in enumerate(ops) if not (t in WEIGHT_PLUMBING and graph.is_constant(
        int(graph.operators[i].inputs[0])))]  # fmt: skip
    if not compute:
        return Eligibility(False, "the graph has no compute ops")
    pending_pad: list[list[int]] | None = None
    conv_zeros = conv_total = 0
    count = 0
    for position, index in enumerate(compute):
        op_type = ops[index]
        label = _op_label(graph, index)
        op = graph.operators[index]
        first = count == 0
        if op_type == "PAD":
            following = compute[position + 1] if position + 1 < len(compute) else None
            amounts = _pad_amounts(graph, index)
            if (
                following is not None and ops[following] in ("CONV_2D", "DEPTHWISE_CONV_2D") and amounts
                and int(graph.operators[following].inputs[0]) == int(op.outputs[0])
            ):  # fmt: skip
                pending_pad = amounts  # XNNPACK fuses an explicit PAD into the conv
                continue
            return _fail(label, "a PAD that is not fused into a following convolution", conv_zeros, conv_total)
        fused, pending_pad = pending_pad, None
        input_dtype = flatbuffer.dtype_name(graph.tensors[int(op.inputs[0])].type) if op.inputs is not None else ""
        if input_dtype not in ("float32", "float16"):
            return _fail(
                label,
                f"{input_dtype} activations: XNNPACK's sparse kernels are fp32/fp16 only "
                "(export the pruned model as target fp32_sparse)",
                conv_zeros, conv_total,
            )  # fmt: skip
        if first:
            if op_type != "CONV_2D":
                return _fail(label, "the sparse subgraph must start with a 3x3 stride-2 CONV_2D", 0, 0)
            geometry = _conv_geometry(graph, index, fused)
            if geometry["kernel"] != (3, 3) or geometry["stride"] != (2, 2) or geometry["in_channels"] != 3:
                return _fail(
                    label,
                    f"first convolution is {geometry['kernel'][0]}x{geometry['kernel'][1]} stride "
                    f"{geometry['stride'][0]} over {geometry['in_channels']} channels; XNNPACK needs a 3x3 "
                    "stride-2 convolution over 3 channels",
                    0, 0,
                )  # fmt: skip
            problem = _padding_problem(geometry)
            if problem is None and geometry["padding"] != (1, 1, 1, 1):
                problem = f"padding {geometry['padding']} (needs 1 on each side); {SPARSE_READY_HINT}"
            if problem:
                return _fail(label, problem, 0, 0)
        elif op_type == "CONV_2D":
            geometry = _conv_geometry(graph, index, fused)
            if geometry["kernel"] != (1, 1) or geometry["stride"] != (1, 1) or any(geometry["padding"]):
                return _fail(
                    label,
                    f"{geometry['kernel'][0]}x{geometry['kernel'][1]} stride {geometry['stride'][0]} convolution; "
                    "only 1x1 stride-1 unpadded convolutions may follow the first one",
                    conv_zeros, conv_total,
                )  # fmt: skip
            source = weight_source(graph, int(op.inputs[1]))
            if source is None:
                return _fail(label, "1x1 convolution with non-constant weights", conv_zeros, conv_total)
            values = graph.values(source)
            conv_zeros += int(np.count_nonzero(values == 0))
            conv_total += int(values.size)
        elif op_type == "DEPTHWISE_CONV_2D":
            geometry = _conv_geometry(graph, index, fused)
            if geometry["kernel"] not in ((3, 3), (5, 5)) or geometry["stride"] not in ((1, 1), (2, 2)):
                return _fail(
                    label,
                    f"{geometry['kernel'][0]}x{geometry['kernel'][1]} stride {geometry['stride'][0]} depthwise "
                    "convolution; XNNPACK's sparse path takes 3x3/5x5 with stride 1 or 2",
                    conv_zeros, conv_total,
                )  # fmt: skip
            problem = _padding_problem(geometry)
            if problem:
                return _fail(label, problem, conv_zeros, conv_total)
        elif op_type in ("ADD", "MUL"):
            if any(len(graph.shape(int(t))) != 4 for t in op.inputs if int(t) >= 0):
                return _fail(label, "ADD/MUL of tensors that are not all 4D", conv_zeros, conv_total)
        elif op_type in ("MEAN", "DEPTH_TO_SPACE"):
            if op_type == "MEAN":
                axes = graph.values(int(op.inputs[1])).ravel().tolist() if graph.is_constant(int(op.inputs[1])) else []
                if sorted(axes) != [1, 2]:
                    return _fail(label, f"MEAN over axes {axes}, not the spatial axes [1, 2]", conv_zeros, conv_total)
            count += 1
            break
        elif op_type in SPARSE_UNARY or op_type == "RESIZE_BILINEAR":
            pass
        else:
            return _fail(label, f"{op_type} is not supported inside XNNPACK's sparse subgraph", conv_zeros, conv_total)
        count += 2 if fused is not None else 1  # a fused PAD runs inside the conv
    else:
        return _fail(
            "end of graph", "no MEAN over the spatial axes (or DEPTH_TO_SPACE) closes the sparse subgraph",
            conv_zeros, conv_total,
        )  # fmt: skip
    fraction = conv_zeros / conv_total if conv_total else 0.0
    if fraction < MIN_SPARSE_FRACTION:
        return Eligibility(
            False,
            f"1x1 convolutions are {fraction:.0%} zeros across the subgraph; XNNPACK's sparse kernels need "
            f">= {MIN_SPARSE_FRACTION:.0%} (prune the 1x1 convolutions harder)",
            op=None, conv1x1_sparsity=fraction, subgraph_ops=count,
        )  # fmt: skip
    return Eligibility(
        True,
        f"eligible: {count} ops from the stem to the spatial MEAN run sparse; 1x1 convolutions {fraction:.0%} zeros",
        conv1x1_sparsity=fraction, subgraph_ops=count,
    )  # fmt: skip


def _fail(label: str, why: str, zeros: int, total: int) -> Eligibility:
    return Eligibility(False, f"{label}: {why}", op=label, conv1x1_sparsity=(zeros / total) if total else None)


def xnnpack_coverage(graph: Graph) -> tuple[int, dict[str, int]]:
    """(ops XNNPACK can take, histogram of the op types it leaves to the builtin kernels)."""
    taken, other = 0, collections.Counter()
    for op_type in graph.op_types:
        if op_type in XNNPACK_OPS or op_type in XNNPACK_FOLDED:
            taken += 1
        else:
            other[op_type] += 1
    return taken, dict(other)


def _io(graph: Graph, tensor_indices: Any) -> list[dict[str, Any]]:
    out = []
    for index in tensor_indices if tensor_indices is not None else []:
        tensor = graph.tensors[int(index)]
        quant = tensor.quantization
        scale = list(quant.scale) if quant is not None and quant.scale is not None else []
        zero = list(quant.zeroPoint) if quant is not None and quant.zeroPoint is not None else []
        out.append({
            "name": graph.tensor_name(int(index)), "shape": list(graph.shape(int(index))),
            "dtype": flatbuffer.dtype_name(tensor.type),
            "quantization": {"scale": [float(s) for s in scale], "zero_point": [int(z) for z in zero]}
            if scale and len(zero) == len(scale) else None,
        })  # fmt: skip
    return out


def known_runtime_faults(graph: Graph) -> list[str]:
    """Graph features that a shipped runtime is known to reject (docs/facts.md)."""
    warnings = []
    for index, op_type in enumerate(graph.op_types):
        if op_type != "FULLY_CONNECTED":
            continue
        op = graph.operators[index]
        producer = graph.producer(int(op.inputs[1]))
        if producer is not None and graph.op_types[producer] == "DENSIFY":
            source = int(graph.operators[producer].inputs[0])
            if flatbuffer.dtype_name(graph.tensors[source].type) == "int8":
                warnings.append(
                    f"{_op_label(graph, index)}: int8 weights stored sparse; ai-edge-litert 2.3's XNNPACK fails "
                    "to prepare this node (the benchmark falls back to tf.lite or XNNPACK off)"
                )
    return warnings


# Bytes per entry of a sparse index vector, by SparseIndexVector type (Int32, Uint16, Uint8).
_INDEX_BYTES = {1: 4, 2: 2, 3: 1}


def size_breakdown(graph: Graph) -> dict[str, int]:
    """Where the file's bytes go. Quantization parameters are a float32 scale plus an int64
    zero point per channel of every per-channel tensor (weights and their int32 biases): in a
    small int8 network with many narrow layers they can outweigh the weights themselves."""
    parts = dict.fromkeys(
        ("weights_dense", "weights_sparse_values", "sparse_indices", "int32_constants", "quantization_params"), 0
    )
    for index, tensor in enumerate(graph.tensors):
        quantization = tensor.quantization
        if quantization is not None:
            parts["quantization_params"] += 4 * len(quantization.scale if quantization.scale is not None else [])
            parts["quantization_params"] += 8 * len(quantization.zeroPoint if quantization.zeroPoint is not None else [])
        data = graph.buffer_bytes(index)
        if data is None:
            continue
        if tensor.sparsity is not None:
            parts["weights_sparse_values"] += data.size
            for dim in tensor.sparsity.dimMetadata or []:
                for vector, kind in ((dim.arraySegments, dim.arraySegmentsType), (dim.arrayIndices, dim.arrayIndicesType)):
                    if vector is not None and vector.values is not None:
                        parts["sparse_indices"] += _INDEX_BYTES.get(kind, 4) * len(vector.values)
        elif flatbuffer.dtype_name(tensor.type) in ("int32", "int64"):
            parts["int32_constants"] += data.size
        else:
            parts["weights_dense"] += data.size
    parts["other"] = max(len(graph.raw) - sum(parts.values()), 0)  # graph structure, names, metadata, padding
    return parts


def inspect_graph(graph: Graph, path: str = "") -> Report:
    """Raises flatbuffer.TFLiteFileError (naming the part being read) when an op's inputs make
    no sense to the inspector: `flatbuffer.validate` has checked the structure, not every op."""
    where = path or "model"
    histogram = collections.Counter(graph.op_types)
    with flatbuffer.reading(where, "weights"):
        weights = analyse_weights(graph)
    taken, other = xnnpack_coverage(graph)
    with flatbuffer.reading(where, "XNNPACK sparse eligibility"):
        eligibility = check_sparse_eligibility(graph)
    with flatbuffer.reading(where, "runtime fault check"):
        warnings = known_runtime_faults(graph)
    with flatbuffer.reading(where, "inputs/outputs"):
        inputs, outputs = _io(graph, graph.subgraph.inputs), _io(graph, graph.subgraph.outputs)
    with flatbuffer.reading(where, "size breakdown"):
        breakdown = size_breakdown(graph)
    return Report(
        path=path,
        size_bytes=len(graph.raw),
        op_histogram=dict(sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))),
        weights=weights,
        xnnpack_ops=taken,
        other_ops=other,
        sparse_weights=sum(w.stored_sparse for w in weights),
        eligibility=eligibility,
        warnings=warnings,
        inputs=inputs,
        outputs=outputs,
        size_breakdown=breakdown,
    )


def inspect_file(path: str | os.PathLike[str]) -> Report:
    """Inspects a `.tflite`; raises flatbuffer.TFLiteFileError for a missing/corrupt file."""
    return inspect_graph(flatbuffer.load(path), str(path))


def format_report(report: Report, max_weights: int = 40) -> str:
    """Plain-text summary for people (the JSON form is `report.as_dict()`)."""
    from nlighten_tf.render import markdown_table

    lines = [f"{report.path}: {report.size_bytes:,} bytes, {sum(report.op_histogram.values())} ops"]
    for kind, tensors in (("input", report.inputs), ("output", report.outputs)):
        for t in tensors:
            q = t["quantization"]
            quant = f" scale={q['scale'][0]:.6g} zero_point={q['zero_point'][0]}" if q else ""
            lines.append(f"  {kind} {t['name']}: {t['dtype']} {t['shape']}{quant}")
    total = max(report.size_bytes, 1)
    lines += ["", "Where the bytes go:", markdown_table([
        {"part": part, "bytes": size, "share_%": round(100 * size / total, 1)} for part, size in report.size_breakdown.items()
    ])]  # fmt: skip
    lines += ["", "Op histogram:", markdown_table([{"op": k, "count": v} for k, v in report.op_histogram.items()])]
    rows = [
        {"tensor": w.name[-60:], "dtype": w.dtype, "shape": "x".join(map(str, w.shape)), "sparsity": round(w.sparsity, 4),
         "unique": w.unique, "unique/channel": w.unique_per_channel, "stored sparse": "yes" if w.stored_sparse else "no",
         "op": ", ".join(w.consumers)}
        for w in report.weights[:max_weights]
    ]  # fmt: skip
    lines += ["", f"Weights ({len(report.weights)} tensors, {report.sparse_weights} stored sparse):", markdown_table(rows)]
    if len(report.weights) > max_weights:
        lines.append(f"... {len(report.weights) - max_weights} more (see --json)")
    other = ", ".join(f"{k} x{v}" for k, v in report.other_ops.items()) or "none"
    lines += ["", f"XNNPACK can take {report.xnnpack_ops} of {len(report.op_histogram) and sum(report.op_histogram.values())} ops; "
              f"left to builtin kernels: {other}"]  # fmt: skip
    verdict = "ELIGIBLE" if report.eligibility.eligible else "NOT ELIGIBLE"
    lines.append(f"XNNPACK sparse inference: {verdict} - {report.eligibility.reason}")
    if report.sparse_weights:  # the verdict is about the file; where it runs decides what happens
        from nlighten_tf.bench.devices import host_cpu

        cpu = host_cpu()
        lines.append(f"{'note' if not cpu['sparse_kernels'] else 'host'}: {cpu['note']}")
    lines += [f"warning: {w}" for w in report.warnings]
    return "\n".join(lines)
