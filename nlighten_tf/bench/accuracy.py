"""Accuracy of a `.tflite` itself on a data split: the deployed accuracy, not the Keras one.

Images go through `nlighten_tf.data`'s one evaluation transform with the normalisation the
file declares (sidecar JSON, else its TFLite metadata), then through the interpreter,
quantized with the file's own input parameters."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nlighten_tf.litert import flatbuffer
from nlighten_tf.litert import runtime as runtime_lib
from nlighten_tf.litert.flatbuffer import read_bytes


def declared_preprocessing(model: str | os.PathLike[str]) -> str | None:
    """The normalisation scheme a `.tflite` declares: sidecar JSON, else TFLite metadata mean/std."""
    import json
    from pathlib import Path

    sidecar = Path(model).with_suffix(".json")
    if sidecar.exists():
        try:
            scheme = (json.loads(sidecar.read_text()).get("classifier") or {}).get("preprocessing")
        except (ValueError, AttributeError):
            scheme = None
        if scheme:
            return scheme
    from nlighten_tf.data.preprocessing import SCHEMES
    from nlighten_tf.export import metadata

    raw = read_bytes(model)
    with flatbuffer.reading(str(model), "TFLite metadata"):  # corrupt metadata bytes: one clear error
        info = metadata.read(raw)
    if info and info.get("mean") is not None:
        for name, (mean, std) in SCHEMES.items():
            if np.allclose(mean, info["mean"]) and np.allclose(std, info["std"]):
                return name
    return None


def top_k_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    k = min(k, logits.shape[-1])
    top = np.argpartition(-logits, k - 1, axis=-1)[:, :k]
    return int(np.sum(np.any(top == labels[:, None], axis=-1)))


def evaluate(
    model: str | os.PathLike[str],
    spec: str,
    split: str = "test",
    limit: int | None = None,
    preprocessing: str | None = None,
    runtime: str = "auto",
    xnnpack: bool = True,
    threads: int = 1,
    loaded: runtime_lib.Loaded | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 of the `.tflite` on `spec`/`split` (labels must index the model's outputs)."""
    from nlighten_tf import data

    loaded = loaded or runtime_lib.load(model, runtime=runtime, xnnpack=xnnpack, threads=threads)
    scheme = preprocessing or declared_preprocessing(model)
    note = None
    if scheme is None:
        scheme = data.DEFAULT_SCHEME
        note = f"the file declares no normalisation; assumed {scheme!r}"
    image_size = int(loaded.input_details["shape"][1])
    dataset, info = data.load(spec, split, image_size=image_size, batch_size=64, preprocessing=scheme, limit=limit)
    classes = int(loaded.output_details["shape"][-1])
    if info.num_classes > classes:
        raise ValueError(f"{spec} has {info.num_classes} classes but the model outputs {classes}")
    top1 = top5 = total = 0
    for images, labels in dataset:
        logits = loaded.predict(images.numpy())
        labels = labels.numpy().astype(np.int64)
        top1 += top_k_correct(logits, labels, 1)
        top5 += top_k_correct(logits, labels, 5)
        total += len(labels)
    return {
        "top1": top1 / max(total, 1), "top5": top5 / max(total, 1), "examples": total, "data": spec,
        "split": info.split, "preprocessing": scheme, "runtime": runtime_lib.describe(loaded), "note": note,
    }  # fmt: skip
