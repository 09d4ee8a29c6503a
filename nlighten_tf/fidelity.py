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


def compare(reference: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """{"top1_agreement", "snr_db", "max_abs_diff", "examples"} of `outputs` against `reference`
    (both (N, classes), dequantized)."""
    reference, outputs = np.asarray(reference), np.asarray(outputs)
    if reference.shape != outputs.shape:
        raise ValueError(f"outputs of shape {outputs.shape} cannot be compared with reference {reference.shape}")
    flat_ref, flat_out = reference.reshape(len(reference), -1), outputs.reshape(len(outputs), -1)
    return {
        "top1_agreement": float(np.mean(np.argmax(flat_ref, -1) == np.argmax(flat_out, -1))),
        "snr_db": snr_db(flat_ref, flat_out),
        "max_abs_diff": float(np.max(np.abs(flat_ref - flat_out))),
        "examples": int(len(reference)),
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
