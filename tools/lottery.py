"""The lottery-ticket loop without a recipe: train, prune a fraction of the surviving weights,
rewind, retrain, for several rounds, with a random-reinitialisation control per round.

  python tools/lottery.py --model=mobilenet_v2 --model_option=width_multiplier=0.35 --data=digits \
      --rounds=4 --prune_fraction=0.2 --epochs=4 [--output_dir=lottery_results]

Writes lottery.json, lottery.md and lottery.png (accuracy vs remaining weights, with the
random-control line) to --output_dir.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf.recipes import stage_types

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "mobilenet_v2", "Model registry name.")
flags.DEFINE_multi_string("model_option", ["width_multiplier=0.35"], "Registry build option key=value, repeatable.")
flags.DEFINE_string("data", "digits", "Data spec.")
flags.DEFINE_string("eval_split", "test", "Split the rounds are evaluated on.")
flags.DEFINE_integer("image_size", 32, "Input resolution (>= 32).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_integer("train_limit", None, "Only the first N training examples.")
# The recipe lottery stage's keys (epochs: per round).
stage_types.define_flags(stage_types.get("lottery").keys, ["rounds", "prune_fraction", "rewind_steps", "random_control",
                                                           "policy", "epochs", "learning_rate"])  # fmt: skip
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("output_dir", "lottery_results", "Where lottery.json / .md / .png go.")


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import tf_keras

    from nlighten_tf import data, models
    from nlighten_tf import io as atomic
    from nlighten_tf.errors import NlightenError
    from nlighten_tf.optimize import lottery, training
    from nlighten_tf.optimize.selection import LayerSelection
    from nlighten_tf.recipes import report
    from nlighten_tf.recipes.overrides import parse_key_values
    from nlighten_tf.recipes.runner import keras_verbosity
    from nlighten_tf.recipes.schema import check_model_options

    try:
        atomic.check_output_dir(FLAGS.output_dir, "--output_dir")
        options = parse_key_values(FLAGS.model_option, "--model_option")
        check_model_options(FLAGS.model, options, f"--model={FLAGS.model} --model_option")
        config = lottery.LotteryConfig(
            rounds=FLAGS.rounds, prune_fraction=FLAGS.prune_fraction, rewind_steps=FLAGS.rewind_steps,
            random_control=FLAGS.random_control, selection=LayerSelection(policy=FLAGS.policy),
        )  # fmt: skip
        train_config = training.TrainConfig(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate,
                                            verbose=0 if keras_verbosity() == 2 else 1)  # fmt: skip
        common = dict(image_size=FLAGS.image_size, batch_size=FLAGS.batch_size, model=FLAGS.model, cache=True)
        train, info = data.load(FLAGS.data, "train", seed=FLAGS.seed, limit=FLAGS.train_limit, **common)
        evaluation, _ = data.load(FLAGS.data, FLAGS.eval_split, **common)
        tf_keras.utils.set_random_seed(FLAGS.seed)
        model = models.build(FLAGS.model, input_shape=(FLAGS.image_size, FLAGS.image_size, 3),
                             num_classes=info.num_classes, **options)  # fmt: skip
    except (NlightenError, ValueError) as error:  # ValueError: the configs' argument checks
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2

    def on_round(entry) -> None:
        control = f", random control {100 * entry.control_accuracy:.2f}%" if entry.control_accuracy is not None else ""
        print(f"round {entry.round}: {100 * entry.remaining:.1f}% of weights remain, "
              f"accuracy {100 * entry.accuracy:.2f}%{control}", flush=True)  # fmt: skip

    try:
        rounds = lottery.lottery(model, train, evaluation, config, train_config, on_round=on_round)
    except NlightenError as error:  # training diverged
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    for kind, path in report.write_lottery(rounds, FLAGS.output_dir).items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    app.run(main)
