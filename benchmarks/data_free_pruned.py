"""Recovering a pruned ImageNet EfficientNet-Lite0 without its data: magnitude pruning of every
Conv2D (not depthwise) and Dense kernel, one-shot (no fine-tuning) or gradual (TFMOT
polynomial schedule) while distilling from the dense model on `synthetic:bn` images only
(`optimize.data_free.prune`), then int8 calibrated on the same synthetic images. Figures: top-1
agreement with the dense fp32 file and logit SNR on the project's real reference images
(`data.reference_images`), host LiteRT (XNNPACK).

  python benchmarks/data_free_pruned.py [--sparsities=0.5,0.75] [--synthetic_images=32] [--steps=150] \
      [--epochs=20] [--output_dir=benchmarks/results]

The synthetic images come from the cache benchmarks/data_free.py fills with the same settings.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import data, fidelity, models  # noqa: E402
from nlighten_tf.data import reference_images, synthetic  # noqa: E402
from nlighten_tf.data.pipeline import representative_arrays  # noqa: E402
from nlighten_tf.export import tflite  # noqa: E402
from nlighten_tf.keras_utils import copy_model  # noqa: E402
from nlighten_tf.optimize import data_free, prune, training  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Zoo model.")
flags.DEFINE_string("weights", "imagenet", "Weights id (empty: random initialisation, for smoke tests).")
flags.DEFINE_integer("input_size", 224, "Input resolution.")
flags.DEFINE_list("sparsities", ["0.5", "0.75"], "Target fractions of zeros per kernel.")
flags.DEFINE_integer("synthetic_images", 32, "Synthetic images (distillation and int8 calibration).")
flags.DEFINE_integer("steps", 150, "Synthesis steps per batch.")
flags.DEFINE_float("epochs", 20.0, "Distillation epochs over the synthetic images (the sparsity ramps over 75%).")
flags.DEFINE_float("learning_rate", 1e-4, "Distillation learning rate.")
flags.DEFINE_integer("per_set", 200, "Upscaled digits and Fashion-MNIST reference images (besides the photo crops).")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where data_free_pruned.json / .md go.")


def main(argv: list[str]) -> int:
    logging.set_verbosity(logging.WARNING)
    del argv
    start = time.time()
    scheme = data.resolve_scheme(model=FLAGS.model)
    dense = models.build(FLAGS.model, input_shape=(FLAGS.input_size, FLAGS.input_size, 3), weights=FLAGS.weights or None)
    size = int(dense.inputs[0].shape[1])
    references = reference_images.load(per_set=FLAGS.per_set)
    inputs = references.preprocessed(size, scheme)
    config = synthetic.SynthesisConfig(steps=FLAGS.steps, learning_rate=0.05)
    images = synthetic.synthesize(dense, FLAGS.synthetic_images, scheme, config).images
    calibration = representative_arrays(images)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.tflite"
        tflite.export(dense, fp32, "fp32", sidecar=False)
        reference = fidelity.tflite_outputs(fp32, inputs)

        def measure(model, label: str, sparsity: float, seconds: float | None) -> None:
            path = Path(tmp) / "int8.tflite"
            tflite.export(model, path, "int8", representative_dataset=calibration, sidecar=False)
            float_outputs = model.predict(inputs, batch_size=32, verbose=0)
            result = fidelity.compare(reference, fidelity.tflite_outputs(path, inputs))
            rows.append({
                "model": label, "target sparsity": sparsity,
                "float agreement": fidelity.compare(reference, float_outputs)["top1_agreement"],
                "int8 agreement": result["top1_agreement"], "int8 SNR dB": result["snr_db"],
                "training s": seconds,
            })  # fmt: skip
            print(f"  {label}: int8 agreement {result['top1_agreement']:.3f}", flush=True)

        measure(dense, "dense (int8, synthetic calibration)", 0.0, None)
        for sparsity in (float(s) for s in FLAGS.sparsities):
            selection = prune.PruneConfig(target_sparsity=sparsity)
            one_shot = copy_model(dense)
            names = prune.selected_names(one_shot, selection)
            common.prune(one_shot, sparsity, select=lambda layer, names=names: layer.name in names)
            measure(one_shot, f"one-shot magnitude {sparsity:.0%}, no fine-tuning", sparsity, None)
            print(f"gradual pruning to {sparsity:.0%} with data-free distillation ...", flush=True)
            started = time.time()
            recovered = data_free.prune(
                dense, prune.PruneConfig(target_sparsity=sparsity, frequency=2),
                training.TrainConfig(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, verbose=2), images,
            )  # fmt: skip
            measure(recovered, f"gradual {sparsity:.0%} + distillation on synthetic images", sparsity,
                    round(time.time() - started))  # fmt: skip
    text = "\n".join([
        f"{FLAGS.model} weights={FLAGS.weights}: agreement with the dense fp32 file on {len(inputs)} reference images "
        f"({', '.join(f'{k}: {v}' for k, v in references.counts().items())}), host LiteRT (XNNPACK). No real image "
        f"is used for training or calibration: {FLAGS.synthetic_images} synthetic:bn images ({FLAGS.steps} steps), "
        f"{FLAGS.epochs:g} distillation epochs at learning rate {FLAGS.learning_rate:g}; every Conv2D (not "
        "depthwise) and Dense kernel pruned; 2 shared CPU cores.", "",
        markdown_table(rows), "",
    ])  # fmt: skip
    payload = {"model": FLAGS.model, "weights": FLAGS.weights, "rows": rows, "reference_images": references.counts(),
               "flags": {k: FLAGS[k].value for k in ("sparsities", "synthetic_images", "steps", "epochs",
                                                    "learning_rate")}}  # fmt: skip
    common.write_results(FLAGS.output_dir, "data_free_pruned", payload, text, start)
    return 0


if __name__ == "__main__":
    app.run(main)
