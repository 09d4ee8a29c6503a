"""Small real models and their `.tflite` exports, built once per test session and shared by
tests/export, tests/bench and tests/tools (also across pytest-xdist workers, through a file
lock in the session's shared temporary directory).

- `digits_model`: a tiny sparse-ready MobileNet-style CNN (stem 3x3/2 with explicit padding,
  two inverted residual blocks, GAP, Dense) trained on scikit-learn digits at 32x32, then its
  1x1 convolutions and Dense kernel pruned to 75% with the masks held through a short
  fine-tune, and the 1x1 kernels snapped to 16 values. Custom rather than from the zoo because
  the zoo's MobileNetV2 takes ~20 s per conversion here, and every export target is converted.
- `zoo_pair`: the zoo's MobileNetV2-0.35 at 32x32, sparse_ready True and False, 1x1 convs
  pruned to 90% and clustered to 16 values with numpy, exported fp32_sparse: the eligibility
  and read-back oracles.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import numpy as np
import tf_keras
from tf_keras import layers

import nlighten_tf  # noqa: F401

IMAGE_SIZE = 32
SCHEME = "lite"
PRUNED_FRACTION = 0.75
CLUSTERS = 16


def shared_dir(tmp_path_factory) -> Path:
    # Under xdist every worker has its own basetemp below one shared root.
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if root.name.startswith("popen-gw") else root
    path = shared / "nlighten_export_artifacts"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def locked(directory: Path, name: str):
    with open(directory / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def mini_cnn(num_classes: int = 10) -> tf_keras.Model:
    def block(x, expand, out, stride, name):
        y = layers.Conv2D(x.shape[-1] * expand, 1, use_bias=False, name=f"{name}_expand")(x)
        y = layers.BatchNormalization(momentum=0.9, name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0)(y)
        if stride == 2:
            y = layers.ZeroPadding2D(1)(y)
        y = layers.DepthwiseConv2D(3, stride, padding="valid" if stride == 2 else "same", use_bias=False, name=f"{name}_dw")(y)
        y = layers.BatchNormalization(momentum=0.9, name=f"{name}_dw_bn")(y)
        y = layers.ReLU(6.0)(y)
        y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(y)
        y = layers.BatchNormalization(momentum=0.9, name=f"{name}_project_bn")(y)
        return layers.Add()([x, y]) if stride == 1 and x.shape[-1] == out else y

    inputs = layers.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    x = layers.ZeroPadding2D(1)(inputs)
    x = layers.Conv2D(16, 3, 2, use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(6.0)(x)
    x = block(x, 4, 24, 2, "b1")
    x = block(x, 4, 24, 1, "b2")
    x = layers.Conv2D(64, 1, use_bias=False, name="head")(x)
    x = layers.BatchNormalization(momentum=0.9, name="head_bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, name="predictions")(x)
    return tf_keras.Model(inputs, outputs, name="mini_cnn")


def prunable(model: tf_keras.Model, include_dense: bool = True) -> list[layers.Layer]:
    return [
        layer for layer in model.layers
        if (isinstance(layer, layers.Conv2D) and not isinstance(layer, layers.DepthwiseConv2D)
            and layer.kernel_size == (1, 1)) or (include_dense and isinstance(layer, layers.Dense))
    ]  # fmt: skip


def prune(model: tf_keras.Model, fraction: float, include_dense: bool = True) -> dict[str, np.ndarray]:
    """Zeroes the smallest-|w| `fraction` of each prunable kernel; returns the masks."""
    masks = {}
    for layer in prunable(model, include_dense):
        weights = layer.get_weights()
        kernel = weights[0]
        threshold = np.quantile(np.abs(kernel), fraction)
        mask = np.abs(kernel) > threshold
        weights[0] = kernel * mask
        layer.set_weights(weights)
        masks[layer.name] = mask
    return masks


def cluster(model: tf_keras.Model, clusters: int, include_dense: bool = False) -> None:
    """Snaps each prunable kernel's non-zero weights to clusters-1 centroids (zero is the last)."""
    for layer in prunable(model, include_dense):
        weights = layer.get_weights()
        kernel = weights[0]
        nonzero = kernel[kernel != 0]
        centroids = np.quantile(nonzero, np.linspace(0, 1, clusters - 1))
        snapped = centroids[np.argmin(np.abs(kernel[..., None] - centroids), axis=-1)]
        weights[0] = np.where(kernel == 0, 0.0, snapped).astype(kernel.dtype)
        layer.set_weights(weights)


def digits_arrays(split: str, limit: int | None = None):
    from nlighten_tf import data

    dataset, _ = data.load("digits", split, image_size=IMAGE_SIZE, batch_size=256, preprocessing=SCHEME, limit=limit)
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


class _KeepMasks(tf_keras.callbacks.Callback):
    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def on_train_batch_end(self, batch, logs=None):
        for name, mask in self.masks.items():
            layer = self.model.get_layer(name)
            weights = layer.get_weights()
            weights[0] = weights[0] * mask
            layer.set_weights(weights)


def digits_model(tmp_path_factory) -> Path:
    """Path of the trained, pruned and clustered mini CNN (.keras), built once per session."""
    directory = shared_dir(tmp_path_factory)
    path = directory / "digits_mini.keras"
    with locked(directory, "digits_model"):
        if not path.exists():
            import tensorflow as tf

            tf.keras.utils.set_random_seed(0)
            x, y = digits_arrays("train")
            model = mini_cnn()
            model.compile(
                tf_keras.optimizers.Adam(3e-3), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"],
            )  # fmt: skip
            model.fit(x, y, batch_size=32, epochs=6, verbose=0)
            masks = prune(model, PRUNED_FRACTION)
            model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[_KeepMasks(masks)])
            cluster(model, CLUSTERS)
            model.save(path)
    return path


def load_digits_model(tmp_path_factory) -> tf_keras.Model:
    return tf_keras.models.load_model(digits_model(tmp_path_factory), compile=False)


def exported(tmp_path_factory, target: str) -> Path:
    """The digits model exported to `target` (with metadata and sidecar), once per session."""
    directory = shared_dir(tmp_path_factory)
    path = directory / f"digits_{target}.tflite"
    with locked(directory, f"export_{target}"):
        if not path.exists():
            from nlighten_tf import data
            from nlighten_tf.export import metadata, tflite

            model = load_digits_model(tmp_path_factory)
            calibration = data.representative_dataset("digits", 100, image_size=IMAGE_SIZE, preprocessing=SCHEME)
            classifier = metadata.from_scheme([str(d) for d in range(10)], SCHEME, (IMAGE_SIZE, IMAGE_SIZE))
            tflite.export(model, path, target, representative_dataset=calibration, classifier=classifier)
    return path


def zoo_pair(tmp_path_factory) -> dict[str, Path]:
    """{"sparse_ready": path, "default": path} fp32_sparse MobileNetV2-0.35 exports, plus
    `<stem>_keras.json` holding per-1x1-layer sparsity and clusters of the Keras model."""
    directory = shared_dir(tmp_path_factory)
    paths = {}
    variants = [("sparse_ready", True), ("default", False)]
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        variants.reverse()  # a second worker converts the other variant at the same time
    for variant, sparse_ready in variants:
        path = directory / f"mobilenet_v2_{variant}_fp32_sparse.tflite"
        with locked(directory, f"zoo_{variant}"):
            if not path.exists():
                import tensorflow as tf

                from nlighten_tf import models
                from nlighten_tf.export import tflite

                tf.keras.utils.set_random_seed(1)
                model = models.build(
                    "mobilenet_v2", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), width_multiplier=0.35,
                    num_classes=10, sparse_ready=sparse_ready,
                )  # fmt: skip
                prune(model, 0.9, include_dense=False)
                cluster(model, CLUSTERS)
                stats = {}
                for layer in prunable(model, include_dense=False):
                    kernel = layer.get_weights()[0]
                    stats[layer.name] = {
                        "sparsity": float(np.mean(kernel == 0)), "unique": int(len(np.unique(kernel))),
                        "zero_mask_ohwi": np.transpose(kernel == 0, (3, 0, 1, 2)).astype(int).tolist(),
                    }  # fmt: skip
                tflite.export(model, path, "fp32_sparse", sidecar=False)
                (directory / f"{path.stem}_keras.json").write_text(json.dumps(stats))
        paths[variant] = path
    return paths


def keras_stats(path: Path) -> dict:
    return json.loads((path.parent / f"{path.stem}_keras.json").read_text())
