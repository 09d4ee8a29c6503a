"""Writes recipes/README.md's per-stage key tables from the stage declarations
(nlighten_tf.recipes.stage_types), or checks that the committed file agrees with them.

  python tools/recipe_docs.py          # rewrite the tables in recipes/README.md (= make recipe-docs)
  python tools/recipe_docs.py --check  # exit 1 if they differ from the declarations
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)

FLAGS = flags.FLAGS
flags.DEFINE_string("readme", str(Path(__file__).resolve().parent.parent / "recipes" / "README.md"), "The file to update.")
flags.DEFINE_bool("check", False, "Only check: exit 1 when the file's tables differ from the declarations.")


def main(argv: list[str]) -> int:
    del argv
    from nlighten_tf.recipes import stage_types

    path = Path(FLAGS.readme)
    try:
        text = path.read_text(encoding="utf-8")
        updated = stage_types.with_key_tables(text)
    except (OSError, ValueError) as error:
        print(f"error: {FLAGS.readme}: {error}", file=sys.stderr)
        return 2
    if updated == text:
        print(f"{path}: stage key tables up to date")
        return 0
    if FLAGS.check:
        print(f"error: {path}: stage key tables differ from the declarations; run python tools/recipe_docs.py",
              file=sys.stderr)  # fmt: skip
        return 1
    path.write_text(updated, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
