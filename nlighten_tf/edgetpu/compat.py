"""Offline Edge TPU compatibility: which ops of a `.tflite` the Edge TPU compiler will map,
predicted op by op from Coral's documented requirements, without the compiler.

The rules (docs/facts.md, "Edge TPU (Coral) compiler rules", checked against Coral's published op
table at coral.ai/docs/edgetpu/models-intro):

- every tensor int8/uint8 quantized; float input/output only through a QUANTIZE/DEQUANTIZE at the
  graph's edges; constant int32 tensors (biases, shapes, axes, paddings) are fine;
- model parameters (weights, biases, shapes, axes ...) constant at compile time;
- static tensor sizes (a -1 in a shape signature other than the batch is a dynamic size);
- tensors 1-3D, or only the 3 innermost dimensions larger than 1;
- only ops on Coral's list, each within its documented limitations (`SUPPORTED_OPS`).

The compiler maps ops in execution order up to the first op that breaks a rule; that op and
everything after it run on the CPU. One exception by design: a detector's trailing
``TFLite_Detection_PostProcess`` custom op (with the DEQUANTIZEs feeding it) is the float decode +
NMS tail every SSD/EfficientDet export ends with; it runs on the CPU after the Edge TPU part
(`postprocess_tail`) and is reported as such, not as a split in the middle of the model. About 8 MiB of on-chip SRAM caches the parameters of the
mapped ops; what does not fit is streamed from host memory on every inference.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from nlighten_tf.bench import tflite_inspection
from nlighten_tf.boxes import POSTPROCESS_OP
from nlighten_tf.litert import flatbuffer
from nlighten_tf.litert.flatbuffer import Graph

SRAM_BYTES = 8 * 2**20  # "roughly 8 MB of SRAM that can cache the model's parameter data" (Coral)
NEAR_FULL = 0.9  # of SRAM_BYTES: the compiler also keeps instructions on chip, so warn before 100%
FIX = "export with target edgetpu (full-integer int8, dense, uint8 input/output)"

# Coral's op table: TFLite builtin -> its documented limitation ("" when none). HARD_SWISH is on
# docs/facts.md's list ("in recent compilers") but not in Coral's published table.
SUPPORTED_OPS: dict[str, str] = {
    "ADD": "",
    "AVERAGE_POOL_2D": "No fused activation function.",
    "CONCATENATION": "No fused activation function. If any input is a compile-time constant tensor, there must be "
    "only 2 inputs, and this constant tensor must be all zeroes (effectively, a zero-padding op).",
    "CONV_2D": "Must use the same dilation in x and y dimensions.",
    "DEPTHWISE_CONV_2D": "Must use the same dilation in x and y dimensions.",
    "EXPAND_DIMS": "",
    "FULLY_CONNECTED": "Only the default format is supported for fully-connected weights. Output tensor is "
    "one-dimensional.",
    "HARD_SWISH": "On docs/facts.md's list for recent compilers; not in Coral's published table.",
    "L2_NORMALIZATION": "",
    "LOGISTIC": "",
    "MAXIMUM": "",
    "MAX_POOL_2D": "No fused activation function.",
    "MEAN": "No reduction in batch dimension. If a z-reduction, the z-dimension must be multiple of 4.",
    "MINIMUM": "",
    "MUL": "",
    "PACK": "No packing in batch dimension.",
    "PAD": "No padding in batch dimension.",
    "PRELU": "Alpha must be 1-dimensional (only the innermost dimension can be >1 size).",
    "QUANTIZE": "",
    "REDUCE_MAX": "Cannot operate on the batch dimension.",
    "REDUCE_MIN": "Cannot operate on the batch dimension.",
    "RELU": "",
    "RELU6": "",
    "RELU_N1_TO_1": "",
    "RESHAPE": "Certain reshapes might not be mapped for large tensor sizes.",
    "RESIZE_BILINEAR": "Input/output is a 3-dimensional tensor. Depending on input/output size, this operation "
    "may not be mapped to the Edge TPU to avoid loss in precision.",
    "RESIZE_NEAREST_NEIGHBOR": "Input/output is a 3-dimensional tensor. Depending on input/output size, this "
    "operation may not be mapped to the Edge TPU to avoid loss in precision.",
    "RSQRT": "",
    "SLICE": "",
    "SOFTMAX": "Supports only 1-D input tensor with a max of 16,000 elements.",
    "SPACE_TO_DEPTH": "",
    "SPLIT": "No splitting in batch dimension.",
    "SQUARED_DIFFERENCE": "",
    "SQUEEZE": "",
    "STRIDED_SLICE": "Supported only when all strides are equal to 1, with ellipsis-axis-mask == 0 and "
    "new-axis-mask == 0.",
    "SUB": "",
    "SUM": "Cannot operate on the batch dimension.",
    "TANH": "",
    "TRANSPOSE": "",
    "TRANSPOSE_CONV": "",
}
# Limitations that the file cannot settle: the op is predicted mapped, with this caveat.
CAVEATS = {
    "RESHAPE": "large reshapes may stay on the CPU",
    "RESIZE_BILINEAR": "may stay on the CPU to avoid precision loss, depending on sizes",
    "RESIZE_NEAREST_NEIGHBOR": "may stay on the CPU to avoid precision loss, depending on sizes",
    "HARD_SWISH": "needs a recent compiler (not in Coral's published table)",
}
# Inputs that must be compile-time constants ("model parameters constant at compile time").
PARAM_INPUTS: dict[str, tuple[int, ...]] = {
    "CONV_2D": (1, 2), "DEPTHWISE_CONV_2D": (1, 2), "FULLY_CONNECTED": (1, 2), "TRANSPOSE_CONV": (0, 1, 3),
    "PRELU": (1,), "RESHAPE": (1,), "RESIZE_BILINEAR": (1,), "RESIZE_NEAREST_NEIGHBOR": (1,), "MEAN": (1,),
    "SUM": (1,), "REDUCE_MAX": (1,), "REDUCE_MIN": (1,), "PAD": (1,), "SLICE": (1, 2), "STRIDED_SLICE": (1, 2, 3),
    "SPLIT": (0,), "TRANSPOSE": (1,), "EXPAND_DIMS": (1,),
}  # fmt: skip
QUANTIZED = ("int8", "uint8")
CONSTANT_OK = ("int8", "uint8", "int32", "int64")  # weights; biases, shapes, axes, paddings


@dataclasses.dataclass
class OpRow:
    index: int
    op: str
    mapped: bool  # predicted to run on the Edge TPU
    reason: str  # why not (or the caveat of a mapped op); "" when plainly supported
    edge: bool = False  # a QUANTIZE/DEQUANTIZE converting the model's input/output: never splits the graph
    madds: int = 0
    postprocess: bool = False  # part of a detector's trailing post-process (CPU by design; also `edge`)
    param_bytes: int = 0  # constant tensors this op reads

    @property
    def device(self) -> str:
        return "Edge TPU" if self.mapped else "CPU"

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "device": self.device}


@dataclasses.dataclass
class CompatReport:
    path: str
    size_bytes: int
    ops: list[OpRow]
    first_unsupported: int | None  # index of the op where the graph leaves the Edge TPU
    ops_mapped: float  # fraction of the compute ops (edge conversions excluded) on the Edge TPU
    madds_mapped: float | None  # fraction of the MAdds on the Edge TPU (None: no conv/FC ops)
    madds_total: int
    param_bytes: int  # parameters of the mapped ops: what the on-chip SRAM must cache
    total_param_bytes: int
    fits_on_chip: bool
    streamed_bytes: int  # parameters streamed from host memory on every inference
    problems: list[str]  # why the compiler should not be run on this file (check_compilable)
    warnings: list[str]
    status: str  # "mapped", "split" or "refused"
    verdict: str

    @property
    def compute_ops(self) -> list[OpRow]:
        return [row for row in self.ops if not row.edge]

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["ops"] = [row.as_dict() for row in self.ops]
        out["sram_bytes"] = SRAM_BYTES
        out["op_summary"] = op_summary(self)
        return out


def _graph(model: Graph | bytes | str | os.PathLike[str]) -> tuple[Graph, str]:
    if isinstance(model, Graph):
        return model, "model"
    if isinstance(model, bytes | bytearray):
        return flatbuffer.parse(bytes(model), "model bytes"), "model bytes"
    return flatbuffer.load(model), str(model)


def _inputs(graph: Graph, index: int) -> list[int]:
    op = graph.operators[index]
    return [int(t) for t in (op.inputs if op.inputs is not None else []) if int(t) >= 0]


def _outputs(graph: Graph, index: int) -> list[int]:
    op = graph.operators[index]
    return [int(t) for t in (op.outputs if op.outputs is not None else []) if int(t) >= 0]


def _dtype(graph: Graph, tensor: int) -> str:
    return flatbuffer.dtype_name(graph.tensors[tensor].type)


def _label(graph: Graph, index: int) -> str:
    return f"{graph.op_types[index]} #{index}"


def _size(n: float) -> str:
    """Bytes in the compiler's units (B, KiB, MiB)."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def _percent(fraction: float | None, digits: int = 0) -> str:
    return "n/a" if fraction is None else f"{fraction:.{digits}%}"


# --- the graph's edges -------------------------------------------------------------------------


def edge_side(graph: Graph, index: int) -> str | None:
    """"input"/"output" for a QUANTIZE/DEQUANTIZE that converts a model input/output, else None."""
    if graph.op_types[index] not in ("QUANTIZE", "DEQUANTIZE"):
        return None
    graph_inputs = {int(t) for t in (graph.subgraph.inputs if graph.subgraph.inputs is not None else [])}
    graph_outputs = {int(t) for t in (graph.subgraph.outputs if graph.subgraph.outputs is not None else [])}
    ins, outs = _inputs(graph, index), _outputs(graph, index)
    if ins and ins[0] in graph_inputs:
        return "input"
    if outs and outs[0] in graph_outputs:
        return "output"
    return None


POSTPROCESS_OPS = (POSTPROCESS_OP,)  # ops a detector ends in, run on the CPU by design


def postprocess_tail(graph: Graph) -> set[int]:
    """Indices of a detector's trailing post-process: `POSTPROCESS_OPS` whose outputs are all
    model outputs, plus the DEQUANTIZE ops that only feed them (empty for other models)."""
    graph_outputs = {int(t) for t in (graph.subgraph.outputs if graph.subgraph.outputs is not None else [])}
    tail = {
        i for i, op_type in enumerate(graph.op_types)
        if op_type in POSTPROCESS_OPS and set(_outputs(graph, i)) <= graph_outputs
    }  # fmt: skip
    if not tail:
        return tail
    consumers: dict[int, set[int]] = {}
    for i in range(len(graph.operators)):
        for tensor in _inputs(graph, i):
            consumers.setdefault(tensor, set()).add(i)
    for i, op_type in enumerate(graph.op_types):
        outs = _outputs(graph, i)
        if op_type == "DEQUANTIZE" and outs and all(
            t not in graph_outputs and consumers.get(t) and consumers[t] <= tail for t in outs
        ):
            tail.add(i)
    return tail


def _external_tensors(graph: Graph, index: int) -> set[int]:
    """The model-side tensor of an edge conversion, exempt from the int8/uint8 rule."""
    side = edge_side(graph, index)
    if side == "input":
        return {_inputs(graph, index)[0]}
    if side == "output":
        return {_outputs(graph, index)[0]}
    return set()


# --- the general rules -------------------------------------------------------------------------


def _dtype_problem(graph: Graph, index: int) -> str | None:
    exempt = _external_tensors(graph, index)
    for tensor in _inputs(graph, index) + _outputs(graph, index):
        if tensor in exempt:
            continue
        dtype = _dtype(graph, tensor)
        if graph.is_constant(tensor):
            if dtype not in CONSTANT_OK:
                return f"{dtype} constant {graph.tensor_name(tensor)!r}: parameters must be int8/uint8 quantized"
        elif dtype not in QUANTIZED:
            return (
                f"works on {dtype} tensor {graph.tensor_name(tensor)!r}: the Edge TPU takes only int8/uint8 "
                "quantized tensors"
            )
    return None


def _constant_problem(graph: Graph, index: int) -> str | None:
    op = graph.operators[index]
    inputs = list(op.inputs) if op.inputs is not None else []
    for position in PARAM_INPUTS.get(graph.op_types[index], ()):
        tensor = int(inputs[position]) if position < len(inputs) else -1
        if tensor >= 0 and not graph.is_constant(tensor):
            producer = graph.producer(tensor)
            via = f" (computed by {_label(graph, producer)})" if producer is not None else ""
            return (
                f"input {position} {graph.tensor_name(tensor)!r} is not a compile-time constant{via}: model "
                "parameters must be constant"
            )
    return None


def dynamic_tensors(graph: Graph, tensors: list[int]) -> list[int]:
    """Tensors whose shape signature has -1 in a dimension other than the batch."""
    return [t for t in tensors if any(d < 0 for d in graph.shape_signature(t)[1:])]


def _shape_problem(graph: Graph, index: int) -> str | None:
    activations = [t for t in _inputs(graph, index) + _outputs(graph, index) if not graph.is_constant(t)]
    for tensor in dynamic_tensors(graph, activations):
        return (
            f"dynamic shape: tensor {graph.tensor_name(tensor)!r} has shape signature "
            f"{list(graph.shape_signature(tensor))}; tensor sizes must be constant at compile time"
        )
    for tensor in activations:
        shape = graph.shape(tensor)
        if len(shape) > 3 and any(d > 1 for d in shape[:-3]):
            return (
                f"tensor {graph.tensor_name(tensor)!r} {list(shape)} has a dimension > 1 outside the 3 innermost "
                "(tensors must be 1-3D, or only the 3 innermost dimensions larger than 1)"
            )
    return None


# --- the per-op limitations --------------------------------------------------------------------


def _options(graph: Graph, index: int) -> Any:
    return graph.operators[index].builtinOptions


def _fused_activation(graph: Graph, index: int) -> str | None:
    options = _options(graph, index)
    code = getattr(options, "fusedActivationFunction", 0) if options is not None else 0
    if code:
        name = flatbuffer.enum_name("ActivationFunctionType", code)
        return f"fused activation {name} (no fused activation allowed)"
    return None


def _all_zero(graph: Graph, tensor: int) -> bool:
    """Real value 0 everywhere: a quantized zero is stored as the zero point."""
    quantization = graph.tensors[tensor].quantization
    zero_points = quantization.zeroPoint if quantization is not None and quantization.zeroPoint is not None else []
    zero = int(zero_points[0]) if len(zero_points) else 0
    return bool(np.all(graph.values(tensor) == zero))


def _concatenation(graph: Graph, index: int) -> str | None:
    problem = _fused_activation(graph, index)
    if problem:
        return problem
    inputs = _inputs(graph, index)
    constants = [t for t in inputs if graph.is_constant(t)]
    if constants and (len(inputs) != 2 or not _all_zero(graph, constants[0])):
        return "a constant input is allowed only as one of 2 inputs and all zeros (a zero padding)"
    return None


def _dilation(graph: Graph, index: int) -> str | None:
    options = _options(graph, index)
    if options is not None and options.dilationHFactor != options.dilationWFactor:
        return f"dilation {options.dilationHFactor} in y but {options.dilationWFactor} in x (must be the same)"
    return None


def _fully_connected(graph: Graph, index: int) -> str | None:
    options = _options(graph, index)
    if options is not None and options.weightsFormat != 0:
        name = flatbuffer.enum_name("FullyConnectedOptionsWeightsFormat", options.weightsFormat)
        return f"weights format {name} (only the default format)"
    output = graph.shape(_outputs(graph, index)[0])
    if sum(d > 1 for d in output) > 1:
        return f"output {list(output)} is not one-dimensional"
    return None


def _axes(graph: Graph, index: int, position: int, rank: int) -> list[int] | None:
    inputs = _inputs(graph, index)
    if position >= len(inputs) or not graph.is_constant(inputs[position]):
        return None
    return sorted({int(a) % rank for a in np.ravel(graph.values(inputs[position]))}) if rank else []


def _reduction(graph: Graph, index: int) -> str | None:
    shape = graph.shape(_inputs(graph, index)[0])
    axes = _axes(graph, index, 1, len(shape))
    if axes is None:
        return None
    if 0 in axes and len(shape) > 1:
        return f"reduces over the batch dimension (axes {axes})"
    if graph.op_types[index] == "MEAN" and len(shape) - 1 in axes and shape[-1] % 4:
        return f"reduces over the z (channel) dimension of size {shape[-1]}, not a multiple of 4"
    return None


def _pack(graph: Graph, index: int) -> str | None:
    options = _options(graph, index)
    rank = len(graph.shape(_outputs(graph, index)[0]))
    if options is not None and rank and options.axis % rank == 0:
        return "packs along the batch dimension"
    return None


def _pad(graph: Graph, index: int) -> str | None:
    inputs = _inputs(graph, index)
    if len(inputs) > 1 and graph.is_constant(inputs[1]):
        paddings = graph.values(inputs[1]).reshape(-1, 2)
        if len(paddings) > 1 and np.any(paddings[0] != 0):
            return f"pads the batch dimension ({paddings[0].tolist()})"
    return None


def _prelu(graph: Graph, index: int) -> str | None:
    alpha = graph.shape(_inputs(graph, index)[1])
    if any(d > 1 for d in alpha[:-1]):
        return f"alpha {list(alpha)} is not 1-dimensional (in Keras: PReLU(shared_axes=[1, 2]))"
    return None


def _resize(graph: Graph, index: int) -> str | None:
    for tensor in (_inputs(graph, index)[0], _outputs(graph, index)[0]):
        shape = graph.shape(tensor)
        if len(shape) == 4 and shape[0] != 1:
            return f"tensor {list(shape)} is not 3-dimensional (batch {shape[0]})"
    return None


def _softmax(graph: Graph, index: int) -> str | None:
    shape = graph.shape(_inputs(graph, index)[0])
    size = int(np.prod(shape)) if shape else 1
    if sum(d > 1 for d in shape) > 1 or size > 16000:
        return f"input {list(shape)} is not a 1-D tensor of at most 16,000 elements"
    return None


def _split(graph: Graph, index: int) -> str | None:
    inputs = _inputs(graph, index)
    rank = len(graph.shape(inputs[1])) if len(inputs) > 1 else 0
    axes = _axes(graph, index, 0, rank)
    if axes and rank > 1 and 0 in axes:
        return "splits along the batch dimension"
    return None


def _strided_slice(graph: Graph, index: int) -> str | None:
    options = _options(graph, index)
    inputs = _inputs(graph, index)
    if len(inputs) > 3 and graph.is_constant(inputs[3]):
        strides = np.ravel(graph.values(inputs[3])).tolist()
        if any(s != 1 for s in strides):
            return f"strides {strides} (all must be 1)"
    if options is not None and (options.ellipsisMask or options.newAxisMask):
        return f"ellipsis_mask {options.ellipsisMask}, new_axis_mask {options.newAxisMask} (both must be 0)"
    return None


LIMITATIONS: dict[str, Callable[[Graph, int], str | None]] = {
    "AVERAGE_POOL_2D": _fused_activation, "MAX_POOL_2D": _fused_activation, "CONCATENATION": _concatenation,
    "CONV_2D": _dilation, "DEPTHWISE_CONV_2D": _dilation, "FULLY_CONNECTED": _fully_connected,
    "MEAN": _reduction, "SUM": _reduction, "REDUCE_MAX": _reduction, "REDUCE_MIN": _reduction, "PACK": _pack,
    "PAD": _pad, "PRELU": _prelu, "RESIZE_BILINEAR": _resize, "RESIZE_NEAREST_NEIGHBOR": _resize,
    "SOFTMAX": _softmax, "SPLIT": _split, "STRIDED_SLICE": _strided_slice,
}  # fmt: skip


def op_problem(graph: Graph, index: int) -> str | None:
    """Why the Edge TPU cannot run this op (None when the documented rules allow it)."""
    op_type = graph.op_types[index]
    if op_type == "DENSIFY":
        return f"sparse weights (DENSIFY) are not supported by the Edge TPU compiler; {FIX}"
    if op_type == "DEQUANTIZE" and edge_side(graph, index) is None:
        return "DEQUANTIZE inside the graph: a float tensor between ops (the Edge TPU is integer only)"
    if op_type not in SUPPORTED_OPS and not (op_type == "DEQUANTIZE" and edge_side(graph, index)):
        return f"{op_type} is not on Coral's list of supported ops"
    for check in (_dtype_problem, _constant_problem, _shape_problem):
        problem = check(graph, index)
        if problem:
            return problem
    limitation = LIMITATIONS.get(op_type)
    problem = limitation(graph, index) if limitation else None
    return f"{problem} (Coral: {SUPPORTED_OPS[op_type]})" if problem else None


# --- whole-file checks -------------------------------------------------------------------------


def check_compilable(model: Graph | bytes | str | os.PathLike[str]) -> list[str]:
    """Why this file must not go to `edgetpu_compiler` (empty when it may): float tensors inside
    the graph, sparse (DENSIFY) tensors, dynamic shapes; each names the export to use instead."""
    graph, path = _graph(model)
    with flatbuffer.reading(path, "Edge TPU compilability check"):
        return _check_compilable(graph)


def _check_compilable(graph: Graph) -> list[str]:
    problems = []
    floats: list[tuple[int, int]] = []  # (tensor, op)
    tail = postprocess_tail(graph)
    for index in range(len(graph.operators)):
        if index in tail:  # float by design, on the CPU after the Edge TPU part
            continue
        exempt = _external_tensors(graph, index)
        for tensor in _inputs(graph, index) + _outputs(graph, index):
            if tensor not in exempt and _dtype(graph, tensor) in ("float32", "float16", "float64"):
                floats.append((tensor, index))
    if floats:
        tensors = sorted({t for t, _ in floats})
        tensor, index = floats[0]
        problems.append(
            f"float tensors: {len(tensors)} float tensors inside the graph (first {graph.tensor_name(tensor)!r} "
            f"at {_label(graph, index)}); the Edge TPU needs a full-integer model: {FIX}"
        )
    densify = [i for i, t in enumerate(graph.op_types) if t == "DENSIFY"]
    sparse = [t for t, tensor in enumerate(graph.tensors) if tensor.sparsity is not None]
    if densify or sparse:
        problems.append(
            f"sparse tensors: {len(sparse)} weights stored sparse, read by {len(densify)} DENSIFY ops; the Edge "
            f"TPU compiler does not support DENSIFY: {FIX}, not int8_sparse"
        )
    dynamic = dynamic_tensors(graph, [t for t in range(len(graph.tensors)) if not graph.is_constant(t)])
    if dynamic:
        name, signature = graph.tensor_name(dynamic[0]), list(graph.shape_signature(dynamic[0]))
        problems.append(
            f"dynamic shapes: {len(dynamic)} tensors with an unknown dimension (first {name!r} {signature}); "
            f"build the model with a fixed input_shape=(H, W, 3) and {FIX}"
        )
    if len(graph.model.subgraphs) > 1:
        problems.append(
            f"{len(graph.model.subgraphs)} subgraphs (control flow): the compiler maps only one subgraph; "
            "export a model without control flow"
        )
    return problems


def _param_tensors(graph: Graph, index: int) -> list[int]:
    tensors = []
    for tensor in _inputs(graph, index):
        source = tflite_inspection.weight_source(graph, tensor)
        if source is not None:
            tensors.append(source)
    return tensors


def _bytes(graph: Graph, tensors: set[int]) -> int:
    buffers = {graph.tensors[t].buffer: graph.buffer_bytes(t) for t in tensors}
    return int(sum(b.size for b in buffers.values() if b is not None))


def analyse(model: Graph | bytes | str | os.PathLike[str]) -> CompatReport:
    """Predicts, op by op in execution order, what the Edge TPU compiler maps (see the module doc).
    Raises flatbuffer.TFLiteFileError for a missing or corrupt file, or one whose ops make no sense
    to the rules (an op without the inputs its type needs)."""
    graph, path = _graph(model)
    with flatbuffer.reading(path, "Edge TPU analysis"):
        return _analyse(graph, path)


def _analyse(graph: Graph, path: str) -> CompatReport:
    problems = _check_compilable(graph)
    rows: list[OpRow] = []
    first: int | None = None
    tail = postprocess_tail(graph)
    for index, op_type in enumerate(graph.op_types):
        if index in tail:
            rows.append(OpRow(
                index, op_type, mapped=False, edge=True, postprocess=True, madds=tflite_inspection.op_madds(graph, index),
                param_bytes=_bytes(graph, set(_param_tensors(graph, index))),
                reason="detection post-process (decode + NMS in float): runs on the CPU by design, after the Edge TPU part"
                if op_type in POSTPROCESS_OPS else "dequantizes the head outputs for the CPU post-process (by design)",
            ))  # fmt: skip
            continue
        problem = op_problem(graph, index)
        side = edge_side(graph, index)
        row = OpRow(index, op_type, mapped=False, reason="", madds=tflite_inspection.op_madds(graph, index))
        row.param_bytes = _bytes(graph, set(_param_tensors(graph, index)))
        if first is not None:
            row.reason = problem or f"after the split at {_label(graph, first)} (everything after it runs on the CPU)"
            row.edge = side is not None
        elif problem is not None:
            first, row.reason = index, problem
        elif side is not None:
            row.edge = True
            external = _dtype(graph, next(iter(_external_tensors(graph, index))))
            if external in QUANTIZED:
                row.mapped = True
                row.reason = f"{side} requantize ({external}); the compiler may leave it to the CPU"
            else:
                row.reason = f"{external} {side} conversion runs on the CPU at the edge (does not split the graph)"
        else:
            row.mapped, row.reason = True, CAVEATS.get(op_type, "")
        rows.append(row)
    compute = [row for row in rows if not row.edge]
    mapped = [row for row in compute if row.mapped]
    madds_total = sum(row.madds for row in rows)
    on_chip = set()
    everything = set()
    for row in rows:
        tensors = set(_param_tensors(graph, row.index))
        everything |= tensors
        if row.mapped:
            on_chip |= tensors
    param_bytes, total = _bytes(graph, on_chip), _bytes(graph, everything)
    report = CompatReport(
        path=path, size_bytes=len(graph.raw), ops=rows, first_unsupported=first,
        ops_mapped=len(mapped) / len(compute) if compute else 0.0,
        madds_mapped=sum(row.madds for row in mapped) / madds_total if madds_total else None,
        madds_total=madds_total, param_bytes=param_bytes, total_param_bytes=total,
        fits_on_chip=param_bytes <= SRAM_BYTES, streamed_bytes=max(param_bytes - SRAM_BYTES, 0),
        problems=problems, warnings=_warnings(graph, rows, param_bytes), status="", verdict="",
    )  # fmt: skip
    report.status, report.verdict = _verdict(graph, report)
    return report


def _warnings(graph: Graph, rows: list[OpRow], param_bytes: int) -> list[str]:
    warnings = []
    if SRAM_BYTES * NEAR_FULL < param_bytes <= SRAM_BYTES:
        warnings.append(
            f"parameters {_size(param_bytes)} are within 10% of the {_size(SRAM_BYTES)} on-chip SRAM; the "
            "compiler also keeps instructions there, so some may stream from host memory"
        )
    float_edges = [
        row.index for row in rows
        if row.edge and not row.postprocess and any(_dtype(graph, t) not in QUANTIZED for t in _external_tensors(graph, row.index))
    ]  # fmt: skip
    if float_edges:
        remedy = (
            "detector files keep float input (export.detection.export_detector), the QUANTIZE costs one pass "
            "over the image" if any(row.postprocess for row in rows) else "export target edgetpu gives uint8 input/output"
        )
        warnings.append(f"float input/output: {len(float_edges)} QUANTIZE/DEQUANTIZE at the edges run on the CPU; {remedy}")
    batch = [t for t in (graph.subgraph.inputs if graph.subgraph.inputs is not None else [])
             if graph.shape_signature(int(t))[:1] == (-1,)]  # fmt: skip
    if batch:
        warnings.append("input batch is -1 in the shape signature: the Edge TPU runs the stored batch 1")
    caveats = Counter(row.op for row in rows if row.mapped and row.op in CAVEATS)
    for op_type, count in caveats.items():
        warnings.append(f"{op_type} x{count}: {CAVEATS[op_type]}")
    return warnings


def _verdict(graph: Graph, report: CompatReport) -> tuple[str, str]:
    compute = report.compute_ops
    share = f"{report.ops_mapped:.0%} of ops, {_percent(report.madds_mapped)} of MAdds on the Edge TPU"
    memory = (
        f"parameters {_size(report.param_bytes)} fit the {_size(SRAM_BYTES)} on-chip SRAM"
        if report.fits_on_chip else
        f"parameters {_size(report.param_bytes)} exceed the {_size(SRAM_BYTES)} on-chip SRAM: "
        f"{_size(report.streamed_bytes)} stream from host memory on every inference (that is where latency goes)"
    )  # fmt: skip
    tail = [row for row in report.ops if row.postprocess]
    if tail:
        share += (
            f"; the detection post-process ({', '.join(sorted({row.op for row in tail}))}, {len(tail)} ops) runs on "
            "the CPU by design"
        )
    if report.problems:
        return "refused", "REFUSED - " + "; ".join(report.problems)
    if report.first_unsupported is None:
        return "mapped", f"ALL {len(compute)} ops on the Edge TPU ({share}); {memory}"
    index = report.first_unsupported
    after = len(report.ops) - index
    return "split", (
        f"SPLIT at {_label(graph, index)}: {report.ops[index].reason}; it and the {after - 1} ops after it run on "
        f"the CPU ({share}); {memory}"
    )


def op_summary(report: CompatReport) -> list[dict[str, Any]]:
    """Per op type and device, like the compiler's operation log: op, count, mapped to."""
    counts = Counter((row.op, row.device, row.reason if not row.mapped else "") for row in report.ops)
    summary = []
    for (op, device, reason), count in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        status = "Mapped to Edge TPU" if device == "Edge TPU" else reason
        summary.append({"op": op, "count": count, "mapped to": device, "status": status})
    return summary


def format_report(report: CompatReport, max_rows: int = 200) -> str:
    """Plain text for people: op-by-op table in execution order, totals and the verdict last."""
    from nlighten_tf.render import markdown_table

    compute = report.compute_ops
    lines = [f"{report.path}: {report.size_bytes:,} bytes, {len(report.ops)} ops ({len(compute)} compute ops)"]
    rows = [
        {"#": row.index, "op": row.op,
         "runs on": row.device + (" (post-process)" if row.postprocess else " (edge)" if row.edge else ""),
         "MAdds": row.madds, "params (bytes)": row.param_bytes, "reason / note": row.reason}
        for row in report.ops[:max_rows]
    ]  # fmt: skip
    lines += ["", "Op by op (execution order):", markdown_table(rows)]
    if len(report.ops) > max_rows:
        lines.append(f"... {len(report.ops) - max_rows} more ops (see the JSON)")
    mapped = [row for row in compute if row.mapped]
    lines += [
        "",
        f"Ops on the Edge TPU: {len(mapped)} of {len(compute)} ({report.ops_mapped:.1%}); MAdds: "
        f"{sum(r.madds for r in mapped):,} of {report.madds_total:,} ({_percent(report.madds_mapped, 1)})",
        f"Parameters on the Edge TPU: {report.param_bytes:,} bytes"
        + (f" ({_size(report.param_bytes)})" if report.param_bytes >= 2**10 else "") + " of "
        f"{_size(SRAM_BYTES)} on-chip SRAM; whole model {report.total_param_bytes:,} bytes"
        + ("" if report.fits_on_chip else f"; STREAMED from host memory: {_size(report.streamed_bytes)}"),
    ]
    lines += [f"problem: {p}" for p in report.problems]
    lines += [f"note: {w}" for w in report.warnings]
    lines.append(f"Edge TPU: {report.verdict}")
    return "\n".join(lines)
