"""Auto-compression of an ImageNet network without ImageNet: EfficientNet-Lite0 (224 px, the
ImageNet checkpoint, docs/weights.md) searched to a host latency budget against uniform
thinning, scored by top-1 agreement with the float model on real photos.

There are no ImageNet labels here, so the float model is the teacher: every image's label is
its softmax output, the search ranks proposals by cross-entropy against it (its "accuracy" is
top-1 agreement), and the fine-tune distils from it. Images (`data.reference_images`): crops of
the 18 scikit-image photos, split by PHOTO so no crop of a test photo is seen before the end
(train: 11 photos plus upscaled digits/Fashion-MNIST; validation, for every choice: 3 photos;
test, reported once: 4 photos). Crops of one photo are not independent: the table says how
many photos and crops each figure rests on. Agreement is measured on int8 files through the
interpreter against the original's fp32 file; the clear-crops column keeps the test crops the
float model decides with top-1 probability >= `fidelity.CONFIDENT`.

  python benchmarks/autocompress_imagenet.py [--budget=latency_ms:0.5x] [--epochs=2] \
      [--output_dir=benchmarks/results/autocompress_imagenet]

Latency: host XNNPACK int8, 1 thread, every final file interleaved with the original in one
closing run. Writes autocompress_imagenet.json / .md, each finished row at once.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Zoo model with an ImageNet checkpoint.")
flags.DEFINE_integer("image_size", 224, "Input resolution.")
flags.DEFINE_string("budget", "latency_ms:0.5x", "The budget every method meets.")
flags.DEFINE_list("methods", ["netadapt", "uniform"], "Methods, in order.")
flags.DEFINE_float("epochs", 2.0, "Distillation epochs after each search (same for every method).")
flags.DEFINE_float("learning_rate", 1e-4, "Fine-tuning learning rate.")
flags.DEFINE_float("step", 0.3, "Fraction of a group's channels one search proposal removes.")
flags.DEFINE_integer("score_batches", 2, "Validation batches each proposal is scored on.")
flags.DEFINE_integer("batch_size", 32, "Batch size (search scoring and fine-tune).")
flags.DEFINE_bool("recalibrate_proposals", False, "Re-estimate BN before scoring each proposal (slower at 224 px).")
flags.DEFINE_integer("per_set", 100, "Upscaled digits and Fashion-MNIST images added to the training images.")
flags.DEFINE_integer("latency_runs", 20, "Interleaved invokes per file in the search's measurements.")
flags.DEFINE_integer("final_runs", 60, "Interleaved invokes per file in the closing latency run.")
flags.DEFINE_string("output_dir", "benchmarks/results/autocompress_imagenet", "Where the results go.")

# Photo indices into reference_images.PHOTOS, fixed before any run: every choice on VALIDATION,
# TEST read once at the end.
VALIDATION_PHOTOS = (3, 7, 11)  # coffee, moon, grass
TEST_PHOTOS = (1, 5, 9, 13)  # cat, camera, clock, immunohistochemistry


def _splits(refs, inputs: np.ndarray) -> dict[str, np.ndarray]:
    from nlighten_tf.data import reference_images

    per_photo = reference_images.CROPS_PER_PHOTO
    photo_of = np.array([i // per_photo if s == "photos" else -1 for i, s in enumerate(refs.sources)])
    validation = np.isin(photo_of, VALIDATION_PHOTOS)
    test = np.isin(photo_of, TEST_PHOTOS)
    return {"train": inputs[~validation & ~test], "validation": inputs[validation], "test": inputs[test]}


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import tensorflow as tf

    from nlighten_tf import data, fidelity, models
    from nlighten_tf.autocompress import search as autocompress
    from nlighten_tf.bench.latency import measure_interleaved
    from nlighten_tf.data import reference_images
    from nlighten_tf.export import tflite
    from nlighten_tf.optimize import data_free, training

    start = time.time()
    size = FLAGS.image_size
    model = models.build(FLAGS.model, input_shape=(size, size, 3), weights="imagenet")
    scheme = data.resolve_scheme(model=FLAGS.model)
    refs = reference_images.load(per_set=FLAGS.per_set)
    splits = _splits(refs, refs.preprocessed(size, scheme))
    counts = {name: len(x) for name, x in splits.items()}
    print(f"images: {counts} (validation photos {len(VALIDATION_PHOTOS)}, test photos {len(TEST_PHOTOS)})", flush=True)

    # Training carries the teacher's top-1 as the hard label (distillation adds its soft outputs);
    # validation carries its probabilities, so proposals are ranked by cross-entropy against them.
    train = data_free.teacher_labelled(model, splits["train"], FLAGS.batch_size, flip=False)  # crops come mirrored
    teacher = tf.nn.softmax(model.predict(splits["validation"], batch_size=FLAGS.batch_size, verbose=0)).numpy()
    validation = tf.data.Dataset.from_tensor_slices((splits["validation"], teacher)).batch(FLAGS.batch_size)
    scratch = Path(tempfile.mkdtemp(prefix="autocompress_imagenet_"))
    out = Path(FLAGS.output_dir)
    fp32_file, original_file = scratch / "original_fp32.tflite", scratch / "original_int8.tflite"
    tflite.export(model, fp32_file, "fp32", sidecar=False)
    reference = fidelity.tflite_outputs(fp32_file, splits["test"])
    calibration = autocompress.representative(train, 64)
    tflite.export(model, original_file, "int8", representative_dataset=calibration, sidecar=False)

    def agreement(path: Path) -> dict[str, float]:
        compared = fidelity.compare(reference, fidelity.tflite_outputs(path, splits["test"]))
        return {"test_agreement": compared["top1_agreement"], "test_agreement_clear": compared["top1_agreement_confident"],
                "clear_crops": compared["confident_examples"]}  # fmt: skip

    original = {"madds": models.count_madds(model), "int8": agreement(original_file)}
    print(f"original int8 vs fp32 on the test crops: {original['int8']}", flush=True)
    rows, files = [], [original_file]
    for method in FLAGS.methods:
        config = autocompress.AutocompressConfig(
            budget=FLAGS.budget, method=method, step=FLAGS.step, score_batches=FLAGS.score_batches,
            latency_runs=FLAGS.latency_runs, calibration_samples=64, recalibrate_proposals=FLAGS.recalibrate_proposals,
            # A few hundred photos must not replace ImageNet's BatchNorm statistics: a uniform 0.94 keep
            # ratio (madds:0.9x) fell to 6% validation agreement with 4 batches re-estimated.
            bn_recalibration_batches=0, freeze_batch_norm=True,
        )  # fmt: skip
        tuning = training.TrainConfig(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, verbose=0)
        load, began = os.getloadavg()[0], time.time()
        result = autocompress.autocompress(model, config, train, validation, tuning, log=print)
        path = scratch / f"{method}.tflite"
        path.write_bytes(result.flatbuffer)
        files.append(path)
        report = result.report
        rows.append({
            "method": method, "budget": FLAGS.budget, "met": report["met"],
            "achieved": round(report["achieved"]["in_budget_terms"], 4), "madds_ratio": report["madds"] / original["madds"],
            "size_kb": len(result.flatbuffer) / 1024,
            "val_agreement_searched": report["validation"]["searched"]["accuracy"],
            "val_agreement_final": report["validation"]["final"]["accuracy"], **agreement(path),
            "search_s": round(report["search_seconds"]), "total_s": round(time.time() - began), "load": round(load, 1),
            "choices": {g: c["kept"] for g, c in report["choices"].items()}, "rounds": report["rounds"],
        })  # fmt: skip
        print(f"{method}: test agreement {rows[-1]['test_agreement']:.4f} (clear crops "
              f"{rows[-1]['test_agreement_clear']:.4f})", flush=True)  # fmt: skip
        medians = [r.median_ms for r in measure_interleaved(files, runs=FLAGS.final_runs, warmup=5)]
        original["latency_ms"] = medians[0]
        for row, median in zip(rows, medians[1:], strict=True):
            row["latency_ratio"] = median / medians[0]
        _write(rows, original, counts, original["int8"]["clear_crops"], out, start)
    return 0


def _write(rows: list[dict], original: dict, counts: dict, clear: int, out: Path, start: float) -> None:
    from nlighten_tf.render import markdown_table

    text = "\n".join([
        f"Auto-compression of {FLAGS.model} (ImageNet checkpoint, {FLAGS.image_size} px) to {FLAGS.budget} on the host, "
        "`benchmarks/autocompress_imagenet.py`. Labels are the float model's own outputs (no ImageNet here): "
        f"agreement = same top-1 as the original's fp32 file, on {counts['test']} crops of {len(TEST_PHOTOS)} held-out "
        f"photos ({clear} of them clear: float top-1 probability >= 0.5). Search on {counts['validation']} crops of "
        f"{len(VALIDATION_PHOTOS)} other photos; fine-tune ({FLAGS.epochs:g} epochs, distilled) on {counts['train']} "
        "images. Latency: host XNNPACK int8, 1 thread, interleaved with the original in one closing run. "
        f"The original int8 file itself agrees on {100 * original['int8']['test_agreement']:.2f}% "
        f"({100 * original['int8']['test_agreement_clear']:.2f}% of the clear crops).", "",
        markdown_table(rows, ["method", "budget", "met", "achieved", "latency_ratio", "madds_ratio", "size_kb",
                              "val_agreement_searched", "val_agreement_final", "test_agreement",
                              "test_agreement_clear", "search_s", "load"]), "",
    ])  # fmt: skip
    payload = {"model": FLAGS.model, "image_size": FLAGS.image_size, "budget": FLAGS.budget, "epochs": FLAGS.epochs,
               "step": FLAGS.step, "validation_photos": VALIDATION_PHOTOS, "test_photos": TEST_PHOTOS,
               "images": counts, "clear_test_crops": clear, "original": original, "rows": rows}  # fmt: skip
    common.write_results(str(out), "autocompress_imagenet", payload, text, start)


if __name__ == "__main__":
    app.run(main)
