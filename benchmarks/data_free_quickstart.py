"""Data-free compression of the quickstart network (EfficientNet-Lite0 family, Fashion-MNIST,
32 px): int8 calibrated on `synthetic:bn` images vs on real training images, and a
channel-pruned student with no fine-tuning, fine-tuned on real labelled data, or distilled from
the unpruned model on synthetic images only (`optimize.data_free.distill`). Every figure is
top-1 accuracy on the 10,000 Fashion-MNIST test images (Keras float, or the int8 file on host
LiteRT / XNNPACK).

  python benchmarks/data_free_quickstart.py --keras_model=runs/quickstart/01-train/model.h5 \
      [--synthetic_images=512] [--output_dir=benchmarks/results]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import data, fidelity  # noqa: E402
from nlighten_tf.data import synthetic  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402
from nlighten_tf.keras_io import load_keras  # noqa: E402
from nlighten_tf.keras_utils import copy_model  # noqa: E402
from nlighten_tf.optimize import channel_prune, data_free, distill, training  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("keras_model", "runs/quickstart/01-train/model.h5", "The trained quickstart float model.")
flags.DEFINE_integer("calibration_samples", 200, "Calibration images per int8 file (the export stage's default).")
flags.DEFINE_integer("synthetic_images", 512, "Synthetic images for the data-free distillation.")
flags.DEFINE_integer("steps", 200, "Synthesis steps per batch.")
flags.DEFINE_float("keep_params", 0.6, "Channel pruning: fraction of parameters kept (l1, uniform).")
flags.DEFINE_float("real_epochs", 1.0, "Fine-tuning epochs on the real training images.")
flags.DEFINE_float("distill_epochs", 10.0, "Distillation epochs over the synthetic images.")
flags.DEFINE_float("learning_rate", 3e-4, "Fine-tuning / distillation learning rate.")
flags.DEFINE_integer("test_examples", None, "Only the first N test images (default: all 10,000).")
flags.DEFINE_integer("train_examples", None, "Only the first N training images for the real fine-tune (default: all).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where data_free_quickstart.json / .md go.")
SPEC, SIZE, SCHEME = "fashion_mnist", 32, "lite"
GOAL_POINTS = 1.0  # issue 20: data-free int8 within 1 point of real-data int8 on test


def test_arrays() -> tuple[np.ndarray, np.ndarray]:
    dataset, _ = data.load(SPEC, "test", image_size=SIZE, batch_size=500, preprocessing=SCHEME,
                           limit=FLAGS.test_examples)  # fmt: skip
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in dataset], strict=True)
    return np.concatenate(images), np.concatenate(labels)


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(outputs, -1) == labels))


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    del argv
    start = time.time()
    teacher = load_keras(FLAGS.keras_model)
    images, labels = test_arrays()
    teacher_outputs = teacher.predict(images, batch_size=500, verbose=0)
    rows = [{"model": "float (trained quickstart network)", "data used": "-",
             "test accuracy": accuracy(teacher_outputs, labels)}]  # fmt: skip
    config = synthetic.SynthesisConfig(steps=FLAGS.steps)
    calibrations = {
        "int8, calibrated on real training images": (
            f"{FLAGS.calibration_samples} {SPEC} train",
            tflite.calibration_data(SPEC, FLAGS.calibration_samples, SIZE, preprocessing=SCHEME),
        ),
        "int8, calibrated on synthetic:bn": (
            f"{FLAGS.calibration_samples} synthetic",
            data.representative_dataset("synthetic:bn", FLAGS.calibration_samples, preprocessing=SCHEME,
                                        keras_model=teacher, synthesis=config),
        ),
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name, (used, calibration) in calibrations.items():
            print(f"{name} ...", flush=True)
            path = Path(tmp) / "int8.tflite"
            tflite.export(teacher, path, "int8", representative_dataset=calibration, sidecar=False)
            outputs = fidelity.tflite_outputs(path, images)
            rows.append({"model": name, "data used": used, "test accuracy": accuracy(outputs, labels),
                         "agreement with float": fidelity.compare(teacher_outputs, outputs)["top1_agreement"]})  # fmt: skip
    real_int8, synthetic_int8 = rows[1]["test accuracy"], rows[2]["test accuracy"]
    gap = 100 * (real_int8 - synthetic_int8)
    verdict = (f"Goal (data-free int8 within {GOAL_POINTS} point of real-data int8 on test): {gap:+.2f} points "
               f"behind -> {'met' if gap <= GOAL_POINTS else 'NOT met'}")  # fmt: skip

    prune_config = channel_prune.ChannelPruneConfig(keep_params=FLAGS.keep_params, epochs_per_step=0.0)
    pruned = channel_prune.channel_prune(teacher, prune_config).model
    ratio = pruned.count_params() / teacher.count_params()
    label = f"channel-pruned to {100 * ratio:.0f}% of parameters (l1, uniform)"
    rows.append({"model": f"{label}, no fine-tuning", "data used": "-",
                 "test accuracy": accuracy(pruned.predict(images, batch_size=500, verbose=0), labels)})  # fmt: skip

    print("fine-tuning the pruned student on real labelled data ...", flush=True)
    train, info = data.load(SPEC, "train", image_size=SIZE, batch_size=128, preprocessing=SCHEME,
                            limit=FLAGS.train_examples)  # fmt: skip
    real_student = copy_model(pruned)
    tuned, _ = training.fit(real_student, train, training.TrainConfig(epochs=FLAGS.real_epochs,
                            learning_rate=FLAGS.learning_rate, verbose=0))  # fmt: skip
    rows.append({"model": f"{label}, fine-tuned on real data", "data used":
                 f"{FLAGS.real_epochs:g} epoch(s) of {info.num_examples} labelled {SPEC} train",
                 "test accuracy": accuracy(tuned.predict(images, batch_size=500, verbose=0), labels)})  # fmt: skip

    print("distilling the pruned student on synthetic images ...", flush=True)
    synthesis_started = time.time()
    synthesized = synthetic.synthesize(teacher, FLAGS.synthetic_images, SCHEME, config)
    synthesis_seconds = time.time() - synthesis_started
    student = copy_model(pruned)
    distilled = data_free.distill(
        student, teacher, distill.DistillConfig(),
        training.TrainConfig(epochs=FLAGS.distill_epochs, learning_rate=FLAGS.learning_rate, verbose=0),
        images=synthesized.images,
    ).model  # fmt: skip
    rows.append({"model": f"{label}, distilled on synthetic images only", "data used":
                 f"{FLAGS.synthetic_images} synthetic:bn images, {FLAGS.distill_epochs:g} epochs",
                 "test accuracy": accuracy(distilled.predict(images, batch_size=500, verbose=0), labels)})  # fmt: skip

    report = synthesized.report
    text = "\n".join([
        f"Quickstart network ({FLAGS.keras_model}), accuracy on the {len(labels)} Fashion-MNIST test images; "
        "int8 files on host LiteRT (XNNPACK).", "",
        markdown_table(rows), "", verdict, "",
        f"Synthesis: {report['settings']['count']} images at {SIZE} px, {report['settings']['steps']} Adam steps per "
        f"batch of {report['settings']['batch_size']}, {report['seconds']} s ({report['seconds_per_image']} s per "
        f"image, 2 shared CPU cores; {synthesis_seconds:.0f} s with the cache lookup); BN statistic error "
        f"{report['error_before']:.3f} (noise) -> {report['error_after']:.3f} over {report['bn_layers']} BN layers.", "",
    ])  # fmt: skip
    payload = {"keras_model": FLAGS.keras_model, "rows": rows, "verdict": verdict,
               "synthesis": {k: v for k, v in report.items() if k != "layers"},
               "flags": {k: FLAGS[k].value for k in ("calibration_samples", "synthetic_images", "steps", "keep_params",
                                                    "real_epochs", "distill_epochs", "learning_rate")}}  # fmt: skip
    common.write_results(FLAGS.output_dir, "data_free_quickstart", payload, text, start)
    return 0


if __name__ == "__main__":
    app.run(main)
