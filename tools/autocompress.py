"""Auto-compression to a budget: per-group channel counts searched to fit a file size, a device
latency, a MAdds or an Edge TPU on-chip-memory budget (docs/optimize.md, "Auto-compression").

  python tools/autocompress.py --keras_model=trained/model.h5 --data=fashion_mnist --budget=latency_ms:0.5x \
      [--device=host|rpi-aarch64] [--epochs=1] [--output_dir=autocompressed]
  python tools/autocompress.py --keras_model=trained/model.h5 --budget=size_kb:0.35x --quantizer=litert --precision=search
  python tools/autocompress.py --model=mobilenet_v2 --weights=imagenet --data=tfds:imagenette --budget=madds:0.5x
  python tools/autocompress.py --keras_model=trained/model.h5 --budget=size_kb:0.5x --target=int8_sparse \
      [--method=netadapt|uniform|uniform_sparsity]   # per-kernel sparsity too (size budgets only)

Choices are made on --validation (a fraction carved from the end of the training split); the
--eval_split (test) accuracy is measured once, at the end. Writes DIR/result.json (budget,
achieved — measured on the final file or device —, met, validation and test accuracy, channels
kept per group; sparsity per kernel on a sparse target; with --precision=search each op's weight
precision), model.h5, model.tflite, report.md and choices.png. Ctrl-C stops at the next step and
writes nothing half-done (exit status 130). A size budget past what channels alone can reach:
add --target=int8_sparse (per-kernel sparsity) or --quantizer=litert --precision=search (int4
weights per op); docs/optimize.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf import interrupts
from nlighten_tf.autocompress.search import AutocompressConfig
from nlighten_tf.recipes import stage_types

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Model registry name: the architecture built (without "
                    "--keras_model) and always the input preprocessing.")
flags.DEFINE_multi_string("model_option", [], "Registry build option key=value, repeatable.")
flags.DEFINE_string("keras_model", None, "A saved, trained tf_keras model (.h5) to compress instead of a --model build.")
flags.DEFINE_string("weights", None, "Weights for --model (e.g. imagenet).")
flags.DEFINE_string("data", "fashion_mnist", "Data spec: fine-tuning, validation and test data.")
flags.DEFINE_float("validation", 0.05, "Fraction of the training split carved off (its end) to make every choice on.")
flags.DEFINE_string("eval_split", "test", "Split the final accuracy is reported on, once.")
flags.DEFINE_integer("image_size", 32, "Input resolution when building --model (a --keras_model's own otherwise).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("train_limit", None, "Only the first N training examples (after the validation carve).")
flags.DEFINE_integer("eval_limit", None, "Only the first N evaluation examples.")
# The technique's keys and the final fine-tune's, as the recipe autocompress stage declares them.
stage_types.define_flags(
    stage_types.get("autocompress").keys,
    ["budget", "device", "target", "method", "criterion", "channel_multiple", "min_keep", "step", "score_batches",
     "distill", "tolerance", "latency_runs", "threads", "calibration_samples", "bn_recalibration_batches",
     "recalibrate_proposals", "freeze_batch_norm", "quantizer", "precision", "precision_share", "precision_examples",
     "epochs", "learning_rate"],
)  # fmt: skip
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("output_dir", "autocompressed", "Where result.json, the model, the .tflite and the report go.")


def _fail(message: object) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    try:
        with interrupts.deferred():  # Ctrl-C at the next step or batch, never inside TensorFlow's tracing
            return _autocompress(argv)
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written", file=sys.stderr, flush=True)
        return 130


def _autocompress(argv: list[str]) -> int:
    if len(argv) > 1:
        return _fail(f"unexpected arguments {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    import tf_keras

    from nlighten_tf import data, models
    from nlighten_tf import io as atomic
    from nlighten_tf.autocompress import search as autocompress
    from nlighten_tf.errors import NlightenError
    from nlighten_tf.optimize import training
    from nlighten_tf.recipes.overrides import model_from_flags
    from nlighten_tf.recipes.runner import keras_verbosity

    if FLAGS.keras_model and not Path(FLAGS.keras_model).is_file():
        return _fail(f"--keras_model {FLAGS.keras_model}: no such file")
    if not 0.0 < FLAGS.validation < 1.0:
        return _fail(f"--validation must be a fraction in (0, 1), got {FLAGS.validation}")
    output = Path(FLAGS.output_dir)
    try:
        atomic.check_output_dir(output, "--output_dir")  # now: a bad path found after the search loses it
        config = AutocompressConfig(
            budget=FLAGS.budget, device=FLAGS.device, target=FLAGS.target, method=FLAGS.method,
            criterion=FLAGS.criterion, channel_multiple=FLAGS.channel_multiple, min_keep=FLAGS.min_keep,
            step=FLAGS.step, score_batches=FLAGS.score_batches, distill=FLAGS.distill, tolerance=FLAGS.tolerance,
            latency_runs=FLAGS.latency_runs, threads=FLAGS.threads, calibration_samples=FLAGS.calibration_samples,
            bn_recalibration_batches=FLAGS.bn_recalibration_batches, recalibrate_proposals=FLAGS.recalibrate_proposals,
            freeze_batch_norm=FLAGS.freeze_batch_norm, quantizer=FLAGS.quantizer, precision=FLAGS.precision,
            precision_share=FLAGS.precision_share, precision_examples=FLAGS.precision_examples,
        )  # fmt: skip
        train_config = training.TrainConfig(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
                                            verbose=0 if keras_verbosity() == 2 else 1)  # fmt: skip
        if config.device != "host":
            from nlighten_tf.bench import devices

            ready, why = devices.status(config.device)
            if not ready:
                return _fail(f"--device {config.device}: {why}")
        tf_keras.utils.set_random_seed(FLAGS.seed)
        model, image_size, options = model_from_flags(FLAGS.keras_model, FLAGS.model, FLAGS.image_size,
                                                      FLAGS.model_option)  # fmt: skip
        kept = round(100 * (1 - FLAGS.validation))
        common = dict(image_size=image_size, batch_size=FLAGS.batch_size, model=FLAGS.model, cache=True)
        train, info = data.load(FLAGS.data, f"train[:{kept}%]", seed=FLAGS.seed, limit=FLAGS.train_limit, **common)
        validation, _ = data.load(FLAGS.data, f"train[{kept}%:]", shuffle=False, **common)
        evaluation, _ = data.load(FLAGS.data, FLAGS.eval_split, limit=FLAGS.eval_limit, **common)
        if model is None:  # a zoo --model, built for the data's classes
            model = models.build(FLAGS.model, input_shape=(image_size, image_size, 3), num_classes=info.num_classes,
                                 weights=FLAGS.weights, **options)  # fmt: skip
        start = time.time()
        result = autocompress.autocompress(model, config, train, validation, train_config,
                                           log=lambda m: print(m, flush=True))  # fmt: skip
        test = training.evaluate(result.model, evaluation)
    except (NlightenError, ValueError, RuntimeError) as error:  # bad flags/budget/data, unreachable budget
        return _fail(error)
    extra = {
        "source": FLAGS.keras_model or FLAGS.model, "data": FLAGS.data, "validation_split": f"train[{kept}%:]",
        "eval_split": FLAGS.eval_split, "test_accuracy": test["accuracy"], "test": test, "wall_seconds": time.time() - start,
    }  # fmt: skip
    try:
        written = autocompress.write_outputs(result, output, extra)
    except OSError as error:  # e.g. the disk filled up meanwhile
        return _fail(f"--output_dir {output}: cannot write the results: {error}")
    report = result.report
    print(f"budget {config.budget}: {'met' if report['met'] else 'NOT met'}; achieved {report['achieved']['value']:,.4g} "
          f"{report['unit']} ({100 * report['achieved']['ratio']:.1f}% of the original); {FLAGS.eval_split} accuracy "
          f"{100 * test['accuracy']:.2f}%")  # fmt: skip
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0 if report["met"] else 1


if __name__ == "__main__":
    app.run(main)
