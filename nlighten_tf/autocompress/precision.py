"""The precision axis of auto-compression: int4 weights per op inside an int8 file, chosen to
meet a `size_kb` budget after the channel search (`search.autocompress` with precision=search).

What precision can buy, measured with litert-quantizer 0.11 and ai-edge-litert 2.3
(`benchmarks/autocompress_precision.py`, docs/optimize.md "Auto-compression"):

- file size: LiteRT Quantizer writes CONV_2D and FULLY_CONNECTED ops with int4 weights, int8
  activations and integer compute (its `static_wi4_ai8` policy; no DEQUANTIZE) among int8 ops,
  and the interpreter runs them on XNNPACK and on the builtin kernels with the same outputs.
  Such an op's weights take half the bytes. DEPTHWISE_CONV_2D has no int4 form.
- latency: nothing reliable. On the host, int4 weights in every such op made the file slower
  on XNNPACK, int16 activations slower still, one op in float about as fast as int8 (and a
  third larger): precision cannot buy milliseconds (refused below).
- MAdds: unchanged by precision; Edge TPU on-chip memory: the Edge TPU runs int8 only.

Method, after the channel search and its fine-tune (precision is a post-training choice on the
final channels, measured on real files): the channel search aims at the budget relaxed by the
share of the reduction int4 weights are to buy (`channel_target`: the original's all-int4 file
ratio to the power `precision_share`). Then every eligible op of the fine-tuned model is scored
once, sensitivity-style (`litert_backend.sensitivity`): the file with that op alone at int4
weights (the rest int8, the same calibration ranges) against the all-int8 file, the output
noise-to-signal ratio on validation images, per byte it saves on the real file. Ops are demoted
cheapest first until the written file fits the budget; the file is measured again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf import fidelity
from nlighten_tf.export import litert_backend
from nlighten_tf.export import targets as targets_lib

PRECISIONS = ("fixed", "search")
# The ops litert-quantizer 0.11 writes with int4 weights and int8 activations (`static_wi4_ai8`).
INT4_OPS = ("CONV_2D", "FULLY_CONNECTED")
# Targets the pass writes: int8 compute, written by LiteRT Quantizer.
INT8_TARGETS = tuple(name for name in ("int8", "int8_float_io") if "litert" in targets_lib.TARGETS[name].backends)
_REFUSED = {
    "madds": "precision does not change the MAdds counted from the graph",
    "edgetpu_sram_mib": "the Edge TPU runs int8 ops only (int4-weight ops would fall back to the CPU)",
    "latency_ms": "on the host no per-op precision measured reliably faster than int8 (int4 weights and int16 "
                  "activations slower; docs/optimize.md, \"Auto-compression\")",
}  # fmt: skip


def check(config: Any) -> None:
    """Raises ValueError (one line) for a precision/quantizer/target/budget combination that
    cannot work. `config` is an `AutocompressConfig`."""
    if config.quantizer not in litert_backend.QUANTIZERS:
        raise ValueError(f"unknown quantizer {config.quantizer!r}; valid: {', '.join(litert_backend.QUANTIZERS)}")
    litert_backend.resolve(config.quantizer, targets_lib.get_target(config.measured_target))
    if config.precision not in PRECISIONS:
        raise ValueError(f"unknown precision {config.precision!r}; valid: {', '.join(PRECISIONS)}")
    if not 0.0 <= config.precision_share <= 1.0:
        raise ValueError(f"precision_share must be in [0, 1], got {config.precision_share}")
    if config.precision == "fixed":
        return
    kind = config.parsed_budget.kind
    if kind in _REFUSED:
        raise ValueError(f"precision=search applies to size_kb budgets only, not {kind}: {_REFUSED[kind]}")
    if config.quantizer != "litert":
        raise ValueError(f"precision=search needs quantizer=litert (LiteRT Quantizer writes the per-op precisions), "
                         f"not {config.quantizer}")  # fmt: skip
    if config.target not in INT8_TARGETS:
        raise ValueError(f"precision=search demotes ops of an int8 file: target must be one of "
                         f"{', '.join(INT8_TARGETS)}, not {config.target}")  # fmt: skip


def channel_target(target: float, all_int4_ratio: float, share: float) -> float:
    """What the channel search aims at (fraction of the original file): the budget relaxed by
    `share` (0..1, on a log scale) of the most the int4 weights can save."""
    return target / all_int4_ratio**share


class PrecisionPass:
    """int4 weights per op for one export target, calibrated on `representative`; scored on
    up to `examples` images of `validation` (never the test split)."""

    def __init__(self, target: str, representative: Callable[[], Iterator[list[np.ndarray]]], validation: tf.data.Dataset,
                 examples: int, log: Callable[[str], None]):  # fmt: skip
        self.target, self.representative, self.log = target, representative, log
        self.images, self.labels = _take(validation, examples)

    def _files(self, model: tf_keras.Model) -> tuple[bytes, Any, list[dict[str, Any]]]:
        """(float32 file, calibration, eligible ops with their weight counts)."""
        from nlighten_tf.export import tflite
        from nlighten_tf.litert import flatbuffer as flatbuffer_lib

        float_tflite, _ = tflite.convert(model, "fp32")
        calibration = litert_backend.calibrate(float_tflite, self.target, self.representative)
        graph = flatbuffer_lib.parse(float_tflite)
        ops = []
        for op, (scope, op_type) in zip(graph.operators, litert_backend.op_scopes(float_tflite), strict=True):
            if op_type in INT4_OPS and len(op.inputs) > 1 and graph.is_constant(int(op.inputs[1])):
                ops.append({"op": scope.rstrip(";"), "scope": scope, "type": op_type,
                            "weights": int(np.prod(graph.shape(int(op.inputs[1]))))})  # fmt: skip
        return float_tflite, calibration, ops

    def all_int4_ratio(self, model: tf_keras.Model) -> float:
        """The file with every eligible op at int4 weights, as a fraction of the all-int8 file."""
        float_tflite, calibration, ops = self._files(model)
        int8 = litert_backend.quantize_ops(float_tflite, self.target, calibration, {})
        int4 = litert_backend.quantize_ops(float_tflite, self.target, calibration, {o["scope"]: "int4" for o in ops})
        return len(int4) / len(int8)

    def close_gap(self, model: tf_keras.Model, limit_bytes: float) -> tuple[bytes, dict[str, Any]]:
        """The file with the fewest, least noisy ops at int4 weights that fits `limit_bytes`
        (every eligible op at int4 if even that does not fit): (flatbuffer, report)."""
        start = time.monotonic()
        float_tflite, calibration, ops = self._files(model)
        int8 = litert_backend.quantize_ops(float_tflite, self.target, calibration, {})
        chosen, count = int8, 0
        int8_outputs = fidelity.tflite_outputs(int8, self.images)  # the reference of every op's noise, and reported
        if len(int8) > limit_bytes:
            self.log(f"  precision: the int8 file is {len(int8):,} bytes, the budget {limit_bytes:,.0f}: scoring "
                     f"{len(ops)} ops at int4 weights on {len(self.images)} validation images")  # fmt: skip
            for row in ops:
                demoted = litert_backend.quantize_ops(float_tflite, self.target, calibration, {row["scope"]: "int4"})
                snr = fidelity.compare(int8_outputs, fidelity.tflite_outputs(demoted, self.images))["snr_db"]
                row["saved_bytes"] = len(int8) - len(demoted)
                row["output_nsr"] = 0.0 if not np.isfinite(snr) else float(10.0 ** (-snr / 10.0))
            ops.sort(key=lambda r: r["output_nsr"] / max(r["saved_bytes"], 1))
            saved = np.cumsum([0] + [r["saved_bytes"] for r in ops])
            count = next((k for k, s in enumerate(saved) if len(int8) - s <= limit_bytes), len(ops))
            while True:  # the estimate from single-op savings, then the real file decides
                chosen = litert_backend.quantize_ops(float_tflite, self.target, calibration,
                                                     {r["scope"]: "int4" for r in ops[:count]})  # fmt: skip
                if len(chosen) <= limit_bytes or count == len(ops):
                    break
                count += 1
        for index, row in enumerate(ops):
            row["precision"] = "int4" if index < count else "int8"
        float_outputs = fidelity.tflite_outputs(float_tflite, self.images)
        final_outputs = fidelity.tflite_outputs(chosen, self.images)
        report = {
            "target": self.target, "eligible_ops": len(ops), "int4_ops": count, "int8_bytes": len(int8),
            "final_bytes": len(chosen), "limit_bytes": limit_bytes, "fits": len(chosen) <= limit_bytes,
            "validation_examples": int(len(self.images)),
            "int8_file": _scores(float_outputs, int8_outputs, self.labels),
            "final_file": _scores(float_outputs, final_outputs, self.labels),
            "ops": [{k: v for k, v in row.items() if k != "scope"} for row in ops], "seconds": time.monotonic() - start,
        }  # fmt: skip
        self.log(f"  precision: {count} of {len(ops)} ops at int4 weights: {len(int8):,} -> {len(chosen):,} bytes; "
                 f"validation top-1 of the file {100 * report['int8_file']['top1']:.2f}% (all int8) -> "
                 f"{100 * report['final_file']['top1']:.2f}%")  # fmt: skip
        return chosen, report


def _take(data: tf.data.Dataset, examples: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels, count = [], [], 0
    for batch_images, batch_labels in data:
        images.append(np.asarray(batch_images, np.float32))
        labels.append(np.asarray(batch_labels).reshape(len(images[-1]), -1))
        count += len(images[-1])
        if count >= examples:
            break
    if not images:
        raise ValueError("precision=search scores ops on validation images: the validation data is empty")
    return np.concatenate(images)[:examples], np.concatenate(labels)[:examples]


def _scores(float_outputs: np.ndarray, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 on the labels and agreement/SNR against the float32 file."""
    compared = fidelity.compare(float_outputs, outputs)
    label = labels.argmax(-1) if labels.shape[-1] > 1 else labels[:, 0]
    return {"top1": float(np.mean(outputs.argmax(-1) == label)), "top1_agreement_float": compared["top1_agreement"],
            "snr_db_float": compared["snr_db"]}  # fmt: skip


def markdown_lines(report: dict[str, Any]) -> list[str]:
    """The report.md section of a precision search."""
    from nlighten_tf.render import markdown_table

    precision = report["per_op_precision"]
    rows = [{k: row.get(k) for k in ("op", "type", "weights", "saved_bytes", "output_nsr", "precision")}
            for row in precision["ops"]]  # fmt: skip
    return [
        "", "## Precision per op", "",
        f"- {precision['int4_ops']} of {precision['eligible_ops']} CONV_2D/FULLY_CONNECTED ops at int4 weights (int8 "
        f"activations), the rest int8: {precision['int8_bytes']:,} -> {precision['final_bytes']:,} bytes; the channel "
        f"search aimed at {100 * report['channel_target']:.1f}% of the original file (all-int4 ratio "
        f"{report['all_int4_ratio']:.3f}, share {report['precision_share']:g})",
        f"- validation top-1 of the file on {precision['validation_examples']} images: "
        f"{100 * precision['int8_file']['top1']:.2f}% all int8 -> {100 * precision['final_file']['top1']:.2f}% mixed",
        "", markdown_table(rows),
    ]  # fmt: skip
