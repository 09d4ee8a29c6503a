"""Shared by the benchmark scripts: magnitude pruning and weight clustering applied directly
with numpy (what TFMOT's stripped models hold: zeros and k distinct values per kernel), and
the markdown/JSON output conventions."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import tf_keras
from tf_keras import layers

from nlighten_tf import io as atomic
from nlighten_tf.optimize.selection import is_pointwise_conv

# A script run as `python benchmarks/x.py` has benchmarks/ first on sys.path, where
# compression.py shadows the `compression` module tifffile (under scikit-image's photos, the
# reference images) imports: take the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def is_prunable(layer: layers.Layer) -> bool:
    # Every conv, depthwise and dense kernel. In tf_keras DepthwiseConv2D is not a Conv2D
    # subclass, so it is named explicitly. (TFMOT itself prunes no depthwise kernels.)
    return isinstance(layer, layers.Conv2D | layers.DepthwiseConv2D | layers.Dense)


def prune(model: tf_keras.Model, sparsity: float, select=is_pointwise_conv) -> None:
    """Zeroes the smallest-|w| `sparsity` fraction of each selected layer's kernel, per layer
    (1x1 convolutions only by default, as TFMOT's PruneForLatencyOnXNNPack does)."""
    for layer in model.layers:
        if not select(layer):
            continue
        weights = layer.get_weights()
        kernel = weights[0]
        threshold = np.quantile(np.abs(kernel), sparsity)
        weights[0] = np.where(np.abs(kernel) <= threshold, 0.0, kernel).astype(kernel.dtype)
        layer.set_weights(weights)


def cluster(model: tf_keras.Model, clusters: int, select=is_prunable) -> None:
    """Snaps each selected kernel to `clusters` values: zero (kept exactly, so sparsity is
    preserved) plus clusters-1 centroids from 1-D k-means on the non-zero weights."""
    for layer in model.layers:
        if not select(layer):
            continue
        weights = layer.get_weights()
        kernel = weights[0]
        nonzero = kernel[kernel != 0]
        if nonzero.size == 0:
            continue
        centroids = np.quantile(nonzero, np.linspace(0, 1, clusters - 1))
        for _ in range(10):  # Lloyd iterations from quantile initialisation
            assign = np.argmin(np.abs(nonzero[:, None] - centroids), axis=1)
            for c in range(len(centroids)):
                members = nonzero[assign == c]
                if members.size:
                    centroids[c] = members.mean()
        snapped = centroids[np.argmin(np.abs(kernel[..., None] - centroids), axis=-1)]
        weights[0] = np.where(kernel == 0, 0.0, snapped).astype(kernel.dtype)
        layer.set_weights(weights)


def write_results(output_dir: str, stem: str, payload: dict, text: str, start: float) -> None:
    """Writes <stem>.json (payload + seconds) and <stem>.md atomically, prints the table and where."""
    out = Path(output_dir)
    seconds = time.time() - start
    atomic.write_json(out / f"{stem}.json", {**payload, "seconds": seconds})
    atomic.write_text(out / f"{stem}.md", text)
    print(text)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')} ({seconds:.0f} s)")


def arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a whole (images, labels) dataset."""
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def tflite_top1(path, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 of a `.tflite` (path or bytes) through the interpreter."""
    from nlighten_tf import fidelity

    outputs = fidelity.tflite_outputs(path, images)
    return float((outputs.argmax(-1) == labels.reshape(-1)).mean())


def quickstart_splits() -> tuple:
    """Fashion-MNIST at 32 px as the auto-compression benchmarks use it: (train: the first 95% of
    the training images, validation: the last 5%, where every choice is made; test)."""
    from nlighten_tf import data

    common_args = dict(image_size=32, batch_size=128, model="efficientnet_lite0", cache=True)
    train, _ = data.load("fashion_mnist", "train[:95%]", seed=0, **common_args)
    validation, _ = data.load("fashion_mnist", "train[95%:]", shuffle=False, **common_args)
    test, _ = data.load("fashion_mnist", "test", shuffle=False, **common_args)
    return train, validation, test
