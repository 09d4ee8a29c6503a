"""Benchmarks `.tflite` files as a device runs them: size (raw and gzipped), init time,
interleaved latency (min/median/p90), peak RSS and, with --data, the file's own top-1/top-5, on
the host and on emulated devices, plus the agreement between runtime paths.

  python tools/benchmark.py --tflite=a.tflite,b.tflite --threads=1,2 --runs=50 --warmup=5 \
      [--data=digits --split=test --limit=500] [--device=host,rpi-aarch64 --device_runs=5] \
      [--keras_model=model.keras] [--output_dir=benchmark_results]

Ratios are against the first file, within each device. --device=rpi-aarch64 runs the files in
the emulated Raspberry Pi (tflite-runtime 2.14 on aarch64; build it with `make device-rpi`):
its latencies are relative figures only. Every file is also run through host XNNPACK, host
builtin kernels, each device (and the Keras model) on the same inputs: accuracy per path, top-1
agreement and the largest output difference. Writes benchmark.json, benchmark.md, latency.png
(+ latency_<device>.png) and accuracy_vs_size.png (with --data) to --output_dir.
"""

from __future__ import annotations

import sys

from absl import app, flags

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf import io as atomic
from nlighten_tf.bench import devices, suite
from nlighten_tf.errors import NlightenError
from nlighten_tf.litert import runtime

FLAGS = flags.FLAGS
flags.DEFINE_list("tflite", [], "Comma-separated .tflite files; the first is the baseline of every ratio.")
flags.DEFINE_list("threads", ["1"], "Thread counts to measure, e.g. 1,2.")
flags.DEFINE_integer("runs", 50, "Timed invokes per model and thread count (interleaved A B A B ...).")
flags.DEFINE_integer("warmup", 5, "Untimed invokes per model before timing.")
flags.DEFINE_enum("runtime", "auto", ["auto", *runtime.RUNTIMES], "Interpreter; auto = ai_edge_litert, tflite_runtime, tf.lite.")
flags.DEFINE_bool("xnnpack", True, "Use the XNNPACK delegate (--noxnnpack: builtin kernels only).")
flags.DEFINE_string("data", None, "Data spec (e.g. digits) to measure each file's top-1/top-5 on.")
flags.DEFINE_string("split", "test", "Split of --data.")
flags.DEFINE_integer("limit", None, "Only the first N examples of --split.")
flags.DEFINE_bool("rss", True, "Measure peak RSS in a fresh process per model.")
flags.DEFINE_list("device", ["host"], f"Where to run the files, comma list of: {', '.join(devices.names())}.")
flags.DEFINE_integer("device_runs", 5, "Timed interleaved invokes per model on emulated devices (~100x slower than the host).")
flags.DEFINE_integer("device_warmup", 1, "Untimed invokes per model on emulated devices.")
flags.DEFINE_bool("paths", True, "Compare host XNNPACK, host builtin kernels and the devices on the same inputs.")
flags.DEFINE_string("keras_model", None, "Also compare with this Keras model (.keras/.h5) on the same inputs.")
flags.DEFINE_string("output_dir", "benchmark_results", "Where the JSON, markdown and PNGs go.")


def main(argv: list[str]) -> int:
    models = list(FLAGS.tflite) + list(argv[1:])
    if not models:
        print("error: --tflite is empty; pass --tflite=a.tflite,b.tflite", file=sys.stderr)
        return 2
    try:
        threads = [int(t) for t in FLAGS.threads]
        if any(t < 1 for t in threads):
            raise ValueError
    except ValueError:
        print(f"error: --threads must be positive integers, got {','.join(FLAGS.threads)}", file=sys.stderr)
        return 2
    try:
        atomic.check_output_dir(FLAGS.output_dir, "--output_dir")  # before minutes of timing, not after
    except NlightenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        result = suite.run(
            models, threads=threads, runs=FLAGS.runs, warmup=FLAGS.warmup, runtime=FLAGS.runtime,
            xnnpack=FLAGS.xnnpack, data=FLAGS.data, split=FLAGS.split, limit=FLAGS.limit, rss=FLAGS.rss,
            devices=FLAGS.device, device_runs=FLAGS.device_runs, device_warmup=FLAGS.device_warmup,
            paths=FLAGS.paths, keras_model=FLAGS.keras_model,
        )  # fmt: skip
    except (NlightenError, ValueError) as error:  # ValueError: the suite's own argument checks
        print(f"error: {error}", file=sys.stderr)
        return 2
    for warning in result.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    print(suite.markdown(result))
    for kind, path in suite.write(result, FLAGS.output_dir).items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
