import subprocess
import sys

import tensorflow as tf
import tf_keras

from nlighten_tf import models


def test_package_selects_legacy_keras():
    # tf.keras must be Keras 2 (tf_keras). Its module name depends on how it was first reached
    # (keras-cv imports it as 'tensorflow.keras'), so compare what it provides.
    assert tf.keras.Model is tf_keras.Model and tf.keras.layers.Dense is tf_keras.layers.Dense
    assert isinstance(models.build("mobilenet_v2", input_shape=(32, 32, 3), width_multiplier=0.35), tf_keras.Model)


def test_import_after_keras3_tensorflow_fails_with_the_fix():
    code = "import tensorflow as tf; tf.keras.layers; import nlighten_tf"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=300
    )
    assert result.returncode != 0
    assert "TF_USE_LEGACY_KERAS=1" in result.stderr
    assert "import nlighten_tf before" in result.stderr
