"""XNNPACK sparse inference: dense vs sparse fp32 latency on this host and on the emulated
Raspberry Pi (aarch64), the behavioural test of the eligibility verdict.

MobileNetV2 1.0@224 and EfficientNet-Lite0@224, built sparse_ready (symmetric explicit
padding) and, as the control, with Keras' default 'same' padding; 1x1 convolutions pruned to
70/80/90% (numpy magnitude pruning, the layers TFMOT's PruneForLatencyOnXNNPack prunes);
exported fp32 dense and fp32_sparse. Latency does not depend on the weight values, so the
models keep their random initialisation.

- Host: for each thread count, `--repetitions` blocks of `--runs` interleaved invokes (dense,
  70, 80, 90, dense, ...); the ratio dense/sparse of the medians is taken per block and
  reported as the median (min-max) over blocks. On an x86 host with AVX XNNPACK never runs its
  sparse kernels (xnn_is_chw_compatible_config() in XNNPACK's hardware-config.h), so these
  ratios are dense vs dense by design.
- Device (`--devices=rpi-aarch64`, built by `make device-rpi`): tflite-runtime 2.14 + XNNPACK on
  aarch64 under qemu, `--device_threads` thread(s), `--device_runs` interleaved rounds after one
  warm-up invoke per file; ratio = dense median / sparse median, range = per-round ratios.
  Emulated absolute times mean nothing (MobileNetV2@224 takes seconds per invoke); the ratio
  within one interleaved run shows which kernels ran.

  python benchmarks/xnnpack_sparse.py [--output_dir=benchmarks/results] [--threads=1,2] \
      [--devices=rpi-aarch64 --device_runs=5]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import models  # noqa: E402
from nlighten_tf.bench import devices, latency, tflite_inspection  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["mobilenet_v2", "efficientnet_lite0"], "Zoo models to measure.")
flags.DEFINE_list("sparsities", ["0.7", "0.8", "0.9"], "Fractions of 1x1-convolution weights set to zero.")
flags.DEFINE_list("threads", ["1", "2"], "Thread counts.")
flags.DEFINE_integer("repetitions", 5, "Interleaved measurement blocks per thread count (ratio per block).")
flags.DEFINE_integer("runs", 20, "Invokes per model per block.")
flags.DEFINE_integer("warmup", 5, "Untimed invokes per model per block.")
flags.DEFINE_integer("input_size", 224, "Resolution.")
flags.DEFINE_bool("control", True, "Also measure the Keras-default-padding builds (the ineligible control).")
flags.DEFINE_list("devices", ["rpi-aarch64"], "Emulated devices to measure on as well (empty: host only).")
flags.DEFINE_integer("device_runs", 5, "Interleaved rounds per file on the emulated device (seconds per invoke).")
flags.DEFINE_integer("device_threads", 1, "Threads on the emulated device.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where xnnpack_sparse.json / .md go.")
GOAL = ("mobilenet_v2", True, "90%", 1.5)  # model, sparse_ready, sparsity, dense/sparse wanted on aarch64, 1 thread


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


def measure_device(device: str, paths: dict[str, Path]) -> dict[str, Any]:
    """One interleaved run of every file on the emulated device."""
    import numpy as np

    keys = list(paths)
    run = devices.run_models(device, [paths[k] for k in keys], threads=FLAGS.device_threads, runs=FLAGS.device_runs, warmup=1)
    times = {k: np.asarray(m["times_ms"]) for k, m in zip(keys, run.models, strict=True)}
    fallbacks = {k: m["fallback"] for k, m in zip(keys, run.models, strict=True) if m["fallback"]}
    out: dict[str, Any] = {"dense": {"median_ms": float(np.median(times["dense"]))}, "versions": run.versions,
                           "fallbacks": fallbacks, "seconds": run.seconds}  # fmt: skip
    for k in keys[1:]:
        per_round = times["dense"] / times[k]
        out[k] = {
            "median_ms": float(np.median(times[k])), "ratio": float(np.median(times["dense"]) / np.median(times[k])),
            "ratio_min": float(per_round.min()), "ratio_max": float(per_round.max()), "rounds": per_round.tolist(),
        }  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter hides our output
    del argv
    start = time.time()
    sparsities = [float(s) for s in FLAGS.sparsities]
    threads = [int(t) for t in FLAGS.threads]
    device_names = [d for d in devices.check_names(FLAGS.devices or ["host"]) if d != devices.HOST]
    for device in device_names:
        try:
            devices.require(device)
        except devices.DeviceUnavailable as error:
            print(f"error: {error} (or pass --devices= to measure the host only)", file=sys.stderr)
            return 2
    host_cpu = devices.host_cpu()
    host_label = f"host {host_cpu['machine']}" + (" (AVX: sparse runs dense)" if not host_cpu["sparse_kernels"] else "")
    rows, device_rows, details = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FLAGS.models:
            for sparse_ready in (True, False) if FLAGS.control else (True,):
                print(f"{name} sparse_ready={sparse_ready}: exporting ...", flush=True)
                paths = export_variants(name, sparse_ready, sparsities, Path(tmp))
                verdicts = {k: tflite_inspection.inspect_file(p).eligibility for k, p in paths.items() if k != "dense"}
                sizes = {k: p.stat().st_size for k, p in paths.items()}
                for t in threads:
                    print(f"  measuring {t} thread(s) ...", flush=True)
                    measured = measure(paths, t)
                    for key in list(paths)[1:]:
                        m = measured[key]
                        rows.append({
                            "where": host_label, "model": name, "padding": "sparse_ready" if sparse_ready else "keras 'same'",
                            "1x1 sparsity": key, "threads": t, "dense ms": measured["dense"]["median_ms"],
                            "sparse ms": m["median_ms"], "dense/sparse": m["ratio"],
                            "range": f"{m['ratio_min']:.2f}-{m['ratio_max']:.2f}",
                            "eligible": "yes" if verdicts[key].eligible else "no",
                        })  # fmt: skip
                device_runs = {}
                for device in device_names:
                    print(f"  measuring on {device} (emulated, {FLAGS.device_threads} thread(s), {FLAGS.device_runs} "
                          "interleaved rounds) ...", flush=True)  # fmt: skip
                    measured = device_runs[device] = measure_device(device, paths)
                    for key in list(paths)[1:]:
                        m = measured[key]
                        device_rows.append({
                            "where": f"{device} (emulated)", "model": name,
                            "padding": "sparse_ready" if sparse_ready else "keras 'same'", "1x1 sparsity": key,
                            "threads": FLAGS.device_threads, "dense ms": measured["dense"]["median_ms"],
                            "sparse ms": m["median_ms"], "dense/sparse": m["ratio"],
                            "range": f"{m['ratio_min']:.2f}-{m['ratio_max']:.2f}",
                            "eligible": "yes" if verdicts[key].eligible else "no",
                        })  # fmt: skip
                    ratios = ", ".join(f"{k}: {measured[k]['ratio']:.2f}x" for k in list(paths)[1:])
                    print(f"    dense/sparse {ratios} ({measured['seconds']:.0f} s)", flush=True)
                details.append({
                    "model": name, "sparse_ready": sparse_ready, "sizes_bytes": sizes,
                    "eligibility": {k: v.as_dict() for k, v in verdicts.items()}, "devices": device_runs,
                })  # fmt: skip
    verdict_lines = [
        f"- {d['model']} ({'sparse_ready' if d['sparse_ready'] else 'Keras padding'}, 90%): "
        f"{d['eligibility'].get('90%', next(iter(d['eligibility'].values())))['reason']}"
        for d in details
    ]
    goal_lines = []
    for device in device_names:
        goal = [r for r in device_rows if r["where"].startswith(device) and r["model"] == GOAL[0]
                and r["padding"] == ("sparse_ready" if GOAL[1] else "keras 'same'") and r["1x1 sparsity"] == GOAL[2]]  # fmt: skip
        if goal:
            ratio = goal[0]["dense/sparse"]
            goal_lines.append(f"Goal ({GOAL[0]} sparse_ready {GOAL[2]}, {FLAGS.device_threads} thread, {device}): "
                              f">= {GOAL[3]}x dense/sparse: {ratio:.2f}x, {'met' if ratio >= GOAL[3] else 'NOT met'}.")  # fmt: skip
    versions = next((d["devices"][dev]["versions"] for d in details for dev in d["devices"]), None)
    device_header = [
        f"Emulated device: {', '.join(device_names)} ({versions['runtime']} + XNNPACK, python {versions['python']}, "
        f"{versions['machine']} under qemu-aarch64-static); fp32, {FLAGS.input_size}x{FLAGS.input_size}, "
        f"{FLAGS.device_threads} thread(s), one interleaved run of {FLAGS.device_runs} rounds after 1 warm-up per file; "
        "ratio = dense median / sparse median, range = per-round ratios. Emulated milliseconds mean nothing; "
        "the ratio shows which kernels ran.",
        "", markdown_table(device_rows), "", *goal_lines, "",
    ] if device_rows and versions else []  # fmt: skip
    text = "\n".join([
        *device_header,
        f"Host ({host_label}): fp32, {FLAGS.input_size}x{FLAGS.input_size}, ai_edge_litert + XNNPACK; median of "
        f"{FLAGS.repetitions} interleaved blocks x {FLAGS.runs} runs; ratio = dense median / sparse median per block "
        "(range over blocks).",
        "", f"Host CPU: {host_cpu['note']}.", "", markdown_table(rows), "", "Eligibility verdicts:", *verdict_lines, "",
    ])  # fmt: skip
    settings = {k: FLAGS[k].value for k in ("models", "sparsities", "threads", "repetitions", "runs", "warmup", "input_size",
                                            "devices", "device_runs", "device_threads")}  # fmt: skip
    common.write_results(FLAGS.output_dir, "xnnpack_sparse", {
        "settings": settings, "host_cpu": host_cpu, "rows": rows, "device_rows": device_rows, "models": details,
        "goal": goal_lines,
    }, text, start)  # fmt: skip
    return 0


if __name__ == "__main__":
    app.run(main)
