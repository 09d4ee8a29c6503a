"""Structured channel pruning on this machine: latency of the narrower dense network, and the
accuracy cost on Fashion-MNIST.

Latency (default): MobileNetV2 1.0@224 and EfficientNet-Lite0@224 (random weights: latency does
not depend on the values), one-shot channel pruning to `--keep_madds` of the MAdds (counted
from the built graph; `--criterion`, uniform allocation, channel counts rounded to
`--channel_multiple`), exported fp32 and int8 (calibrated on random inputs) for the original
and the pruned model. `--repetitions` blocks of `--runs` interleaved invokes (original,
pruned, original, ...) at each thread count; the ratio original/pruned of the medians is
taken per block and reported as the median (min-max) over blocks. Goals (issue 7): fp32 >=
1.6x and int8 >= 1.5x at 1 thread with 50% of the MAdds kept.

Fashion-MNIST (`--fashion_mnist`): the quickstart network (EfficientNet-Lite0 family, width
0.75, depth 0.6, 512-filter head, 32 px), trained (or `--fashion_keras_model`), channel-pruned
to 50% of its MAdds in `--fashion_steps` rounds of fine-tuning with distillation from the
unpruned model; top-1 of the fp32 and int8 `.tflite` files through the interpreter on the
10k test images, before and after. Goal: <= 1 point lost.

  python benchmarks/channel_pruning.py [--output_dir=benchmarks/results] [--threads=1]
  python benchmarks/channel_pruning.py --nolatency --fashion_mnist [--fashion_keras_model=trained.h5]

Both modes update their own section of channel_pruning.json / .md (the other is kept).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import models  # noqa: E402
from nlighten_tf.bench import latency  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402
from nlighten_tf.optimize import channel_prune  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("latency", True, "Measure the latency study.")
flags.DEFINE_list("models", ["mobilenet_v2", "efficientnet_lite0"], "Zoo models for the latency study.")
flags.DEFINE_float("keep_madds", 0.5, "Fraction of MAdds kept.")
flags.DEFINE_enum("criterion", "l1", list(channel_prune.CRITERIA), "Channel criterion (latency study: data-free ones).")
flags.DEFINE_integer("channel_multiple", 16, "Kept channel counts rounded to multiples of this.")
flags.DEFINE_list("targets", ["fp32", "int8"], "Export targets measured.")
flags.DEFINE_list("threads", ["1"], "Thread counts.")
flags.DEFINE_integer("repetitions", 5, "Interleaved measurement blocks per target and thread count.")
flags.DEFINE_integer("runs", 20, "Invokes per model per block.")
flags.DEFINE_integer("warmup", 5, "Untimed invokes per model per block.")
flags.DEFINE_integer("input_size", 224, "Resolution of the latency study.")
flags.DEFINE_bool("fashion_mnist", False, "Run the Fashion-MNIST accuracy study (trains: ~15-25 min here).")
flags.DEFINE_string("fashion_keras_model", None, "A trained quickstart model (.h5) instead of training one.")
flags.DEFINE_float("fashion_epochs", 6.0, "Training epochs of the unpruned quickstart model (when not given).")
flags.DEFINE_integer("fashion_steps", 2, "Pruning rounds.")
flags.DEFINE_float("fashion_epochs_per_step", 1.0, "Fine-tuning epochs after each round.")
flags.DEFINE_float("fashion_final_epochs", 2.0, "Extra fine-tuning epochs at the end.")
flags.DEFINE_string("fashion_criterion", "taylor", "Channel criterion of the Fashion-MNIST study.")
flags.DEFINE_float("fashion_learning_rate", 1e-3, "Fine-tuning peak learning rate.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where channel_pruning.json / .md go.")

GOALS = {"fp32": 1.6, "int8": 1.5}  # issue 7, at 1 thread, 50% of MAdds kept
ACCURACY_GOAL = 1.0  # points of top-1 lost at most on Fashion-MNIST
QUICKSTART = {"width_coefficient": 0.75, "depth_coefficient": 0.6, "head_filters": 512, "dropout_rate": 0.1}
STEM = "channel_pruning"


def random_calibration(size: int, n: int = 8):
    rng = np.random.default_rng(0)
    samples = [rng.uniform(-1.0, 1.0, (1, size, size, 3)).astype(np.float32) for _ in range(n)]
    return lambda: ([s] for s in samples)


def prune_and_export(name: str, workdir: Path) -> dict:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    size = FLAGS.input_size
    model = models.build(name, input_shape=(size, size, 3))
    config = channel_prune.ChannelPruneConfig(keep_madds=FLAGS.keep_madds, criterion=FLAGS.criterion,
                                              channel_multiple=FLAGS.channel_multiple, epochs_per_step=0)  # fmt: skip
    start = time.time()
    result = channel_prune.channel_prune(model, config)
    surgery_s = time.time() - start
    calibration = random_calibration(size)
    paths = {}
    for tag, keras_model in (("original", model), ("pruned", result.model)):
        for target in FLAGS.targets:
            path = workdir / f"{name}_{tag}_{target}.tflite"
            tflite.export(keras_model, path, target, representative_dataset=calibration, sidecar=False)
            paths[(tag, target)] = path
    return {
        "paths": paths, "surgery_s": surgery_s, "report": result.report,
        "madds": (models.count_madds(model), models.count_madds(result.model)),
        "params": (models.count_params(model), models.count_params(result.model)),
    }  # fmt: skip


def measure(original: Path, pruned: Path, threads: int) -> dict:
    ratios, medians = [], {"original": [], "pruned": []}
    for _ in range(FLAGS.repetitions):
        first, second = latency.measure_interleaved([original, pruned], threads, FLAGS.runs, FLAGS.warmup)
        medians["original"].append(first.median_ms)
        medians["pruned"].append(second.median_ms)
        ratios.append(first.median_ms / second.median_ms)
    return {
        "original_ms": float(np.median(medians["original"])), "pruned_ms": float(np.median(medians["pruned"])),
        "ratio": float(np.median(ratios)), "ratio_min": float(min(ratios)), "ratio_max": float(max(ratios)),
        "blocks": ratios,
    }  # fmt: skip


def latency_study() -> tuple[dict, str]:
    rows, details = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in FLAGS.models:
            print(f"{name}: pruning to {FLAGS.keep_madds:.0%} of MAdds and exporting ...", flush=True)
            info = prune_and_export(name, Path(tmp))
            sizes = {f"{tag}_{target}": p.stat().st_size for (tag, target), p in info["paths"].items()}
            for target in FLAGS.targets:
                for threads in (int(t) for t in FLAGS.threads):
                    print(f"  measuring {target} at {threads} thread(s) ...", flush=True)
                    m = measure(info["paths"][("original", target)], info["paths"][("pruned", target)], threads)
                    goal = GOALS.get(target) if threads == 1 else None
                    rows.append({
                        "model": name, "target": target, "threads": threads,
                        "MAdds kept": info["madds"][1] / info["madds"][0],
                        "params kept": info["params"][1] / info["params"][0],
                        "original ms": m["original_ms"], "pruned ms": m["pruned_ms"], "original/pruned": m["ratio"],
                        "range": f"{m['ratio_min']:.2f}-{m['ratio_max']:.2f}",
                        "goal": f">= {goal}x: {'met' if m['ratio'] >= goal else 'NOT met'}" if goal else "",
                    })  # fmt: skip
            details.append({
                "model": name, "madds": info["madds"], "params": info["params"], "sizes_bytes": sizes,
                "surgery_s": info["surgery_s"], "groups": info["report"]["groups"],
            })  # fmt: skip
    text = "\n".join([
        f"{FLAGS.input_size}x{FLAGS.input_size}, random weights, criterion {FLAGS.criterion}, uniform allocation, "
        f"channels rounded to multiples of {FLAGS.channel_multiple}; ai_edge_litert + XNNPACK; median of "
        f"{FLAGS.repetitions} interleaved blocks x {FLAGS.runs} runs; ratio = original median / pruned median per "
        "block (range over blocks).", "", markdown_table(rows), "",
    ])  # fmt: skip
    settings = {k: FLAGS[k].value for k in ("models", "keep_madds", "criterion", "channel_multiple", "targets",
                                            "threads", "repetitions", "runs", "warmup", "input_size")}  # fmt: skip
    return {"settings": settings, "rows": rows, "models": details, "markdown": text}, text


def fashion_study() -> tuple[dict, str]:
    from nlighten_tf import data
    from nlighten_tf.bench import accuracy
    from nlighten_tf.keras_io import load_keras
    from nlighten_tf.optimize import training
    from nlighten_tf.optimize.distill import DistillConfig
    from nlighten_tf.recipes.runner import keras_verbosity

    model_name, size = "efficientnet_lite0", 32
    common_args = dict(image_size=size, batch_size=128, model=model_name, cache=True)
    train, info = data.load("fashion_mnist", "train", seed=0, **common_args)
    test, _ = data.load("fashion_mnist", "test", **common_args)
    scheme = data.resolve_scheme(model=model_name)
    verbose = keras_verbosity()
    if FLAGS.fashion_keras_model:
        base, source = load_keras(Path(FLAGS.fashion_keras_model)), FLAGS.fashion_keras_model
    else:
        import tf_keras

        tf_keras.utils.set_random_seed(0)
        base = models.build(model_name, input_shape=(size, size, 3), num_classes=info.num_classes, **QUICKSTART)
        print(f"training the quickstart model for {FLAGS.fashion_epochs:g} epochs ...", flush=True)
        base, _ = training.fit(base, train, training.TrainConfig(epochs=FLAGS.fashion_epochs, learning_rate=4e-3,
                                                                 verbose=verbose))  # fmt: skip
        source = f"trained here: {FLAGS.fashion_epochs:g} epochs, lr 4e-3 cosine (the quickstart recipe's train stage)"
    config = channel_prune.ChannelPruneConfig(
        keep_madds=0.5, criterion=FLAGS.fashion_criterion, steps=FLAGS.fashion_steps,
        epochs_per_step=FLAGS.fashion_epochs_per_step, final_epochs=FLAGS.fashion_final_epochs,
        distill=DistillConfig(alpha=0.5), bn_recalibration_batches=50, calibration_batches=8,
    )  # fmt: skip
    start = time.time()
    result = channel_prune.channel_prune(
        base, config, train, test, training.TrainConfig(learning_rate=FLAGS.fashion_learning_rate, verbose=verbose),
        log=print,
    )  # fmt: skip
    prune_s = time.time() - start
    rows = []
    representative = tflite.calibration_data("fashion_mnist", 200, size, preprocessing=scheme)
    with tempfile.TemporaryDirectory() as tmp:
        for tag, keras_model in (("original", base), ("pruned", result.model)):
            row = {"model": tag, "MAdds": models.count_madds(keras_model), "params": models.count_params(keras_model)}
            for target in ("fp32", "int8"):
                path = Path(tmp) / f"{tag}_{target}.tflite"
                tflite.export(keras_model, path, target, representative_dataset=representative, sidecar=False)
                row[f"{target} top-1 %"] = 100 * accuracy.evaluate(path, "fashion_mnist", "test", preprocessing=scheme)["top1"]
            rows.append(row)
    losses = {t: rows[0][f"{t} top-1 %"] - rows[1][f"{t} top-1 %"] for t in ("fp32", "int8")}
    kept = rows[1]["MAdds"] / rows[0]["MAdds"]
    verdict = (f"Goal (50% of MAdds kept, <= {ACCURACY_GOAL:g} point lost, fp32 .tflite): kept {kept:.1%}, lost "
               f"{losses['fp32']:.2f} points (int8: {losses['int8']:.2f}) -> "
               f"{'met' if losses['fp32'] <= ACCURACY_GOAL and abs(kept - 0.5) <= 0.01 else 'NOT met'}")  # fmt: skip
    text = "\n".join([
        f"Quickstart network on Fashion-MNIST, 32 px; base: {source}. Channel pruning to 50% of MAdds, criterion "
        f"{config.criterion}, {config.steps} rounds x {config.epochs_per_step:g} epoch + {config.final_epochs:g} final "
        f"epochs, distilled from the unpruned model (alpha 0.5, T 4), lr {FLAGS.fashion_learning_rate:g} cosine, "
        f"BatchNorm statistics re-estimated on 50 batches after each surgery and fine-tune ({prune_s / 60:.0f} min). "
        "Top-1 on the 10k test images through the TFLite interpreter.", "", markdown_table(rows), "", verdict, "",
    ])  # fmt: skip
    payload = {"source": source, "config": str(config), "rows": rows, "verdict": verdict, "history": result.history,
               "groups": result.report["groups"], "prune_s": prune_s, "markdown": text}  # fmt: skip
    return payload, text


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter hides our output
    del argv
    start = time.time()
    existing_path = Path(FLAGS.output_dir) / f"{STEM}.json"
    payload = json.loads(existing_path.read_text()) if existing_path.exists() else {}
    payload.pop("seconds", None)
    if FLAGS.latency:
        payload["latency"], _ = latency_study()
    if FLAGS.fashion_mnist:
        payload["fashion_mnist"], _ = fashion_study()
    sections = [payload[k]["markdown"] for k in ("latency", "fashion_mnist") if k in payload]
    common.write_results(FLAGS.output_dir, STEM, payload, "\n".join(sections), start)
    return 0


if __name__ == "__main__":
    app.run(main)
