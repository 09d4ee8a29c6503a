"""Synthetic inputs from a trained model's own BatchNorm statistics (ZeroQ, DeepInversion):
data for calibration and distillation when the model's training data is not at hand.

Every BatchNormalization layer holds the running mean and variance of its input over the
training data. Starting from noise, Adam changes the *input images* (the model's weights stay
fixed) until each BN layer's batch mean/variance match those moving statistics:

    loss = sum over BN layers of ||mean - moving_mean||_2 + ||var - moving_var||_2
           + class_weight * CE(target class, logits)       (optional, DeepInversion)
           + tv_weight * total variation + l2_weight * ||x||^2   (image priors)

Images live in the model's input domain (the normalised pixels its preprocessing scheme makes)
and are clipped to the range real pixels map to. Batches are seeded; finished sets are cached
under ``$NLIGHTEN_TF_HOME/synthetic`` (default ``~/.cache/nlighten_tf/synthetic``) keyed by a
hash of the weights and every setting, written atomically.

The data spec ``synthetic:bn[:N]`` (docs/data.md) resolves through this module when a model is
passed (`nlighten_tf.data.representative_dataset(..., keras_model=model)`).
Only TensorFlow, numpy and the leaves: data/ never imports models/ or optimize/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf import io as atomic
from nlighten_tf.data.errors import DataError
from nlighten_tf.data.preprocessing import normalize, resolve_scheme

SPEC_PREFIX = "synthetic:bn"
FORMAT_VERSION = 1  # bump when the synthesis changes, so cached sets are not reused


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """How images are synthesised. Defaults chosen on the quickstart network and the ImageNet
    EfficientNet-Lite0 (docs/optimize.md, "Data-free compression")."""

    steps: int = 200  # Adam steps per batch
    batch_size: int = 32  # BN batch statistics are taken over this many images
    learning_rate: float = 0.05  # in units of the input range's half-width
    class_weight: float = 0.0  # cross-entropy towards a random target class per image (0 = off)
    tv_weight: float = 1e-4  # total variation (smoothness prior)
    l2_weight: float = 1e-5  # image energy prior
    jitter: int = 0  # random shift in pixels per step (DeepInversion); 0 = off
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise DataError(f"synthesis {name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("learning_rate",):
            if getattr(self, name) <= 0:
                raise DataError(f"synthesis {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("class_weight", "tv_weight", "l2_weight", "jitter"):
            if getattr(self, name) < 0:
                raise DataError(f"synthesis {name} must be >= 0, got {getattr(self, name)!r}")


@dataclasses.dataclass
class SyntheticImages:
    images: np.ndarray  # float32 (N, H, W, 3) in the model's input domain
    report: dict[str, Any]  # settings, per-layer BN statistic error before/after, time
    cache_dir: Path | None = None  # where images.npy, report.json/.md and grid.png live


def parse(spec: str) -> int | None:
    """``synthetic:bn`` -> None, ``synthetic:bn:N`` -> N; DataError for anything else."""
    text = spec.strip()
    if text == SPEC_PREFIX:
        return None
    head, _, count = text.rpartition(":")
    if head == SPEC_PREFIX and count.isdigit() and int(count) > 0:
        return int(count)
    raise DataError(f"synthetic data spec {spec!r} is not synthetic:bn or synthetic:bn:N (N images, N > 0)")


def is_synthetic(spec: Any) -> bool:
    return isinstance(spec, str) and spec.strip().startswith("synthetic:")


def batchnorm_layers(model: tf_keras.Model) -> list[tf_keras.layers.BatchNormalization]:
    """The model's top-level BatchNormalization layers (fused or not); DataError when none."""
    layers = [layer for layer in model.layers if isinstance(layer, tf_keras.layers.BatchNormalization)]
    if not layers:
        nested = any(isinstance(layer, tf_keras.Model) for layer in model.layers)
        raise DataError(
            f"model {model.name!r} has no BatchNormalization layers"
            + (" at its top level (nested models are not searched)" if nested else "")
            + ": synthetic:bn data is synthesised from BatchNorm moving statistics; use a real data spec"
        )
    return layers


def input_domain(scheme: str, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per channel: where pixels 0 and 255 land after the scheme's normalisation."""
    ends = normalize(tf.constant([[0.0] * 3, [255.0] * 3]), scheme).numpy()
    return ends.min(axis=0)[:channels].astype(np.float32), ends.max(axis=0)[:channels].astype(np.float32)


class _BatchNormTaps:
    """The inputs of every BN layer and the logits, from one forward pass in inference mode."""

    def __init__(self, model: tf_keras.Model):
        self.layers = batchnorm_layers(model)
        self.tapped = tf_keras.Model(model.inputs, [layer.input for layer in self.layers] + [model.outputs[0]])
        self.means = [tf.constant(layer.moving_mean.numpy(), tf.float32) for layer in self.layers]
        self.variances = [tf.constant(layer.moving_variance.numpy(), tf.float32) for layer in self.layers]
        self.names = [layer.name for layer in self.layers]

    def statistics(self, images: tf.Tensor) -> tuple[list[tf.Tensor], list[tf.Tensor], tf.Tensor]:
        outputs = self.tapped(images, training=False)
        means, variances = [], []
        for features, layer in zip(outputs[:-1], self.layers, strict=True):
            axis = layer.axis[0] if hasattr(layer.axis, "__len__") else layer.axis  # a list in tf_keras
            axis = axis % len(features.shape)
            reduce = [i for i in range(len(features.shape)) if i != axis]
            mean, variance = tf.nn.moments(tf.cast(features, tf.float32), axes=reduce)
            means.append(mean)
            variances.append(variance)
        return means, variances, outputs[-1]

    def bn_loss(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        means, variances, logits = self.statistics(images)
        terms = [
            tf.norm(m - target_m) + tf.norm(v - target_v)
            for m, v, target_m, target_v in zip(means, variances, self.means, self.variances, strict=True)
        ]
        return tf.add_n(terms), logits

    def errors(self, images: np.ndarray, batch_size: int) -> list[dict[str, float]]:
        """Per layer, over `images` in batches of `batch_size` (averaged): the RMS error of the
        batch mean and of the batch standard deviation, in units of the layer's RMS moving std."""
        totals = np.zeros((len(self.layers), 2))
        batches = 0
        for start in range(0, len(images), batch_size):
            means, variances, _ = self.statistics(tf.constant(images[start : start + batch_size]))
            for i, (m, v, tm, tv) in enumerate(zip(means, variances, self.means, self.variances, strict=True)):
                scale = float(np.sqrt(np.mean(tv.numpy()))) + 1e-6
                totals[i, 0] += float(np.sqrt(np.mean((m.numpy() - tm.numpy()) ** 2))) / scale
                totals[i, 1] += float(np.sqrt(np.mean((np.sqrt(v.numpy()) - np.sqrt(tv.numpy())) ** 2))) / scale
            batches += 1
        totals /= max(batches, 1)
        return [{"layer": n, "mean_error": float(a), "std_error": float(b)} for n, (a, b) in zip(self.names, totals, strict=True)]


def mean_error(layers: list[dict[str, float]]) -> float:
    """One figure for a per-layer error list: mean over layers of mean_error + std_error."""
    return float(np.mean([row["mean_error"] + row["std_error"] for row in layers]))


def weights_hash(model: tf_keras.Model) -> str:
    digest = hashlib.sha256()
    for weight in model.weights:
        value = weight.numpy()
        digest.update(f"{weight.name}{value.shape}{value.dtype}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def default_cache_root() -> Path:
    # The same home as downloaded weights (models/weights.py, which data/ does not import).
    return Path(os.environ.get("NLIGHTEN_TF_HOME") or "~/.cache/nlighten_tf").expanduser() / "synthetic"


def synthesize(
    model: tf_keras.Model,
    count: int,
    scheme: str | None = None,
    config: SynthesisConfig | None = None,
    cache_root: str | os.PathLike[str] | None = None,
    cache: bool = True,
    log: Callable[[str], None] | None = print,
) -> SyntheticImages:
    """`count` images for `model` (input (H, W, 3)) whose BN statistics match its moving
    statistics; from the cache when the same weights and settings were synthesised before.

    scheme: the model's preprocessing scheme (input range); default "lite".
    log: progress lines (one per batch: step, BN loss, time); None = quiet.
    """
    config = config or SynthesisConfig()
    scheme = resolve_scheme(scheme)
    if int(count) != count or count < 1:
        raise DataError(f"synthetic:bn needs a positive number of images, got {count!r}")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape or shape[-1] not in (1, 3):
        raise DataError(f"synthetic:bn needs a model with a fixed image input (H, W, 1|3), got {model.inputs[0].shape}")
    taps = _BatchNormTaps(model)
    settings = {"format": FORMAT_VERSION, "count": int(count), "input_shape": list(shape), "scheme": scheme,
                **dataclasses.asdict(config)}  # fmt: skip
    key = hashlib.sha256(json.dumps({"weights": weights_hash(model), **settings}, sort_keys=True).encode()).hexdigest()[:20]
    directory = Path(cache_root).expanduser() if cache_root else default_cache_root()
    directory = directory / key
    if cache and (directory / "images.npy").is_file() and (directory / "report.json").is_file():
        images = np.load(directory / "images.npy")
        if log:
            log(f"synthetic:bn: {len(images)} cached images from {directory}")
        return SyntheticImages(images, json.loads((directory / "report.json").read_text()), directory)

    low, high = input_domain(scheme, shape[-1])
    middle, half = (low + high) / 2, (high - low) / 2
    rng = np.random.default_rng(config.seed)
    num_classes = int(model.outputs[0].shape[-1])
    step = _make_step(taps, config, middle, half, shape)
    started = time.perf_counter()
    batches, initial = [], []
    for start in range(0, count, config.batch_size):
        size = min(config.batch_size, count - start)
        # Unit space: x = middle + half * z with z in [-1, 1]; the learning rate is then the same
        # fraction of the input range for every scheme.
        z = tf.Variable(np.clip(rng.normal(0.0, 0.5, (size, *shape)), -1, 1).astype(np.float32))
        initial.append(middle + half * z.numpy())
        targets = tf.constant(rng.integers(0, num_classes, size), tf.int64)
        optimizer = tf_keras.optimizers.Adam(config.learning_rate)
        batch_started = time.perf_counter()
        for i in range(config.steps):
            shift = rng.integers(-config.jitter, config.jitter + 1, 2) if config.jitter else np.zeros(2, np.int64)
            bn, total, gradient = step(z, targets, tf.constant(shift, tf.int32))
            optimizer.apply_gradients([(gradient, z)])
            z.assign(tf.clip_by_value(z, -1.0, 1.0))
            if log and (i == 0 or (i + 1) % max(1, config.steps // 4) == 0):
                log(f"synthetic:bn batch {start // config.batch_size + 1}/{-(-count // config.batch_size)} "
                    f"step {i + 1}/{config.steps}: BN loss {float(bn):.4g}, total {float(total):.4g} "
                    f"({time.perf_counter() - batch_started:.0f} s)")  # fmt: skip
        batches.append((middle + half * z.numpy()).astype(np.float32))
    seconds = time.perf_counter() - started
    images = np.concatenate(batches)
    before = taps.errors(np.concatenate(initial).astype(np.float32), config.batch_size)
    after = taps.errors(images, config.batch_size)
    report = {
        "settings": settings, "model": model.name, "bn_layers": len(taps.layers), "seconds": round(seconds, 1),
        "seconds_per_image": round(seconds / count, 3), "error_before": mean_error(before),
        "error_after": mean_error(after),
        "layers": [{"layer": b["layer"], "mean_error_before": b["mean_error"], "std_error_before": b["std_error"],
                    "mean_error_after": a["mean_error"], "std_error_after": a["std_error"]}
                   for b, a in zip(before, after, strict=True)],
    }  # fmt: skip
    if log:
        log(f"synthetic:bn: {count} images in {seconds:.0f} s; BN statistics error {report['error_before']:.3f} "
            f"(noise) -> {report['error_after']:.3f}")  # fmt: skip
    if cache:
        write_report(directory, images, report, scheme)
    return SyntheticImages(images, report, directory if cache else None)


def _make_step(taps: _BatchNormTaps, config: SynthesisConfig, middle: np.ndarray, half: np.ndarray, shape: tuple):
    middle_t, half_t = tf.constant(middle), tf.constant(half)

    @tf.function(reduce_retracing=True)
    def step(z: tf.Variable, targets: tf.Tensor, shift: tf.Tensor):
        # Gradients only: the optimizer (new per batch) runs eagerly outside the traced function.
        with tf.GradientTape() as tape:
            images = middle_t + half_t * z
            if config.jitter:
                images = tf.roll(images, shift=shift, axis=[1, 2])
            bn, logits = taps.bn_loss(images)
            total = bn
            if config.class_weight:
                total += config.class_weight * tf.reduce_mean(
                    tf.keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
                )
            if config.tv_weight:
                total += config.tv_weight * tf.reduce_mean(tf.image.total_variation(z)) / float(np.prod(shape))
            if config.l2_weight:
                total += config.l2_weight * tf.reduce_mean(tf.reduce_sum(z**2, axis=[1, 2, 3]))
        return bn, total, tape.gradient(total, z)

    return step


def write_report(directory: Path, images: np.ndarray, report: dict[str, Any], scheme: str) -> None:
    """images.npy, report.json, report.md (per-layer table) and grid.png, each atomically;
    images.npy last, so a set counts as cached only once everything else is there."""
    from nlighten_tf import render

    atomic.write_json(directory / "report.json", report)
    rows = [{"layer": r["layer"], "mean error (noise)": r["mean_error_before"], "mean error": r["mean_error_after"],
             "std error (noise)": r["std_error_before"], "std error": r["std_error_after"]}
            for r in report["layers"]]  # fmt: skip
    atomic.write_text(directory / "report.md", (
        f"# synthetic:bn for {report['model']}\n\n{report['settings']['count']} images, "
        f"{report['seconds']} s ({report['seconds_per_image']} s per image). BN statistic error (RMS, in units of "
        f"the layer's moving std; mean over {report['bn_layers']} layers of mean + std error): "
        f"{report['error_before']:.3f} for the starting noise, {report['error_after']:.3f} after.\n\n"
        + render.markdown_table(rows) + "\n"
    ))  # fmt: skip
    save_grid(images, directory / "grid.png", scheme)
    buffer = io.BytesIO()
    np.save(buffer, images)
    atomic.write_bytes(directory / "images.npy", buffer.getvalue())


def to_pixels(images: np.ndarray, scheme: str) -> np.ndarray:
    """Model-domain images back to uint8 pixels (the inverse of the scheme's normalisation)."""
    low, high = input_domain(scheme, images.shape[-1])
    return np.clip(np.rint((images - low) / (high - low) * 255.0), 0, 255).astype(np.uint8)


def save_grid(images: np.ndarray, path: str | os.PathLike[str], scheme: str, max_images: int = 32) -> None:
    from nlighten_tf import render

    plt = render.pyplot()
    shown = to_pixels(images[:max_images], scheme)
    columns = min(8, len(shown))
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), shown, strict=False):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
    fig.tight_layout()
    render.save_figure(fig, os.fspath(path))
