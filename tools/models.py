"""Lists the model zoo and prints its parameter / MAdds table against the published figures.

  python tools/models.py --list
  python tools/models.py --summary [--models=efficientnet_lite0,mobilenet_v2] [--json_out=zoo.json]
"""

from __future__ import annotations

import sys

from absl import app, flags

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf import io as atomic
from nlighten_tf.errors import NlightenError
from nlighten_tf.models import registry, summary
from nlighten_tf.render import markdown_table

FLAGS = flags.FLAGS
flags.DEFINE_bool("list", False, "Print the registered model names, one per line.")
flags.DEFINE_bool("summary", False, "Build every model and print params / MAdds against the published figures.")
flags.DEFINE_list("models", None, "Restrict --summary to these names (default: all).")
flags.DEFINE_string("json_out", None, "Also write the --summary rows to this JSON file.")


def main(argv: list[str]) -> int:
    del argv
    if not FLAGS.list and not FLAGS.summary:
        FLAGS.list = True
    if FLAGS.list:
        for name in registry.names(task=None):
            info = registry.info(name)
            print(f"{name:26s} {info.family:22s} {info.task:15s} {info.default_resolution}px  preprocessing={info.preprocessing}")
    if FLAGS.summary:
        try:
            names = [registry.info(n).name for n in FLAGS.models] if FLAGS.models else registry.names()
        except ValueError as error:
            print(f"error: --models: {error}", file=sys.stderr)
            return 2
        if FLAGS.json_out:
            try:  # before building every model, not after
                atomic.check_output_file(FLAGS.json_out, "--json_out")
            except NlightenError as error:
                print(f"error: {error}", file=sys.stderr)
                return 2
        rows = summary.zoo_table(names, progress=lambda n: print(f"building {n} ...", file=sys.stderr, flush=True))
        print(markdown_table(rows))
        if FLAGS.json_out:
            try:
                atomic.write_json(FLAGS.json_out, rows)
            except OSError as error:
                print(f"error: --json_out {FLAGS.json_out}: {error.strerror or error}", file=sys.stderr)
                return 2
            print(f"wrote {FLAGS.json_out}")
    return 0


if __name__ == "__main__":
    app.run(main)
