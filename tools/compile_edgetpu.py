"""Edge TPU step for a `.tflite`: offline op-by-op compatibility analysis, then `edgetpu_compiler`
when it is installed (x86-64 Linux, Coral's apt repository).

  python tools/compile_edgetpu.py model_edgetpu.tflite [--output_dir=edgetpu] [--num_segments=2] \
      [--min_runtime_version=13] [--timeout=180] [--analysis_only]

Writes compat.json and compat.txt (the prediction) and, when the compiler ran, NAME_edgetpu.tflite,
the compiler's operation log, its console transcript and NAME_edgetpu_compile.json. Exit code 0
when the analysis (and any compilation) went through, 1 when the model cannot be compiled (float,
sparse or dynamic: the message names the export to use) or the compiler failed, 2 for bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf.edgetpu import compiler
from nlighten_tf.errors import NlightenError
from nlighten_tf.litert.flatbuffer import TFLiteFileError

FLAGS = flags.FLAGS
flags.DEFINE_string("tflite", None, "The .tflite to compile (a positional argument works too); export target edgetpu.")
flags.DEFINE_string("output_dir", "edgetpu", "Where the analysis and the compiler's outputs go.")
flags.DEFINE_integer("num_segments", 1, "Segments to split the model into for pipelining over several Edge TPUs.")
flags.DEFINE_integer("min_runtime_version", None, "Lowest Edge TPU runtime to support (default: the compiler's).")
flags.DEFINE_integer("timeout", compiler.DEFAULT_TIMEOUT, "Compiler timeout in seconds.")
flags.DEFINE_boolean("analysis_only", False, "Only the offline analysis, even when the compiler is installed.")
flags.DEFINE_boolean("json", False, "Print the analysis as JSON instead of the table.")


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


def main(argv: list[str]) -> int:
    paths = ([FLAGS.tflite] if FLAGS.tflite else []) + list(argv[1:])
    if len(paths) != 1:
        return _fail("give exactly one .tflite; usage: compile_edgetpu.py model_edgetpu.tflite [--output_dir=DIR]")
    if FLAGS.num_segments < 1 or FLAGS.timeout < 1:
        return _fail("--num_segments and --timeout must be >= 1")
    path = Path(paths[0])
    try:
        summary = compiler.run(
            path, FLAGS.output_dir, num_segments=FLAGS.num_segments, min_runtime_version=FLAGS.min_runtime_version,
            timeout=FLAGS.timeout, analysis_only=FLAGS.analysis_only,
        )  # fmt: skip
    except TFLiteFileError as error:  # bad input: exit 2; the compiler failing is exit 1
        return _fail(str(error))
    except (NlightenError, OSError) as error:
        return _fail(str(error), 1)
    output_dir = Path(FLAGS.output_dir)
    if FLAGS.json:
        print((output_dir / "compat.json").read_text(), end="")
    else:
        print((output_dir / "compat.txt").read_text(), end="")
    print()
    for written in summary["files"]:
        print(f"wrote {written}")
    if summary["compiled"]:
        log = summary["compiler"]
        on_chip, off_chip = log["on_chip_bytes"], log["off_chip_bytes"]
        mapped = log["ops_mapped"]
        print(
            f"compiled with edgetpu_compiler {log['compiler_version']}: "
            f"{'n/a' if mapped is None else f'{mapped:.1%}'} of ops mapped, on-chip "
            f"{'n/a' if on_chip is None else f'{on_chip:,} bytes'}, off-chip "
            f"{'n/a' if off_chip is None else f'{off_chip:,} bytes'}; {', '.join(log['compiled'])}"
        )
        return 0
    if summary["reason"].startswith("refused: "):
        return _fail(f"{path}: {summary['reason']}", 1)
    if "compiler" in summary:  # it ran and failed
        return _fail(f"edgetpu_compiler failed: {summary['reason']} (see {summary['compiler']['transcript']})", 1)
    print(f"note: {summary['reason']}")  # compiler absent (one line, with the install commands) or analysis only
    return 0


if __name__ == "__main__":
    app.run(main)
