"""Keras model -> `.tflite` for every deployment target, with classifier metadata.

`tflite.export(model, path, target, ...)` converts, embeds metadata (`metadata.py`) and writes
the file and its sidecar JSON atomically. `TARGETS` lists the target names. Importing this
package does not load TensorFlow; `tflite` does.
"""

from __future__ import annotations

from nlighten_tf.export.targets import TARGETS, Target, get_target

__all__ = ["TARGETS", "Target", "get_target"]
