"""Structured channel pruning without a recipe: remove whole filters to a MAdds/parameter budget
(or per-stage / per-layer ratios), fine-tune, and save a smaller plain Keras model.

  python tools/channel_prune.py --model=mobilenet_v2 --model_option=width_multiplier=0.35 \
      --data=digits --image_size=32 --keep_madds=0.5 --criterion=l1 [--steps=2 --epochs_per_step=1] \
      [--keras_model=trained/model.h5] [--allocation=sensitivity] [--output=channel_pruned/model.h5]

Writes the pruned model (.h5), <output minus .h5>.json (budget, per-group channels kept, per-step
MAdds/params/accuracy) and, with --allocation=sensitivity, sensitivity.json/.md/.png beside it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf.optimize.channel_prune import ChannelPruneConfig
from nlighten_tf.recipes import stage_types

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mobilenet_v2", "Model registry name: the architecture built (without --keras_model) "
                    "and always the input preprocessing.")
flags.DEFINE_multi_string("model_option", ["width_multiplier=0.35"], "Registry build option key=value, repeatable.")
flags.DEFINE_string("keras_model", None, "A saved tf_keras model (.h5) to prune instead of a fresh --model build.")
flags.DEFINE_string("weights", None, "Weights for --model (e.g. imagenet).")
flags.DEFINE_string("data", "digits", "Data spec: calibration, fine-tuning and evaluation data.")
flags.DEFINE_string("eval_split", "test", "Split the result is evaluated on (the sensitivity scan reads training batches).")
flags.DEFINE_integer("image_size", 32, "Input resolution (>= 32) when building --model.")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("train_limit", None, "Only the first N training examples.")
flags.DEFINE_integer("eval_limit", None, "Only the first N evaluation examples.")
# The technique's keys, as the recipe channel_prune stage declares them (sensitivity_batches from
# ChannelPruneConfig: recipes do not offer it). Without a target, --keep_madds=0.5 is used.
stage_types.define_flags(
    [*stage_types.get("channel_prune").keys, *stage_types.config_keys(ChannelPruneConfig)],
    ["criterion", "keep_madds", "keep_params", "per_stage", "per_layer", "allocation", "exclude", "channel_multiple",
     "min_keep", "steps", "epochs_per_step", "final_epochs", "distill", "learning_rate", "calibration_batches",
     "bn_recalibration_batches", "sensitivity_batches"],
)  # fmt: skip
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("output", None, "Where to save the pruned model (default: channel_pruned/<model>.h5).")


def _fail(message: object) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def _ratios(items: list[str], flag: str) -> dict[str, float]:
    from nlighten_tf.recipes.overrides import parse_key_values

    return parse_key_values(items, flag)


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import tf_keras

    from nlighten_tf import data, models
    from nlighten_tf import io as atomic
    from nlighten_tf.errors import NlightenError
    from nlighten_tf.keras_io import save_model
    from nlighten_tf.optimize import channel_prune, training
    from nlighten_tf.optimize.distill import DistillConfig
    from nlighten_tf.recipes.overrides import model_from_flags
    from nlighten_tf.recipes.runner import keras_verbosity

    name = Path(FLAGS.keras_model).stem if FLAGS.keras_model else FLAGS.model
    output = Path(FLAGS.output or f"channel_pruned/{name}.h5")
    if FLAGS.keras_model and not Path(FLAGS.keras_model).is_file():
        return _fail(f"--keras_model {FLAGS.keras_model}: no such file")
    try:
        # Checked now: a bad output path found after fine-tuning loses the work.
        atomic.check_output_file(output, "--output")
        atomic.check_output_file(output.with_suffix(".json"), "--output (report file)")
        per_stage, per_layer = _ratios(FLAGS.per_stage, "--per_stage"), _ratios(FLAGS.per_layer, "--per_layer")
        no_target = FLAGS.keep_madds is None and FLAGS.keep_params is None and not per_stage and not per_layer
        config = channel_prune.ChannelPruneConfig(
            criterion=FLAGS.criterion, keep_madds=0.5 if no_target else FLAGS.keep_madds, keep_params=FLAGS.keep_params,
            per_stage=per_stage, per_layer=per_layer, allocation=FLAGS.allocation, exclude=FLAGS.exclude,
            channel_multiple=FLAGS.channel_multiple, min_keep=FLAGS.min_keep, steps=FLAGS.steps,
            epochs_per_step=FLAGS.epochs_per_step, final_epochs=FLAGS.final_epochs,
            distill=DistillConfig() if FLAGS.distill else None, calibration_batches=FLAGS.calibration_batches,
            bn_recalibration_batches=FLAGS.bn_recalibration_batches, sensitivity_batches=FLAGS.sensitivity_batches,
        )  # fmt: skip
        train_config = training.TrainConfig(learning_rate=FLAGS.learning_rate,
                                            verbose=0 if keras_verbosity() == 2 else 1)  # fmt: skip
        tf_keras.utils.set_random_seed(FLAGS.seed)
        model, image_size, options = model_from_flags(FLAGS.keras_model, FLAGS.model, FLAGS.image_size,
                                                      FLAGS.model_option)  # fmt: skip
        common = dict(image_size=image_size, batch_size=FLAGS.batch_size, model=FLAGS.model, cache=True)
        train, info = data.load(FLAGS.data, "train", seed=FLAGS.seed, limit=FLAGS.train_limit, **common)
        evaluation, _ = data.load(FLAGS.data, FLAGS.eval_split, limit=FLAGS.eval_limit, **common)
        if model is None:  # a zoo --model, built for the data's classes
            model = models.build(FLAGS.model, input_shape=(image_size, image_size, 3), num_classes=info.num_classes,
                                 weights=FLAGS.weights, **options)  # fmt: skip
        before = {"madds": models.count_madds(model), "params": models.count_params(model)}
        print(f"pruning {name}: {before['madds']:,} MAdds, {before['params']:,} parameters; criterion "
              f"{config.criterion}, allocation {config.allocation}, {config.steps} step(s)", flush=True)  # fmt: skip
        start = time.time()
        # The sensitivity scan decides what to cut: it reads training batches, never the split
        # whose accuracy is reported. Otherwise the eval split only shows progress per step.
        validation = None if config.allocation == "sensitivity" else evaluation
        result = channel_prune.channel_prune(model, config, train, validation, train_config, log=print)
    except (NlightenError, ValueError, RuntimeError) as error:  # data errors; bad flags/targets/layer names, unmet budget
        return _fail(error)
    results = training.evaluate(result.model, evaluation)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        save_model(result.model, output, qat=False)
    except OSError as error:  # e.g. the disk filled up meanwhile
        return _fail(f"--output {output}: cannot write the model: {error}")
    written = {}
    if result.sensitivity is not None:
        written = channel_prune.write_sensitivity(result.sensitivity, output.parent)
    report = {
        "source": FLAGS.keras_model or FLAGS.model, "data": FLAGS.data, "eval_split": FLAGS.eval_split, **results,
        **result.report, "history": result.history, "seconds": time.time() - start,
    }  # fmt: skip
    atomic.write_json(output.with_suffix(".json"), report)
    print(f"kept {100 * result.report['madds_ratio']:.1f}% of MAdds, {100 * result.report['params_ratio']:.1f}% of "
          f"parameters; {FLAGS.eval_split} accuracy {100 * results['accuracy']:.2f}%")  # fmt: skip
    for kind, path in {"model": output, "report": output.with_suffix(".json"), **written}.items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
