"""Small real `.tflite` files for the Edge TPU tests, converted once per session (shared across
pytest-xdist workers through the file lock of tests/export/artifacts.py).

- the model zoo's EfficientNet-Lite0, EfficientNet-EdgeTPU-S and MobileNetV2 at 64x64, 10 classes,
  exported to the `edgetpu` target (the Keras MAdds are kept beside each file as an oracle);
- `split`: conv -> LeakyReLU -> conv -> GAP -> Dense, int8: LEAKY_RELU is not on Coral's list;
- `large`: Flatten -> Dense(3000) -> Dense(3000) -> Dense(10), > 8 MiB of int8 weights;
- `sparse`: a conv model with 80%-zero kernels exported `int8_sparse` (DENSIFY);
- `float`: the same model exported `fp32`;
- `dynamic`: a conv model with an (None, None, 3) input, full-integer.

Calibration uses a few random images: what is checked is the graph, not the accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

import nlighten_tf  # noqa: F401
from tests.export import artifacts

IMAGE_SIZE = 64
ZOO = ("efficientnet_lite0", "efficientnet_edgetpu_s", "mobilenet_v2")
LARGE_WIDTH = 3000
LARGE_INPUT = (8, 8, 3)
LEAKY_ALPHA = 0.1


def _calibration(shape: tuple[int, ...], count: int = 4):
    def dataset():
        rng = np.random.default_rng(0)
        for _ in range(count):
            yield [rng.uniform(-1, 1, (1, *shape)).astype(np.float32)]

    return dataset


def _cached(
    tmp_path_factory, name: str, target: str, build: Callable, shape: tuple[int, ...] | None = None,
    record_madds: bool = False,
) -> Path:
    directory = artifacts.shared_dir(tmp_path_factory)
    path = directory / f"edgetpu_test_{name}_{target}.tflite"
    with artifacts.locked(directory, f"edgetpu_{name}_{target}"):
        if not path.exists():
            import tensorflow as tf

            from nlighten_tf.export import tflite
            from nlighten_tf.models import complexity

            tf.keras.utils.set_random_seed(0)
            model = build()
            shape = shape or tuple(int(d) for d in model.inputs[0].shape[1:])
            calibration = _calibration(shape) if target != "fp32" else None
            if record_madds:  # before the model file, whose existence marks the entry complete
                path.with_suffix(".keras_madds.json").write_text(json.dumps(complexity.count_madds(model)))
            tflite.export(model, path, target, representative_dataset=calibration, sidecar=False)
    return path


def keras_madds(path: Path) -> int:
    return json.loads(path.with_suffix(".keras_madds.json").read_text())


def zoo(tmp_path_factory, name: str) -> Path:
    def build():
        from nlighten_tf import models

        return models.build(name, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=10, weights=None)

    return _cached(tmp_path_factory, name, "edgetpu", build, record_madds=True)


def _small_cnn(leaky: bool = False, input_shape=(16, 16, 3)):
    import tf_keras
    from tf_keras import layers

    inputs = layers.Input(input_shape, name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    if leaky:
        x = layers.LeakyReLU(LEAKY_ALPHA, name="leaky")(x)
    x = layers.Conv2D(32, 1, activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(4, name="logits")(x)
    return tf_keras.Model(inputs, outputs)


def split(tmp_path_factory) -> Path:
    return _cached(tmp_path_factory, "split", "edgetpu", lambda: _small_cnn(leaky=True))


def large(tmp_path_factory) -> Path:
    def build():
        import tf_keras
        from tf_keras import layers

        inputs = layers.Input(LARGE_INPUT, name="image")
        x = layers.Flatten()(inputs)
        x = layers.Dense(LARGE_WIDTH, activation="relu", name="fc1")(x)
        x = layers.Dense(LARGE_WIDTH, activation="relu", name="fc2")(x)
        return tf_keras.Model(inputs, layers.Dense(10, name="logits")(x))

    return _cached(tmp_path_factory, "large", "edgetpu", build)


def large_weight_bytes() -> int:
    """int8 kernel bytes of `large` (one byte per weight)."""
    flat = int(np.prod(LARGE_INPUT))
    return flat * LARGE_WIDTH + LARGE_WIDTH * LARGE_WIDTH + LARGE_WIDTH * 10


def _pruned_cnn():
    model = _small_cnn()
    for layer in model.layers:
        weights = layer.get_weights()
        if weights and weights[0].ndim >= 2:
            kernel = weights[0]
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0
            layer.set_weights([kernel, *weights[1:]])
    return model


def sparse(tmp_path_factory) -> Path:
    return _cached(tmp_path_factory, "sparse", "int8_sparse", _pruned_cnn)


def float_model(tmp_path_factory) -> Path:
    return _cached(tmp_path_factory, "float", "fp32", _small_cnn)


def dynamic(tmp_path_factory) -> Path:
    return _cached(
        tmp_path_factory, "dynamic", "edgetpu", lambda: _small_cnn(input_shape=(None, None, 3)), shape=(16, 16, 3)
    )


def channel_mean(tmp_path_factory) -> Path:
    """conv(6 channels) -> mean over the channels -> conv: a MEAN z-reduction over 6 channels,
    outside Coral's limitation (a multiple of 4)."""

    def build():
        import tensorflow as tf
        import tf_keras
        from tf_keras import layers

        inputs = layers.Input((16, 16, 3), name="image")
        x = layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
        x = layers.Lambda(lambda t: tf.reduce_mean(t, axis=-1, keepdims=True), name="channel_mean")(x)
        x = layers.Conv2D(8, 3, padding="same", name="conv2")(x)
        return tf_keras.Model(inputs, layers.GlobalAveragePooling2D()(x))

    return _cached(tmp_path_factory, "channel_mean", "edgetpu", build)
