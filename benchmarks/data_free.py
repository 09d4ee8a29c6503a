"""Data-free int8: calibration on images synthesised from the model's BatchNorm statistics
(`synthetic:bn`, nlighten_tf/data/synthetic.py) against calibration on real images.

ImageNet EfficientNet-Lite0 (no ImageNet here): the int8 files are compared with the fp32 file
(`nlighten_tf.fidelity`: top-1 agreement, logit SNR) on the project's reference images
(`data.reference_images`). The real-image calibration set is crops of the last `--real_photos`
scikit-image photos; those photos are left out of the evaluation set, whose images are the
crops of the other photos plus upscaled digits and Fashion-MNIST. Also measured: calibration
on the synthesis' starting noise (what the BN matching adds) and on digits (what
benchmarks/compression.py used). Host LiteRT (XNNPACK) path.

  python benchmarks/data_free.py [--calibration_samples=64] [--steps=200] [--output_dir=benchmarks/results]
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import data, fidelity, models  # noqa: E402
from nlighten_tf.data import reference_images, synthetic  # noqa: E402
from nlighten_tf.data.pipeline import representative_arrays  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Zoo model.")
flags.DEFINE_string("weights", "imagenet", "Weights id (empty: random initialisation, for smoke tests).")
flags.DEFINE_integer("input_size", 224, "Input resolution.")
flags.DEFINE_integer("calibration_samples", 64, "Calibration images for every int8 file (synthetic and real).")
flags.DEFINE_integer("steps", 200, "Synthesis steps per batch.")
flags.DEFINE_float("learning_rate", 0.05, "Synthesis learning rate (fraction of the input half-range).")
flags.DEFINE_integer("real_photos", 6, "The last N scikit-image photos give the real calibration crops.")
flags.DEFINE_integer("per_set", 200, "Upscaled digits and Fashion-MNIST images in the evaluation set.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where data_free.json / .md go.")
GOAL_POINTS = 0.5  # issue 20: synthetic calibration within 0.5 points of real-image calibration (agreement)


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    del argv
    start = time.time()
    scheme = data.resolve_scheme(model=FLAGS.model)
    model = models.build(FLAGS.model, input_shape=(FLAGS.input_size, FLAGS.input_size, 3), weights=FLAGS.weights or None)
    size = int(model.inputs[0].shape[1])
    refs = reference_images.load(per_set=FLAGS.per_set)
    crops_per_photo = reference_images.CROPS_PER_PHOTO
    real_start = (len(reference_images.PHOTOS) - FLAGS.real_photos) * crops_per_photo
    real_end = len(reference_images.PHOTOS) * crops_per_photo
    inputs = refs.preprocessed(size, scheme)
    held_out = np.r_[0:real_start, real_end : len(inputs)]
    evaluation, real_pool = inputs[held_out], inputs[real_start:real_end]
    rng = np.random.default_rng(0)
    real = real_pool[rng.choice(len(real_pool), FLAGS.calibration_samples, replace=False)]
    eval_sources = [refs.sources[i] for i in held_out]
    print(f"evaluation: {len(evaluation)} reference images; real calibration: {len(real)} of {len(real_pool)} crops",
          flush=True)  # fmt: skip

    config = synthetic.SynthesisConfig(steps=FLAGS.steps, learning_rate=FLAGS.learning_rate)
    synthesized = synthetic.synthesize(model, FLAGS.calibration_samples, scheme, config)
    noise_config = dataclasses.replace(config, steps=1, learning_rate=1e-9)  # the starting noise, unoptimised
    noise = synthetic.synthesize(model, FLAGS.calibration_samples, scheme, noise_config, cache=False, log=None)
    digits = tflite.calibration_data("digits", FLAGS.calibration_samples, size, preprocessing=scheme)
    calibrations = {
        "real photos (held-out photos)": representative_arrays(real),
        "synthetic:bn": representative_arrays(synthesized.images),
        "noise (synthesis start)": representative_arrays(noise.images),
        "digits (upscaled)": digits,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.tflite"
        tflite.export(model, fp32, "fp32", sidecar=False)
        reference = fidelity.tflite_outputs(fp32, evaluation)
        for name, calibration in calibrations.items():
            print(f"int8 calibrated on {name} ...", flush=True)
            path = Path(tmp) / "int8.tflite"
            tflite.export(model, path, "int8", representative_dataset=calibration, sidecar=False)
            outputs = fidelity.tflite_outputs(path, evaluation)
            row = {"calibration": name, **fidelity.compare(reference, outputs)}
            for source in dict.fromkeys(eval_sources):
                mask = np.array([s == source for s in eval_sources])
                row[f"agreement {source}"] = fidelity.compare(reference[mask], outputs[mask])["top1_agreement"]
            rows.append(row)
            print(f"  agreement {row['top1_agreement']:.4f}, SNR {row['snr_db']:.2f} dB", flush=True)
    real_row, synthetic_row = rows[0], rows[1]
    gap = 100 * (real_row["top1_agreement"] - synthetic_row["top1_agreement"])
    verdict = (
        f"Goal (synthetic within {GOAL_POINTS} points of real-image calibration in top-1 agreement): "
        f"{gap:+.2f} points behind -> {'met' if gap <= GOAL_POINTS else 'NOT met'}"
    )
    report = synthesized.report
    text = "\n".join([
        f"{FLAGS.model} weights={FLAGS.weights}, int8 (converter) vs its fp32 file on {len(evaluation)} reference "
        f"images ({', '.join(f'{k}: {eval_sources.count(k)}' for k in dict.fromkeys(eval_sources))}); "
        f"{FLAGS.calibration_samples} calibration images each; host LiteRT (XNNPACK).", "",
        markdown_table(rows), "", verdict, "",
        f"Synthesis: {report['settings']['count']} images at {size} px, {report['settings']['steps']} Adam steps per "
        f"batch of {report['settings']['batch_size']}, {report['seconds']} s ({report['seconds_per_image']} s per "
        f"image, 2 shared CPU cores); BN statistic error {report['error_before']:.3f} (noise) -> "
        f"{report['error_after']:.3f} over {report['bn_layers']} BN layers.", "",
    ])  # fmt: skip
    payload = {"model": FLAGS.model, "weights": FLAGS.weights, "rows": rows, "verdict": verdict,
               "synthesis": {k: v for k, v in report.items() if k != "layers"}, "synthesis_layers": report["layers"],
               "evaluation_counts": {k: eval_sources.count(k) for k in dict.fromkeys(eval_sources)}}  # fmt: skip
    common.write_results(FLAGS.output_dir, "data_free", payload, text, start)
    return 0


if __name__ == "__main__":
    app.run(main)
