"""Compression of EfficientNet-Lite0 (ImageNet weights): file sizes raw and gzipped.

fp32 dense, int8 dense, int8 sparse at 50/75/90% and int8 sparse 75% + 16 clusters. Pruning
and clustering are applied with numpy to every Conv2D/DepthwiseConv2D/Dense kernel (TFMOT's
prunable layers), per layer by magnitude; clustering keeps zero exact and snaps the rest to 15
k-means centroids. int8 calibration uses `--calibration_data` (sizes do not depend on it).
Beside every size: the file's top-1 agreement with the fp32 dense file and its logit SNR on the
project's real reference images (`data.reference_images`: scikit-image photo crops, upscaled
digits and Fashion-MNIST; `nlighten_tf.fidelity`), so no size stands without its accuracy. One-shot
magnitude pruning with no fine-tuning: what these sizes cost (docs/optimize.md, "Data-free
compression", for recovering it without data).

  python benchmarks/compression.py [--output_dir=benchmarks/results]
"""

from __future__ import annotations

import gzip
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import data, fidelity, models  # noqa: E402
from nlighten_tf.bench import tflite_inspection  # noqa: E402
from nlighten_tf.data import reference_images  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Zoo model.")
flags.DEFINE_string("weights", "imagenet", "Weights id (converted by tools/import_weights.py).")
flags.DEFINE_string("calibration_data", "digits", "Data spec for int8 calibration.")
flags.DEFINE_integer("calibration_samples", 32, "Calibration examples.")
flags.DEFINE_integer("clusters", 16, "Clusters per kernel for the clustered variant.")
flags.DEFINE_integer("per_set", 200, "Upscaled digits and Fashion-MNIST reference images (besides the photo crops).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where compression.json / .md go.")
GOAL = 10.0  # issue 5: int8 sparse 75% + 16 clusters gzipped >= 10x smaller than fp32 dense gzipped


def build():
    try:
        return models.build(FLAGS.model, weights=FLAGS.weights)
    except Exception as error:  # weights not converted yet: say how, do not guess
        raise SystemExit(
            f"error: cannot build {FLAGS.model} with weights={FLAGS.weights!r}: {error}\n"
            f"fix: python tools/import_weights.py --model={FLAGS.model}"
        ) from None


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter hides our output
    del argv
    start = time.time()
    scheme = data.resolve_scheme(model=FLAGS.model)
    size = models.build(FLAGS.model).inputs[0].shape[1]
    calibration = tflite.calibration_data(FLAGS.calibration_data, FLAGS.calibration_samples, size, preprocessing=scheme)
    references = reference_images.load(per_set=FLAGS.per_set)
    inputs = references.preprocessed(size, scheme)
    reference_outputs = None  # the fp32 dense file's, the first variant
    variants = [
        ("fp32 dense", "fp32", 0.0, None), ("int8 dense", "int8", 0.0, None),
        ("int8 sparse 50%", "int8_sparse", 0.5, None), ("int8 sparse 75%", "int8_sparse", 0.75, None),
        ("int8 sparse 90%", "int8_sparse", 0.9, None),
        (f"int8 sparse 75% + {FLAGS.clusters} clusters", "int8_sparse", 0.75, FLAGS.clusters),
        (f"int8 dense-stored 75% + {FLAGS.clusters} clusters", "int8", 0.75, FLAGS.clusters),
    ]  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, target, sparsity, clusters in variants:
            print(f"{label} ...", flush=True)
            model = build()
            if sparsity:
                common.prune(model, sparsity, select=common.is_prunable)
            if clusters:
                common.cluster(model, clusters)
            path = Path(tmp) / f"{label.replace(' ', '_').replace('%', '')}.tflite"
            tflite.export(model, path, target, representative_dataset=calibration, sidecar=False)
            raw = path.read_bytes()
            outputs = fidelity.tflite_outputs(path, inputs)
            reference_outputs = outputs if reference_outputs is None else reference_outputs
            agreement = fidelity.compare(reference_outputs, outputs)
            report = tflite_inspection.inspect_file(path)
            total = sum(w.size for w in report.weights)
            rows.append({
                "variant": label, "target": target, "bytes": len(raw), "gzip bytes": len(gzip.compress(raw, 9, mtime=0)),
                "weight sparsity": sum(w.sparsity * w.size for w in report.weights) / total,
                "max clusters/channel": max((w.unique_per_channel or 0) for w in report.weights),
                "stored sparse": report.sparse_weights, "agreement with fp32": agreement["top1_agreement"],
                "SNR dB": agreement["snr_db"],
            })  # fmt: skip
            print(f"  {len(raw):,} bytes, agreement with fp32 {agreement['top1_agreement']:.3f}", flush=True)
    base, base_gz = rows[0]["bytes"], rows[0]["gzip bytes"]
    for row in rows:
        row["x smaller"] = base / row["bytes"]
        row["x smaller (gzip)"] = base_gz / row["gzip bytes"]
    goal_row = next(r for r in rows if "+" in r["variant"] and r["target"] == "int8_sparse")
    verdict = (
        f"Goal (>= {GOAL:.0f}x, gzipped, '{goal_row['variant']}' vs fp32 dense): "
        f"{goal_row['x smaller (gzip)']:.2f}x -> {'met' if goal_row['x smaller (gzip)'] >= GOAL else 'NOT met'}"
    )
    text = "\n".join([
        f"{FLAGS.model} weights={FLAGS.weights}; sizes in bytes; gzip -9. Agreement: top-1 agreement with the fp32 "
        f"dense file on {len(inputs)} reference images ({', '.join(f'{k}: {v}' for k, v in references.counts().items())}"
        "), host LiteRT (XNNPACK); pruning is one-shot, no fine-tuning.", "",
        markdown_table(rows), "", verdict, "",
    ])  # fmt: skip
    payload = {"model": FLAGS.model, "weights": FLAGS.weights, "rows": rows, "goal": GOAL, "verdict": verdict,
               "reference_images": references.counts()}  # fmt: skip
    common.write_results(FLAGS.output_dir, "compression", payload, text, start)
    return 0


if __name__ == "__main__":
    app.run(main)
