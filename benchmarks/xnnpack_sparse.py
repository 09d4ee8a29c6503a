"""XNNPACK sparse inference on this machine: dense vs sparse fp32 latency.

MobileNetV2 1.0@224 and EfficientNet-Lite0@224, built sparse_ready (symmetric explicit
padding) and, as the control, with Keras' default 'same' padding; 1x1 convolutions pruned to
70/80/90% (numpy magnitude pruning, the layers TFMOT's PruneForLatencyOnXNNPack prunes);
exported fp32 dense and fp32_sparse. For each thread count, `--repetitions` blocks of
`--runs` interleaved invokes (dense, 70, 80, 90, dense, ...); the ratio dense/sparse of the
medians is taken per block and reported as the median (min-max) over blocks. Latency does
not depend on the weight values, so the models keep their random initialisation.

  python benchmarks/xnnpack_sparse.py [--output_dir=benchmarks/results] [--threads=1,2]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import models  # noqa: E402
from nlighten_tf.bench import inspect, latency  # noqa: E402
from nlighten_tf.bench.report import markdown_table  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["mobilenet_v2", "efficientnet_lite0"], "Zoo models to measure.")
flags.DEFINE_list("sparsities", ["0.7", "0.8", "0.9"], "Fractions of 1x1-convolution weights set to zero.")
flags.DEFINE_list("threads", ["1", "2"], "Thread counts.")
flags.DEFINE_integer("repetitions", 5, "Interleaved measurement blocks per thread count (ratio per block).")
flags.DEFINE_integer("runs", 20, "Invokes per model per block.")
flags.DEFINE_integer("warmup", 5, "Untimed invokes per model per block.")
flags.DEFINE_integer("input_size", 224, "Resolution.")
flags.DEFINE_bool("control", True, "Also measure the Keras-default-padding builds (the ineligible control).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where xnnpack_sparse.json / .md go.")


def export_variants(name: str, sparse_ready: bool, sparsities: list[float], workdir: Path) -> dict[str, Path]:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    size = FLAGS.input_size
    model = models.build(name, input_shape=(size, size, 3), sparse_ready=sparse_ready)
    tag = f"{name}_{'sparse_ready' if sparse_ready else 'keras_padding'}"
    paths = {"dense": workdir / f"{tag}_dense.tflite"}
    tflite.export(model, paths["dense"], "fp32", sidecar=False)
    for sparsity in sorted(sparsities):  # increasing: each step prunes the survivors further
        common.prune(model, sparsity)
        key = f"{int(round(sparsity * 100))}%"
        paths[key] = workdir / f"{tag}_sparse{key[:-1]}.tflite"
        tflite.export(model, paths[key], "fp32_sparse", sidecar=False)
    return paths


def measure(paths: dict[str, Path], threads: int) -> dict[str, dict[str, float]]:
    keys = list(paths)
    ratios: dict[str, list[float]] = {k: [] for k in keys[1:]}
    medians: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(FLAGS.repetitions):
        results = latency.measure_interleaved([paths[k] for k in keys], threads, FLAGS.runs, FLAGS.warmup)
        by_key = dict(zip(keys, results, strict=True))
        for k in keys:
            medians[k].append(by_key[k].median_ms)
        for k in keys[1:]:
            ratios[k].append(by_key["dense"].median_ms / by_key[k].median_ms)
    import numpy as np

    out = {"dense": {"median_ms": float(np.median(medians["dense"]))}}
    for k in keys[1:]:
        out[k] = {
            "median_ms": float(np.median(medians[k])), "ratio": float(np.median(ratios[k])),
            "ratio_min": float(min(ratios[k])), "ratio_max": float(max(ratios[k])), "blocks": ratios[k],
        }  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter hides our output
    del argv
    start = time.time()
    sparsities = [float(s) for s in FLAGS.sparsities]
    threads = [int(t) for t in FLAGS.threads]
    rows, details = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FLAGS.models:
            for sparse_ready in (True, False) if FLAGS.control else (True,):
                print(f"{name} sparse_ready={sparse_ready}: exporting ...", flush=True)
                paths = export_variants(name, sparse_ready, sparsities, Path(tmp))
                verdicts = {k: inspect.inspect_file(p).eligibility for k, p in paths.items() if k != "dense"}
                sizes = {k: p.stat().st_size for k, p in paths.items()}
                for t in threads:
                    print(f"  measuring {t} thread(s) ...", flush=True)
                    measured = measure(paths, t)
                    for key in list(paths)[1:]:
                        m = measured[key]
                        rows.append({
                            "model": name, "padding": "sparse_ready" if sparse_ready else "keras 'same'",
                            "1x1 sparsity": key, "threads": t, "dense ms": measured["dense"]["median_ms"],
                            "sparse ms": m["median_ms"], "dense/sparse": m["ratio"],
                            "range": f"{m['ratio_min']:.2f}-{m['ratio_max']:.2f}",
                            "eligible": "yes" if verdicts[key].eligible else "no",
                        })  # fmt: skip
                details.append({
                    "model": name, "sparse_ready": sparse_ready, "sizes_bytes": sizes,
                    "eligibility": {k: v.as_dict() for k, v in verdicts.items()},
                })  # fmt: skip
    verdict_lines = [
        f"- {d['model']} ({'sparse_ready' if d['sparse_ready'] else 'Keras padding'}, 90%): "
        f"{d['eligibility'].get('90%', next(iter(d['eligibility'].values())))['reason']}"
        for d in details
    ]
    text = "\n".join([
        f"fp32, {FLAGS.input_size}x{FLAGS.input_size}, ai_edge_litert + XNNPACK; median of {FLAGS.repetitions} "
        f"interleaved blocks x {FLAGS.runs} runs; ratio = dense median / sparse median per block (range over blocks).",
        "", markdown_table(rows), "", "Eligibility verdicts:", *verdict_lines, "",
    ])  # fmt: skip
    settings = {k: FLAGS[k].value for k in ("models", "sparsities", "threads", "repetitions", "runs", "warmup", "input_size")}
    common.write_results(FLAGS.output_dir, "xnnpack_sparse", {"settings": settings, "rows": rows, "models": details},
                         text, start)
    return 0


if __name__ == "__main__":
    app.run(main)
