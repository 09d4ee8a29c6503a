"""Looks inside `.tflite` files: op histogram, weights (dtype, shape, sparsity, clusters,
sparse storage), XNNPACK coverage and the XNNPACK sparse-inference eligibility verdict.

  python tools/inspect_tflite.py model.tflite [other.tflite ...] [--json_out=tflite_inspection.json]
"""

from __future__ import annotations

import sys

from absl import app, flags

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf import io as atomic
from nlighten_tf.bench import tflite_inspection
from nlighten_tf.errors import NlightenError

FLAGS = flags.FLAGS
flags.DEFINE_list("tflite", [], "Files to inspect (positional arguments work too).")
flags.DEFINE_string("json_out", None, "Also write the full reports (every weight tensor) to this JSON file.")
flags.DEFINE_integer("max_weights", 40, "Weight tensors listed per file in the printed table.")


def main(argv: list[str]) -> int:
    paths = list(FLAGS.tflite) + list(argv[1:])
    if not paths:
        print("error: no .tflite given; usage: inspect_tflite.py model.tflite [--json_out=out.json]", file=sys.stderr)
        return 2
    if FLAGS.json_out:
        try:
            atomic.check_output_file(FLAGS.json_out, "--json_out")
        except NlightenError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    reports = []
    for path in paths:
        try:
            report = tflite_inspection.inspect_file(path)
        except NlightenError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(tflite_inspection.format_report(report, FLAGS.max_weights))
        print()
        reports.append(report.as_dict())
    if FLAGS.json_out:
        atomic.write_json(FLAGS.json_out, reports)
        print(f"wrote {FLAGS.json_out}")
    return 0


if __name__ == "__main__":
    app.run(main)
