"""nlighten_tf: shrink Keras vision models into int8 (sparse) TFLite for edge devices.

TensorFlow Model Optimization only understands Keras 2 objects, so the package puts
TensorFlow in legacy-Keras mode (``TF_USE_LEGACY_KERAS=1``) before TensorFlow loads and
builds every model with ``tf_keras``.
"""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

# Must happen before the first `tensorflow` import anywhere in the process: tf.keras
# resolves to Keras 2 or Keras 3 from this variable the first time it is touched.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_KERAS3_FIX = (
    "nlighten_tf needs TensorFlow in legacy-Keras (Keras 2) mode because TensorFlow Model "
    "Optimization rejects Keras 3 objects, but {why}. Fix: import nlighten_tf before "
    "tensorflow/keras, or run with TF_USE_LEGACY_KERAS=1 in the environment "
    "(e.g. `export TF_USE_LEGACY_KERAS=1`)."
)


def _require_legacy_keras() -> None:
    if os.environ.get("TF_USE_LEGACY_KERAS", "").lower() not in ("1", "true", "yes"):
        raise ImportError(
            _KERAS3_FIX.format(why=f"TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r} is set")
        )
    if "tensorflow" not in sys.modules:
        return  # TensorFlow will read the variable when it loads.
    import tensorflow as tf

    keras_module = getattr(tf.keras, "__name__", "")
    if not keras_module.startswith("tf_keras"):
        raise ImportError(
            _KERAS3_FIX.format(
                why=f"TensorFlow was imported earlier and tf.keras is already Keras 3 ({keras_module})"
            )
        )


_require_legacy_keras()
