"""Trains a model-zoo network on a data spec and saves it (.h5), without a recipe.

  python tools/train.py --model=efficientnet_lite0 --model_option=width_coefficient=0.5 \
      --data=digits --image_size=32 --epochs=3 [--output=trained/efficientnet_lite0.h5]

Prints the accuracy on --eval_split and writes <output minus .h5>.json with the metrics.
The saved model feeds tools/export.py --keras_model=... or a recipe's distill teacher.path.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf.optimize.training import STRATEGIES
from nlighten_tf.recipes import stage_types

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "efficientnet_lite0", "Model registry name.")
flags.DEFINE_multi_string("model_option", [], "Registry build option key=value (YAML value), repeatable.")
flags.DEFINE_string("weights", None, "Initial weights: imagenet or an .h5 weights file (default: random).")
flags.DEFINE_string("data", "digits", "Data spec: digits, fashion_mnist, tfds:NAME, folder:PATH.")
flags.DEFINE_string("train_split", "train", "Training split.")
flags.DEFINE_string("eval_split", "test", "Evaluation split.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_integer("image_size", 32, "Input resolution (>= 32).")
flags.DEFINE_integer("batch_size", 64, "Batch size.")
flags.DEFINE_string("augment", None, "Training augmentation: basic, strong, flip,crop,randaugment,mixup ...")
flags.DEFINE_integer("train_limit", None, "Only the first N training examples.")
flags.DEFINE_integer("eval_limit", None, "Only the first N evaluation examples.")
# How it trains: the recipe train stage's keys, with their defaults and docs.
stage_types.define_flags(stage_types.get("train").keys, ["epochs", "learning_rate", "optimizer", "lr_schedule",
                                                         "label_smoothing"])  # fmt: skip
flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "tf.distribute strategy.")
flags.DEFINE_integer("seed", 0, "Random seed (initialisation and shuffling).")
flags.DEFINE_string("output", None, "Where to save the model (default: trained/<model>.h5).")


def _fail(message: object) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    if FLAGS.strategy == "multi_worker":
        # Before TensorFlow runs any op: collective ops are configured only at start-up.
        from nlighten_tf.optimize import training

        training.get_strategy("multi_worker")
    import tf_keras

    from nlighten_tf import data, models
    from nlighten_tf import io as atomic
    from nlighten_tf.errors import NlightenError
    from nlighten_tf.keras_io import save_model
    from nlighten_tf.optimize import training
    from nlighten_tf.recipes.overrides import parse_key_values
    from nlighten_tf.recipes.runner import keras_verbosity
    from nlighten_tf.recipes.schema import check_model_options

    output = Path(FLAGS.output or f"trained/{FLAGS.model}.h5")
    try:
        # Checked now: a bad output path found after training loses the training.
        atomic.check_output_file(output, "--output")
        atomic.check_output_file(output.with_suffix(".json"), "--output (metrics file)")
        options = parse_key_values(FLAGS.model_option, "--model_option")
        check_model_options(FLAGS.model, options, f"--model={FLAGS.model} --model_option")
        config = stage_types.get("train").train_config(FLAGS, verbose=keras_verbosity())
        common = dict(image_size=FLAGS.image_size, batch_size=FLAGS.batch_size, model=FLAGS.model,
                      data_dir=FLAGS.data_dir, cache=True)  # fmt: skip
        train, info = data.load(FLAGS.data, FLAGS.train_split, augment=FLAGS.augment, seed=FLAGS.seed,
                                limit=FLAGS.train_limit, **common)  # fmt: skip
        evaluation, _ = data.load(FLAGS.data, FLAGS.eval_split, limit=FLAGS.eval_limit, **common)
        tf_keras.utils.set_random_seed(FLAGS.seed)
        model = models.build(
            FLAGS.model, input_shape=(FLAGS.image_size, FLAGS.image_size, 3), num_classes=info.num_classes,
            weights=FLAGS.weights, **options,
        )  # fmt: skip
    except (NlightenError, ValueError) as error:  # ValueError: unknown model/option, bad config
        return _fail(error)
    print(f"training {FLAGS.model} ({models.count_params(model):,} parameters) on {FLAGS.data} "
          f"({info.num_examples:,} examples, {info.num_classes} classes) for {FLAGS.epochs:g} epochs")  # fmt: skip
    if FLAGS.strategy != "default":
        strategy = training.get_strategy(FLAGS.strategy)
        print(f"strategy {FLAGS.strategy}: {strategy.num_replicas_in_sync} replicas in sync")
    start = time.time()
    try:
        model, history = training.fit(model, train, config, strategy=FLAGS.strategy)
    except NlightenError as error:  # training diverged
        return _fail(error)
    results = training.evaluate(model, evaluation)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, output, qat=False)
    except OSError as error:  # e.g. the disk filled up during training
        return _fail(f"--output {output}: cannot write the model: {error}")
    metrics = {
        "model": FLAGS.model, "options": options, "data": FLAGS.data, "eval_split": FLAGS.eval_split,
        "image_size": FLAGS.image_size, "epochs": FLAGS.epochs, **results, "params": models.count_params(model),
        "train_time_s": time.time() - start, "history": {k: [float(x) for x in v] for k, v in history.items()},
    }  # fmt: skip
    atomic.write_json(output.with_suffix(".json"), metrics)
    print(f"{FLAGS.eval_split} accuracy {100 * results['accuracy']:.2f}% (top-5 {100 * results['top5']:.2f}%)")
    print(f"wrote {output} and {output.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    app.run(main)
