"""Precision per op in auto-compression, on the quickstart network (Fashion-MNIST, 32 px).

1. What per-op precision buys (the original network, LiteRT Quantizer files from one
   calibration): bytes, int4 tensors, agreement/SNR against the float32 file on 512 validation
   images and host latency (XNNPACK and builtin kernels, 1 thread, every file interleaved in one
   run) of the int8 file, int8 with every CONV_2D/FULLY_CONNECTED at int4 weights (int8
   activations), int8 with the largest op's weights at int4, the largest op at int16 activations
   or float, every op at int16 activations, and the float32 file.
2. `autocompress` at each `--budgets` size budget: channels only (precision=fixed) against
   channels + int4 weights (precision=search), both files written by LiteRT Quantizer, the
   same search settings and fine-tune as `benchmarks/autocompress.py`; int8 file top-1 on the
   10k test images measured once per row, after every choice (made on the last 5% of the
   training images).

  python benchmarks/autocompress_precision.py --keras_model=runs/quickstart/01-train/model.h5 \
      [--budgets=size_kb:0.35x] [--epochs=0.5] [--output_dir=benchmarks/results/autocompress_precision]

Writes autocompress_precision.json / .md; each finished row is written at once.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("keras_model", "runs/quickstart/01-train/model.h5", "The trained quickstart network (.h5).")
flags.DEFINE_list("budgets", ["size_kb:0.35x"], "Size budgets, in order.")
flags.DEFINE_list("precisions", ["fixed", "search"], "precision settings per budget.")
flags.DEFINE_float("epochs", 0.5, "Fine-tuning epochs after each search (same for every row).")
flags.DEFINE_float("learning_rate", 5e-4, "Fine-tuning learning rate.")
flags.DEFINE_float("step", 0.2, "Fraction of a group's channels one search proposal removes.")
flags.DEFINE_integer("score_batches", 2, "Validation batches (of 128) each proposal is scored on.")
flags.DEFINE_integer("latency_runs", 100, "Interleaved invokes per file in the per-op latency run.")
flags.DEFINE_bool("probe", True, "Run part 1 (what per-op precision buys).")
flags.DEFINE_string("output_dir", "benchmarks/results/autocompress_precision", "Where the JSON and markdown go.")

STEM = "autocompress_precision"


def probe(model, train, validation_images, scratch: Path) -> list[dict]:
    """Part 1: per-op precision on the original network: bytes, fidelity and host latency."""
    import numpy as np

    from nlighten_tf import fidelity
    from nlighten_tf.autocompress import precision, search
    from nlighten_tf.bench.latency import measure_interleaved
    from nlighten_tf.export import litert_backend, tflite
    from nlighten_tf.litert import flatbuffer as flatbuffer_lib

    float_tflite, _ = tflite.convert(model, "fp32")
    calibration = litert_backend.calibrate(float_tflite, "int8", search.representative(train, 64))
    graph = flatbuffer_lib.parse(float_tflite)
    scopes = litert_backend.op_scopes(float_tflite)
    weights = {scope: int(np.prod(graph.shape(int(op.inputs[1])))) for op, (scope, kind) in zip(graph.operators, scopes, strict=True)
               if kind in precision.INT4_OPS}  # fmt: skip
    largest = max(weights, key=weights.get)
    files = {
        "int8": {},
        "int8, every CONV_2D/FC int4 weights": {s: "int4" for s in weights},
        "int8, largest op int4 weights": {largest: "int4"},
        "int8, largest op int16 activations": {largest: "int16"},
        "int8, largest op float": {largest: "float"},
        "int16 activations everywhere": {s: "int16" for s, _ in scopes},
    }
    paths = []
    for precisions in files.values():
        path = scratch / f"probe{len(paths)}.tflite"
        path.write_bytes(litert_backend.quantize_ops(float_tflite, "int8", calibration, precisions))
        paths.append(path)
    (scratch / "probe_fp32.tflite").write_bytes(float_tflite)
    paths.append(scratch / "probe_fp32.tflite")
    names = [*files, "float32"]
    reference = fidelity.tflite_outputs(float_tflite, validation_images)
    xnnpack = measure_interleaved(paths, runs=FLAGS.latency_runs, warmup=10)
    builtin = measure_interleaved(paths, runs=FLAGS.latency_runs, warmup=10, xnnpack=False)
    rows = []
    for index, (name, path) in enumerate(zip(names, paths, strict=True)):
        tensor_types = [flatbuffer_lib.dtype_name(t.type) for t in flatbuffer_lib.load(path).tensors]
        scores = fidelity.compare(reference, fidelity.tflite_outputs(path, validation_images))
        rows.append({
            "file": name, "bytes": path.stat().st_size, "size_ratio": path.stat().st_size / paths[0].stat().st_size,
            "int4_tensors": tensor_types.count("int4"), "agreement_float": scores["top1_agreement"],
            "snr_db_float": scores["snr_db"], "xnnpack_ms": xnnpack[index].median_ms,
            "xnnpack_ratio": xnnpack[index].median_ms / xnnpack[0].median_ms, "builtin_ms": builtin[index].median_ms,
            "builtin_ratio": builtin[index].median_ms / builtin[0].median_ms,
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import os
    import tempfile

    from nlighten_tf.autocompress import search as autocompress
    from nlighten_tf.keras_io import load_keras
    from nlighten_tf.optimize import training

    start = time.time()
    model = load_keras(Path(FLAGS.keras_model))
    train, validation, test = common.quickstart_splits()
    validation_images = common.arrays(validation)[0][:512]
    scratch = Path(tempfile.mkdtemp(prefix="autocompress_precision_"))
    out = Path(FLAGS.output_dir)
    payload = {"model": FLAGS.keras_model, "budgets": FLAGS.budgets, "epochs": FLAGS.epochs, "step": FLAGS.step,
               "score_batches": FLAGS.score_batches, "cpu_load": os.getloadavg()[0], "probe": [], "rows": []}  # fmt: skip
    if FLAGS.probe:
        payload["probe"] = probe(model, train, validation_images, scratch)
        _write(payload, out, start)
    test_images, test_labels = common.arrays(test)
    for budget in FLAGS.budgets:
        for precision in FLAGS.precisions:
            config = autocompress.AutocompressConfig(
                budget=budget, quantizer="litert", precision=precision, step=FLAGS.step,
                score_batches=FLAGS.score_batches,
            )  # fmt: skip
            tuning = training.TrainConfig(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, verbose=0)
            load = os.getloadavg()[0]
            try:
                result = autocompress.autocompress(model, config, train, validation, tuning, log=print)
            except ValueError as error:  # unreachable budget: a row that says so
                print(f"{budget} {precision}: {error}", flush=True)
                payload["rows"].append({"budget": budget, "precision": precision, "met": False, "error": str(error)})
                continue
            report = result.report
            per_op = report.get("per_op_precision", {})
            payload["rows"].append({
                "budget": budget, "precision": precision, "met": report["met"],
                "achieved": round(report["achieved"]["in_budget_terms"], 4), "size_kb": len(result.flatbuffer) / 1024,
                "params_ratio": report["params"] / report["original"]["params"],
                "int4_ops": per_op.get("int4_ops", 0), "val_accuracy_keras": report["validation"]["final"]["accuracy"],
                "val_top1_file": per_op.get("final_file", {}).get("top1"),
                "test_int8_accuracy": common.tflite_top1(result.flatbuffer, test_images, test_labels),
                "search_s": round(report["search_seconds"]), "total_s": round(report["seconds"]), "load": round(load, 1),
                "channel_target": report.get("channel_target"), "choices": {g: c["kept"] for g, c in report["choices"].items()},
                "per_op_precision": per_op or None, "rounds": report["rounds"],
            })  # fmt: skip
            print(f"{budget} precision={precision}: test int8 {100 * payload['rows'][-1]['test_int8_accuracy']:.2f}%",
                  flush=True)  # fmt: skip
            _write(payload, out, start)
    _write(payload, out, start)
    return 0


def _write(payload: dict, out: Path, start: float) -> None:
    from nlighten_tf.render import markdown_table

    text = [
        "Precision per op on the quickstart network (Fashion-MNIST, 32 px), `benchmarks/autocompress_precision.py`. "
        "Files written by LiteRT Quantizer.", "",
    ]  # fmt: skip
    if payload["probe"]:
        text += [
            "What per-op precision buys on the original network: agreement and SNR against the float32 file on 512 "
            "validation images; median latency on the host, 1 thread, every file interleaved in one run per runtime "
            "path (ratios to the int8 file).", "",
            markdown_table(payload["probe"], ["file", "bytes", "size_ratio", "int4_tensors", "agreement_float",
                                              "snr_db_float", "xnnpack_ms", "xnnpack_ratio", "builtin_ms",
                                              "builtin_ratio"]), "",
        ]  # fmt: skip
    if payload["rows"]:
        text += [
            f"Channels only (precision=fixed) against channels + int4 weights (precision=search), {payload['epochs']:g} "
            "epoch fine-tune each; `achieved` measured on the final file; int8 file top-1 on the 10k test images, once.",
            "", markdown_table(payload["rows"], ["budget", "precision", "met", "achieved", "size_kb", "params_ratio",
                                                 "int4_ops", "val_top1_file", "test_int8_accuracy", "search_s",
                                                 "total_s", "load"]), "",
        ]  # fmt: skip
    common.write_results(str(out), STEM, payload, "\n".join(text), start)


if __name__ == "__main__":
    app.run(main)
