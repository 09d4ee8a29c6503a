"""The export targets: one name per (quantization, input/output type, sparse storage)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    description: str
    quantization: str  # "none", "float16", "dynamic" (weights only), "full" (weights + activations),
    # "weight_only" (int4 weights, float compute) or "mixed" (per-op precision, export/litert_backend.py)
    io_type: str  # model input/output dtype: "float32", "int8" or "uint8"
    sparse: bool  # converter EXPERIMENTAL_SPARSITY: pruned weights stored sparse, read by DENSIFY
    # Which quantizers write it, the default ("auto") first: the TF converter and/or LiteRT Quantizer.
    backends: tuple[str, ...] = ("converter",)

    @property
    def needs_calibration(self) -> bool:
        return self.quantization in ("full", "mixed")


BOTH = ("converter", "litert")
LITERT = ("litert",)

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("fp32", "float32, dense", "none", "float32", False),
        Target("fp32_sparse", "float32, pruned weights stored sparse for XNNPACK sparse inference", "none", "float32", True),
        Target("float16", "float16 weights, float32 input/output", "float16", "float32", False),
        Target("dynamic_int8", "dynamic-range: int8 weights, float activations and I/O", "dynamic", "float32", False),
        Target("int8", "full-integer int8, int8 input/output", "full", "int8", False, BOTH),
        Target("int8_float_io", "full-integer int8, float32 input/output", "full", "float32", False, BOTH),
        Target("int8_sparse", "full-integer int8 with weights stored sparse, int8 input/output", "full", "int8", True),
        # The same int8 sparse graph with QUANTIZE/DEQUANTIZE at its ends: the smallest file an
        # Android app can load with MediaPipe Tasks or the Task Library (neither takes int8 input).
        Target(
            "int8_sparse_float_io", "full-integer int8 with weights stored sparse, float32 input/output (MediaPipe)",
            "full", "float32", True,
        ),
        # The Edge TPU compiler wants every op int8 and no DENSIFY; Coral's examples feed uint8.
        Target("edgetpu", "full-integer int8, dense, uint8 input/output for edgetpu_compiler", "full", "uint8", False),
        # LiteRT Quantizer only (nlighten_tf/export/litert_backend.py).
        Target("int16x8", "int16 activations, int8 weights, float32 input/output", "full", "float32", False, LITERT),
        Target("int4_weights", "int4 weights dequantized at load, float compute and I/O", "weight_only", "float32",
               False, LITERT),  # fmt: skip
        Target("mixed", "int8 with the most sensitive ops promoted to int16 activations, float32 input/output",
               "mixed", "float32", False, LITERT),  # fmt: skip
    )
}


# Input tensor types MediaPipe Tasks' ImageClassifier and ObjectDetector accept (mediapipe 1.2.2
# refuses others at load: "Type mismatch for input tensor ... Requested one of these types:
# uint8/float32, got INT8"); uint8 and float32 outputs are read (uint8 dequantized).
MEDIAPIPE_TYPES = ("uint8", "float32")


def mediapipe_loads(target: str | Target, io_type: str | None = None) -> bool:
    """Whether MediaPipe Tasks can load this target's file (its input/output dtype, or the
    `io_type` override of a full-integer target)."""
    target = get_target(target) if isinstance(target, str) else target
    return (io_type or target.io_type) in MEDIAPIPE_TYPES


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown export target {name!r}; valid targets: {', '.join(TARGETS)}") from None
