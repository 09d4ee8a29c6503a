"""The second quantization backend: LiteRT Quantizer (PyPI `litert-quantizer`) on the float32
`.tflite`, and the `mixed` target's per-op precision chosen by measured sensitivity.

The float32 file comes from the converter path (`tflite.convert(model, "fp32")`); calibration
runs the same `representative_dataset` generator the converter gets, so both backends see
identical inputs. LiteRT's own documentation marks quantization *during conversion* as
deprecated in favour of this route (docs/facts.md).

What LiteRT Quantizer 0.11 produces here (measured, tests/export/test_litert_backend.py):
int8 activations + int8 channelwise weights with int8 model I/O (`int8`) or, with the model's
INPUT/OUTPUT left float, QUANTIZE/DEQUANTIZE at the ends (`int8_float_io`); int16 activations
(`int16x8`); int4 weights with float compute (`int4_weights`, DEQUANTIZE at load, runs on both
XNNPACK and the builtin kernels). It does not write sparse (DENSIFY) weights, uint8 I/O or QAT
ranges: those targets stay on the converter.

Mixed precision: each op's sensitivity is measured once, with that op alone quantized to int8
(the rest float, the same calibration ranges): the noise it puts into the model's outputs against
the float file's, on a few calibration examples (one small quantization per op). Then, from the
all-int8 file, the most sensitive ops are promoted to int16 activations (or float) in doubling
groups (1, 2, 4, ... ops: log2(ops) + 2 more quantizations) until held-out data, never used for
calibration or the scan, meets the target (or the size budget stops it).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from nlighten_tf.errors import NlightenError
from nlighten_tf.optimize.fields import documented

QUANTIZERS = ("auto", "converter", "litert")
_SIGNATURE = "serving_default"
PROMOTIONS = ("int16", "float")


class QuantizerError(NlightenError, ValueError):
    """A target/backend combination LiteRT Quantizer cannot produce, with what to do instead."""


@dataclasses.dataclass
class MixedConfig:
    """The `mixed` target's goal: the fewest promotions whose held-out outputs meet it."""

    min_agreement: float = documented(0.995, "mixed target: top-1 agreement with the float32 file on held-out examples")
    min_snr_db: float | None = documented(None, "mixed target: output SNR (dB) against the float32 file (null: not checked)")
    max_size_ratio: float | None = documented(
        None, "mixed size budget as a fraction of the float32 file (null: none); promotion stops at it")
    promote_to: str = documented("int16", "what mixed promotes its most sensitive ops to: int16 activations (a16w8) "
                                 "or float", choices=PROMOTIONS)  # fmt: skip
    held_out_fraction: float = documented(
        0.25, "mixed: the fraction of the calibration examples held out to check the target (never calibrated on)")
    scan_examples: int = documented(16, "mixed: calibration examples the per-op sensitivity scan runs")

    def __post_init__(self) -> None:
        if self.promote_to not in PROMOTIONS:
            raise QuantizerError(f"mixed promote_to must be one of {', '.join(PROMOTIONS)}, got {self.promote_to!r}")
        if not 0.0 < self.held_out_fraction < 1.0:
            raise QuantizerError(f"mixed held_out_fraction must be in (0, 1), got {self.held_out_fraction}")


@dataclasses.dataclass
class Quantized:
    flatbuffer: bytes
    notes: list[str]
    report: dict[str, Any] | None  # the mixed target's choice (per-op sensitivity, precision, steps)
    step_files: list[bytes] = dataclasses.field(default_factory=list)  # mixed: each step's file, for benchmarks


def version() -> str:
    return importlib.metadata.version("litert-quantizer")


def resolve(quantizer: str, target: Any) -> str:
    """The backend that writes `target`: "auto" picks the converter where it produces the
    target, else LiteRT Quantizer. Raises QuantizerError for a backend that cannot."""
    if quantizer not in QUANTIZERS:
        raise QuantizerError(f"quantizer must be one of {', '.join(QUANTIZERS)}, got {quantizer!r}")
    if quantizer == "auto":
        return target.backends[0]
    if quantizer not in target.backends:
        only = " or ".join(target.backends)
        why = {
            # Measured: given the fp32_sparse file it keeps the DENSIFY weights float32 and adds a
            # QUANTIZE per weight at run time, not int8 sparse storage.
            "int8_sparse": "LiteRT Quantizer does not write sparse (DENSIFY) weights as int8",
            "int8_sparse_float_io": "LiteRT Quantizer does not write sparse (DENSIFY) weights as int8",
            "edgetpu": "LiteRT Quantizer gives int8 or float I/O, not the uint8 the Edge TPU target takes",
        }.get(target.name, f"target {target.name} is written by the {only} backend")
        raise QuantizerError(f"quantizer {quantizer} cannot produce target {target.name} ({why}): use quantizer={only}")
    return quantizer


def quantize(
    float_tflite: bytes,
    target: Any,
    representative_dataset: Callable[[], Iterator[list[np.ndarray]]] | None,
    io_type: str | None = None,
    mixed: MixedConfig | None = None,
    held_out: np.ndarray | None = None,
    log: Callable[[str], None] = print,
) -> Quantized:
    """Quantizes a float32 flatbuffer to `target` (a `targets.Target` LiteRT writes)."""
    if io_type not in (None, target.io_type):
        raise QuantizerError(
            f"quantizer litert writes {target.name} with {target.io_type} I/O only, not {io_type}: "
            "use quantizer=converter for another I/O type"
        )
    if target.quantization == "weight_only":
        return Quantized(_run(float_tflite, _recipe(target.name), None), [_note(target)], None)
    if representative_dataset is None:
        raise QuantizerError(f"target {target.name} calibrates its activation ranges: pass representative_dataset")
    samples = [list(example) for example in representative_dataset()]
    inputs = _input_names(float_tflite)
    if target.name != "mixed":
        calibration = _calibrate(float_tflite, _recipe(target.name), samples, inputs)
        return Quantized(_run(float_tflite, _recipe(target.name), calibration), [_note(target)], None)
    return _mixed(float_tflite, samples, inputs, mixed or MixedConfig(), held_out, log)


def _note(target: Any) -> str:
    return f"quantized by LiteRT Quantizer {version()} from the float32 file ({target.description})"


# --- recipes ------------------------------------------------------------------------------


def _recipe(target_name: str, promoted: dict[str, str] | None = None) -> Any:
    """A `RecipeManager` for a target; `promoted` maps op scopes to "int8"/"int16"/"float" (mixed)
    or "int4" (int4 weights, int8 activations and integer compute: CONV_2D and FULLY_CONNECTED
    only, litert-quantizer 0.11's `static_wi4_ai8` policy)."""
    from litert_quantizer import qtyping, recipe_manager

    ops = qtyping.TFLOperationName
    manager = recipe_manager.RecipeManager()
    if target_name == "int4_weights":
        manager.add_weight_only_config(".*", ops.ALL_SUPPORTED, 4)
        return manager
    if target_name != "float":  # "float": only the ops in `promoted` are quantized (the sensitivity scan)
        manager.add_static_config(".*", ops.ALL_SUPPORTED, 16 if target_name == "int16x8" else 8, 8)
    for scope, precision in (promoted or {}).items():
        # Later configs win for the ops their regex matches: the promoted ops' own precision.
        regex = "^" + re.escape(scope) + "$"
        if precision == "float":
            manager.add_quantization_config(regex, ops.ALL_SUPPORTED, algorithm_key="no_quantize")
        elif precision == "int4":
            manager.add_static_config(regex, ops.ALL_SUPPORTED, 8, 4)
        else:
            manager.add_static_config(regex, ops.ALL_SUPPORTED, 16 if precision == "int16" else 8, 8)
    if target_name != "int8":
        # Float model I/O: QUANTIZE/DEQUANTIZE at the ends (what MediaPipe Tasks loads).
        for end in (ops.INPUT, ops.OUTPUT):
            manager.add_quantization_config(".*", end, algorithm_key="no_quantize")
    return manager


def calibrate(
    float_tflite: bytes, target_name: str, representative_dataset: Callable[[], Iterator[list[np.ndarray]]]
) -> Any:
    """Activation ranges of the float32 file for `target_name` (`_calibrate`), to quantize it
    many times with different per-op precisions (`quantize_ops`)."""
    samples = [list(example) for example in representative_dataset()]
    return _calibrate(float_tflite, _recipe(target_name), samples, _input_names(float_tflite))


def quantize_ops(float_tflite: bytes, target_name: str, calibration: Any, precisions: dict[str, str]) -> bytes:
    """The float32 file quantized as `target_name` except the ops in `precisions` (op scope as
    `op_scopes` gives it -> "int8", "int16", "float" or "int4")."""
    return _run(float_tflite, _recipe(target_name, precisions), calibration)


def _quantizer(float_tflite: bytes, manager: Any) -> Any:
    from litert_quantizer import quantizer

    q = quantizer.Quantizer(float_tflite)
    q.load_quantization_recipe(manager.get_quantization_recipe())
    return q


def _calibrate(float_tflite: bytes, manager: Any, samples: list[list[np.ndarray]], inputs: list[str]) -> Any:
    """Activation ranges: each tensor's min and max over every example, as the TF converter
    takes them. The quantizer's own default (`Quantizer.calibrate`) is a moving average over
    the examples, which clips rare large logits: measured on the quickstart network, int16x8's
    logit SNR was 8.7 dB with it (the converter's int8: 27 dB)."""
    from litert_quantizer import calibrator
    from litert_quantizer.utils import qsv_utils

    data = {_SIGNATURE: [dict(zip(inputs, example, strict=True)) for example in samples]}
    try:
        calib = calibrator.Calibrator(float_tflite, num_threads=2, qsv_update_func=qsv_utils.min_max_update)
        calib.calibrate(data, manager)
        return calib.get_model_qsvs()
    except (ValueError, RuntimeError) as error:
        raise QuantizerError(f"LiteRT Quantizer calibration failed: {' '.join(str(error).split())[:500]}") from error


def _run(float_tflite: bytes, manager: Any, calibration: Any) -> bytes:
    try:
        result = _quantizer(float_tflite, manager).quantize(calibration, enable_progress_report=False)
    except (ValueError, RuntimeError, KeyError) as error:
        raise QuantizerError(f"LiteRT Quantizer failed: {' '.join(str(error).split())[:500]}") from error
    return inline_buffers(bytes(result.quantized_model))


def inline_buffers(tflite: bytes) -> bytes:
    """The same model with every buffer inside the flatbuffer. LiteRT Quantizer writes the
    weights after the flatbuffer (offset/size, the > 2 GB layout); anything that unpacks and
    repacks the model (metadata, densify) would drop them."""
    import flatbuffers

    from nlighten_tf.litert import flatbuffer as flatbuffer_lib

    fb = flatbuffer_lib.schema()
    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(tflite, 0))
    moved = False
    for buffer in model.buffers or []:
        if buffer.offset and buffer.offset > 1:
            buffer.data = np.frombuffer(tflite[buffer.offset : buffer.offset + buffer.size], np.uint8)
            buffer.offset = buffer.size = 0
            moved = True
    if not moved:
        return tflite
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), flatbuffer_lib.TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _input_names(float_tflite: bytes) -> list[str]:
    from nlighten_tf.litert import runtime

    interpreter = runtime.load(float_tflite, xnnpack=False).interpreter
    signatures = interpreter.get_signature_list()
    if _SIGNATURE not in signatures:
        raise QuantizerError(f"the float32 file has no {_SIGNATURE!r} signature (has {', '.join(signatures)})")
    return list(signatures[_SIGNATURE]["inputs"])


# --- mixed precision ----------------------------------------------------------------------


def op_scopes(tflite: bytes) -> list[tuple[str, str]]:
    """(scope, op type) of every op the way LiteRT Quantizer's recipe regexes see it: the
    op's output tensor names joined by ";" plus a trailing ";"."""
    from nlighten_tf.litert import flatbuffer as flatbuffer_lib

    graph = flatbuffer_lib.parse(tflite)
    scopes = []
    for op, op_type in zip(graph.operators, graph.op_types, strict=True):
        names = [graph.tensor_name(int(i)) for i in op.outputs if int(i) >= 0]
        scopes.append((";".join(names) + ";", op_type))
    return scopes


def sensitivity(
    float_tflite: bytes, calibration: Any, scan_inputs: np.ndarray, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Each op's own contribution to the output error, most sensitive first: the op alone
    quantized to int8 (the rest float, the same calibration ranges), the noise-to-signal ratio
    of the model's outputs against the float file's on `scan_inputs`. One small quantization
    per op; ops the quantizer leaves float (their file is the float file) score 0."""
    from nlighten_tf import fidelity

    reference = fidelity.tflite_outputs(float_tflite, scan_inputs)
    rows, last_report = [], time.monotonic()
    scopes = op_scopes(float_tflite)
    for index, (scope, op_type) in enumerate(scopes):
        flatbuffer = _run(float_tflite, _recipe("float", {scope: "int8"}), calibration)
        snr = fidelity.compare(reference, fidelity.tflite_outputs(flatbuffer, scan_inputs))["snr_db"]
        nsr = 0.0 if not np.isfinite(snr) else float(10.0 ** (-snr / 10.0))
        rows.append({"op": scope.rstrip(";"), "scope": scope, "type": op_type, "output_nsr": nsr,
                     "output_snr_db": float(snr) if np.isfinite(snr) else None})  # fmt: skip
        if time.monotonic() - last_report > 30:
            log(f"  mixed: {index + 1}/{len(scopes)} ops scanned")
            last_report = time.monotonic()
    return sorted(rows, key=lambda row: -row["output_nsr"])


def _mixed(
    float_tflite: bytes, samples: list[list[np.ndarray]], inputs: list[str], config: MixedConfig,
    held_out: np.ndarray | None, log: Callable[[str], None],
) -> Quantized:  # fmt: skip
    from nlighten_tf import fidelity

    notes = []
    if held_out is None:
        count = max(1, round(config.held_out_fraction * len(samples)))
        if len(samples) - count < 1:
            raise QuantizerError(f"mixed needs calibration and held-out examples: got {len(samples)} representative examples")
        held_out = np.concatenate([example[0] for example in samples[-count:]])
        samples = samples[:-count]
        notes.append(f"mixed: {len(samples)} representative examples calibrate and scan, the last {count} are "
                     "held out to check the target")  # fmt: skip
    start = time.monotonic()
    calibration = _calibrate(float_tflite, _recipe("mixed"), samples, inputs)
    int8 = _run(float_tflite, _recipe("mixed"), calibration)
    scan_inputs = np.concatenate([example[0] for example in samples[: config.scan_examples]])
    log(f"  mixed: scanning each op's sensitivity on {len(scan_inputs)} calibration examples ...")
    ops = sensitivity(float_tflite, calibration, scan_inputs, log)
    scan_seconds = time.monotonic() - start
    reference = fidelity.tflite_outputs(float_tflite, held_out)
    budget = None if config.max_size_ratio is None else config.max_size_ratio * len(float_tflite)
    counts = sorted({0, *[min(2**i, len(ops)) for i in range(len(ops).bit_length() + 1)]})
    steps, step_files, chosen = [], [], None
    for promoted_count in counts:
        promoted = {row["scope"]: config.promote_to for row in ops[:promoted_count]}
        flatbuffer = int8 if not promoted else _run(float_tflite, _recipe("mixed", promoted), calibration)
        scores = fidelity.compare(reference, fidelity.tflite_outputs(flatbuffer, held_out))
        within_budget = budget is None or len(flatbuffer) <= budget
        met = within_budget and scores["top1_agreement"] >= config.min_agreement and (
            config.min_snr_db is None or scores["snr_db"] >= config.min_snr_db
        )
        step_files.append(flatbuffer)
        steps.append({"promoted": promoted_count, "size_bytes": len(flatbuffer), "top1_agreement": scores["top1_agreement"],
                      "snr_db": scores["snr_db"], "within_budget": within_budget, "meets_target": met})  # fmt: skip
        log(f"  mixed: {promoted_count} ops {config.promote_to}: {len(flatbuffer):,} bytes, agreement "
            f"{100 * scores['top1_agreement']:.2f}%, SNR {scores['snr_db']:.1f} dB{' (target met)' if met else ''}")  # fmt: skip
        if within_budget:
            chosen = (promoted_count, flatbuffer)
        if met or not within_budget:
            break
    if chosen is None:
        raise QuantizerError(f"mixed: even the all-int8 file ({len(int8):,} bytes) exceeds the size budget "
                             f"{config.max_size_ratio} x the float32 file ({len(float_tflite):,} bytes)")  # fmt: skip
    promoted_count, flatbuffer = chosen
    met = any(step["meets_target"] and step["promoted"] == promoted_count for step in steps)
    for index, row in enumerate(ops):
        row["precision"] = config.promote_to if index < promoted_count else "int8"
    notes.append(
        f"mixed: {promoted_count} of {len(ops)} ops {config.promote_to}, the rest int8 (sensitivity scan "
        f"{scan_seconds:.1f} s); target {'met' if met else 'NOT met'} on {len(held_out)} held-out examples"
    )
    report = {
        "config": dataclasses.asdict(config), "met": met, "promoted": promoted_count, "ops": ops, "steps": steps,
        "float_bytes": len(float_tflite), "calibration_examples": len(samples), "held_out_examples": int(len(held_out)),
        "scan_seconds": scan_seconds,
    }  # fmt: skip
    return Quantized(flatbuffer, notes, report, step_files)
