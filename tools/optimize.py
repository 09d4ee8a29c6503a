"""Runs a collaborative-optimization recipe stage by stage (see recipes/README.md).

  python tools/optimize.py --recipe=recipes/quickstart.yaml [--output_dir=runs] [--resume] \
      [--override=data.spec=digits --override=stages.prune.epochs=1] [--strategy=mirrored] [--dry_run]

Each stage writes its model, metrics.json and TensorBoard logs under <output_dir>/<name>/NN-stage/
(atomically), and the run's report.md is regenerated after every stage. --resume skips the
completed stages, and reproduces what an uninterrupted run computes. Ctrl-C leaves no
half-written stage (exit status 130). A second start on a run directory in use is refused
(exit status 2) with the running process's PID and start time (docs/recipes.md).
"""

from __future__ import annotations

import sys
import time

from absl import app, flags, logging

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)
from nlighten_tf import interrupts
from nlighten_tf.errors import NlightenError
from nlighten_tf.recipes import loader

FLAGS = flags.FLAGS
flags.DEFINE_string("recipe", "recipes/quickstart.yaml", "The recipe YAML file.")
flags.DEFINE_string("output_dir", "runs", "Runs go to <output_dir>/<recipe name>/.")
flags.DEFINE_bool("resume", False, "Continue an interrupted run: skip its completed stages.")
flags.DEFINE_multi_string(
    "override", [], "key=value changes to the recipe (repeatable): data.spec=digits, stages.2.prune.epochs=1, "
    "stages.prune.target_sparsity=0.5, model.options.width_coefficient=0.5."
)  # fmt: skip
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"], "tf.distribute strategy for training.")
flags.DEFINE_bool("dry_run", False, "Validate, print the resolved plan and exit.")


def _fail(message: str) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    try:
        # Ctrl-C and SIGTERM (a scheduler stopping the job) take effect at the next batch or
        # stage boundary, never inside TensorFlow's tracing (nlighten_tf/interrupts.py).
        with interrupts.deferred():
            return _optimize(argv)
    except KeyboardInterrupt:  # outside a stage, or a second Ctrl-C
        print("\ninterrupted; rerun with --resume to continue", file=sys.stderr, flush=True)
        return 130


def _optimize(argv: list[str]) -> int:
    if len(argv) > 1:
        return _fail(f"unexpected arguments {' '.join(argv[1:])}; use --recipe=PATH and --override=key=value")
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel chatter hides our output
    if FLAGS.strategy == "multi_worker":
        # Before TensorFlow runs any op: collective ops are configured only at start-up.
        from nlighten_tf.optimize import training

        training.get_strategy("multi_worker")
    from nlighten_tf import io as atomic

    try:
        recipe = loader.load(FLAGS.recipe, FLAGS.override)
        atomic.check_output_dir(FLAGS.output_dir, "--output_dir")
    except NlightenError as error:
        return _fail(error)
    from nlighten_tf.recipes import runner

    try:
        # Data files, folders, split names and weights files exist: checked before a dry run's
        # plan and before a run loads anything, not minutes into it.
        runner.check_inputs(recipe)
    except NlightenError as error:
        return _fail(error)
    if FLAGS.dry_run:
        print(runner.describe_run(recipe, FLAGS.output_dir))
        return 0
    start = time.time()
    try:
        result = runner.run(recipe, FLAGS.output_dir, resume=FLAGS.resume, strategy=FLAGS.strategy)
    except runner.RunInterrupted as error:
        print(f"\n{error}", file=sys.stderr, flush=True)
        return 130
    except (NlightenError, FileNotFoundError) as error:
        return _fail(error)
    print()
    print(result.report.read_text())
    print(f"finished in {time.time() - start:.0f} s: ran {len(result.ran)} stage(s), skipped {len(result.skipped)}")
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    app.run(main)
