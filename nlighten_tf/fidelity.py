"""How closely a compressed file follows its float original on the same inputs, without labels:
top-1 agreement and the output signal-to-noise ratio.

This is the figure for an ImageNet model measured on the real images the project has
(`nlighten_tf.data.reference_images`), where there are no ImageNet labels, and for any
quantization choice (`nlighten_tf.export`'s backends, mixed precision, synthetic calibration).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def snr_db(reference: np.ndarray, outputs: np.ndarray) -> float:
    """10 log10(sum reference^2 / sum (outputs - reference)^2) over every output value; inf
    when identical."""
    reference = np.asarray(reference, np.float64).reshape(len(reference), -1)
    noise = float(np.sum((np.asarray(outputs, np.float64).reshape(reference.shape) - reference) ** 2))
    signal = float(np.sum(reference**2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * float(np.log10(max(signal, 1e-30) / noise))


# A reference top-1 probability at or above this is a clear decision. Below it, top-1 agreement
# measures tie-breaking between near-equal classes: measured on the ImageNet Lite0 over 252 photo
# crops (docs/benchmarks.md), int8 agreed on 67% of the 105 crops under 0.2 and on all 53 over 0.5.
CONFIDENT = 0.5


def probabilities(outputs: np.ndarray) -> np.ndarray:
    """Rows that are already probabilities (non-negative, summing to 1) as they are; logits
    through a softmax."""
    outputs = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    if outputs.size and outputs.min() >= 0.0 and np.allclose(outputs.sum(-1), 1.0, atol=1e-3):
        return outputs
    shifted = np.exp(outputs - outputs.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def compare(reference: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """{"top1_agreement", "snr_db", "max_abs_diff", "examples", "confident_examples",
    "top1_agreement_confident"} of `outputs` against `reference` (both (N, classes), dequantized).
    The confident figures count only examples whose reference top-1 probability is at least
    `CONFIDENT` (None when there are none)."""
    reference, outputs = np.asarray(reference), np.asarray(outputs)
    if reference.shape != outputs.shape:
        raise ValueError(f"outputs of shape {outputs.shape} cannot be compared with reference {reference.shape}")
    flat_ref, flat_out = reference.reshape(len(reference), -1), outputs.reshape(len(outputs), -1)
    same = np.argmax(flat_ref, -1) == np.argmax(flat_out, -1)
    confident = probabilities(flat_ref).max(-1) >= CONFIDENT if len(flat_ref) else np.zeros(0, bool)
    return {
        "top1_agreement": float(np.mean(same)),
        "snr_db": snr_db(flat_ref, flat_out),
        "max_abs_diff": float(np.max(np.abs(flat_ref - flat_out))),
        "examples": int(len(reference)),
        "confident_examples": int(confident.sum()),
        "top1_agreement_confident": float(np.mean(same[confident])) if confident.any() else None,
    }


def tflite_outputs(model: str | os.PathLike[str] | bytes, inputs: np.ndarray, threads: int = 2) -> np.ndarray:
    """Dequantized outputs of a `.tflite` (path or bytes) on float model-domain inputs."""
    from nlighten_tf.litert import runtime

    return runtime.load(model, threads=threads).predict(inputs)


def compare_files(
    reference: str | os.PathLike[str] | bytes, candidates: dict[str, str | os.PathLike[str] | bytes], inputs: np.ndarray
) -> dict[str, dict[str, Any]]:
    """`compare` of every candidate file against the reference file on the same inputs."""
    expected = tflite_outputs(reference, inputs)
    return {name: compare(expected, tflite_outputs(model, inputs)) for name, model in candidates.items()}
