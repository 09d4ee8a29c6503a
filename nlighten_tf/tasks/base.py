"""`Task`: what a recipe run needs to know about the kind of model it optimises.

The runner, the stage executors and the report ask the task object instead of branching on the
model's kind: which data it trains on (and the targets `fit` needs), its losses, how a Keras
model and an exported ``.tflite`` are scored, how a file is exported per target, which split
calibrates, which stage types and export targets it supports, and which columns and summary words
the report shows. One subclass per registry task (`nlighten_tf.models.registry.ModelInfo.task`),
looked up with `nlighten_tf.tasks.for_model`. The model, training and export code stays in
`models/`, `optimize/`, `export/` and `bench/`: a task composes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nlighten_tf.errors import NlightenError

if TYPE_CHECKING:
    import tensorflow as tf
    import tf_keras

    from nlighten_tf.data import DatasetInfo
    from nlighten_tf.export.tflite import ExportResult


# A validated `nlighten_tf.recipes.schema.Recipe`. Not imported, not even for type checking: the
# recipes package sits above the tasks (schema, runner and stages ask them), never below.
Recipe = Any


class TaskError(NlightenError, ValueError):
    """A recipe asks a task for something it does not support (model, data, stage, target), or
    the model's registry task has no task object. The message is the whole line to show."""


class Task:
    """The interface; subclasses fill in the class attributes and the methods."""

    name: ClassVar[str]  # the registry's task name
    noun: ClassVar[str]  # what one of its models is called in messages ("detector")
    # Stage types and export targets a recipe may use (None: every one).
    stage_types: ClassVar[tuple[str, ...] | None] = None
    export_targets: ClassVar[tuple[str, ...] | None] = None
    export_targets_note: ClassVar[str] = ""  # why only those, for the error message
    # Metric key of a Keras model's score -> report column (percentages end in "_%").
    model_scores: ClassVar[dict[str, str]]
    headline_score: ClassVar[str]  # the model score that is always set for a scored model
    # The same for an exported file's entry.
    file_scores: ClassVar[dict[str, str]]
    score_name: ClassVar[str]  # what the scores are, for report headings ("accuracy")
    keras_scoring: ClassVar[str] = ""  # how the Keras model is scored, appended to the heading
    # `runner.check_inputs` opens each split with `data.pipeline.open_raw` before a run.
    checks_raw_splits: ClassVar[bool] = True
    # The benchmark stage measures files' accuracy on emulated devices (single-output files).
    scores_on_devices: ClassVar[bool] = True
    # The export target whose file the Edge TPU stage may reuse for the same model (None: it
    # exports its own file).
    edgetpu_reuses: ClassVar[str | None] = None

    # --- recipe checks --------------------------------------------------------------------

    def check_recipe(self, recipe: Recipe) -> None:
        """TaskError naming the recipe file and key if the recipe does not fit the task."""
        self.check_data(recipe)
        for stage in recipe.stages:
            if self.stage_types is not None and stage.type not in self.stage_types:
                raise TaskError(
                    f"{recipe.source}: {stage.label}: {stage.type} does not support {self.noun}s; "
                    f"{self.noun} recipes use {', '.join(self.stage_types)}"
                )
            if stage.type == "export" and self.export_targets is not None:
                bad = [t for t in stage.config.targets if t not in self.export_targets]
                if bad:
                    raise TaskError(
                        f"{recipe.source}: {stage.label}: key 'targets': {', '.join(bad)} not available for "
                        f"{self.noun}s; valid: {', '.join(self.export_targets)}{self.export_targets_note}"
                    )

    # The data the task's models train on: its kind and specs, for messages; what follows it.
    data_kind: ClassVar[str] = ""
    data_specs: ClassVar[str] = ""
    augment_refused: ClassVar[str] = ""  # why `data.augment` is refused ("": allowed)

    def accepts_data(self, spec: str) -> bool:
        """Whether the data spec holds the task's kind of labels."""
        raise NotImplementedError

    def check_data(self, recipe: Recipe) -> None:
        """TaskError if the recipe's data does not suit the task's models."""
        source, spec = recipe.source, recipe.data.spec
        if not self.accepts_data(spec):
            raise TaskError(
                f"{source}: data: key 'spec': {recipe.model.name} is a {self.noun}; use a {self.data_kind} data set "
                f"({self.data_specs}), got {spec!r}"
            )
        if self.augment_refused and recipe.data.augment is not None:
            raise TaskError(f"{source}: data: key 'augment': not available for {self.data_kind} data ({self.augment_refused})")

    # --- data and training ----------------------------------------------------------------

    def load(self, spec: str, split: str, **options: Any) -> tuple[tf.data.Dataset, DatasetInfo]:
        """Batches of a split and their info: `nlighten_tf.data.load` (options as there)."""
        from nlighten_tf import data

        return data.load(spec, split, **options)

    def training_data(self, train: tf.data.Dataset, info: DatasetInfo, recipe: Recipe) -> tf.data.Dataset:
        """The training batches `fit` gets, from what `nlighten_tf.data.load` gave."""
        return train

    def compile_options(self, num_classes: int) -> dict[str, Any] | None:
        """``model.compile`` arguments besides the optimizer (None: the classifier's)."""
        return None

    def calibration_split(self, recipe: Recipe) -> str:
        """The split post-training quantization calibrates on."""
        return "train"

    # --- scoring ----------------------------------------------------------------------------

    def evaluate_keras(self, model: tf_keras.Model, scored: tf.data.Dataset, recipe: Recipe) -> dict[str, Any]:
        """A Keras model's scores on the split stages are scored on (every metric key the
        stage metrics carry for the task, None where a key does not apply)."""
        raise NotImplementedError

    def evaluate_file(self, path: Path, scored: tf.data.Dataset, recipe: Recipe, runtime: str) -> dict[str, Any]:
        """An exported file's scores through the interpreter, plus ``examples`` and ``runtime``."""
        raise NotImplementedError

    def has_model_score(self, metrics: dict[str, Any]) -> bool:
        """Whether a stage's metrics hold a scored model."""
        return metrics.get(self.headline_score) is not None

    def model_score_text(self, metrics: dict[str, Any]) -> str:
        """A stage's Keras score for its one-line summary, e.g. "accuracy 91.20%"."""
        raise NotImplementedError

    def file_score_text(self, entry: dict[str, Any]) -> str:
        """An exported file's score for the one-line summary ("" when not measured)."""
        raise NotImplementedError

    # --- export -----------------------------------------------------------------------------

    def export_file(
        self, model: tf_keras.Model, path: Path, target: str, *, recipe: Recipe, labels: tuple[str, ...],
        scheme: str, calibration: Any, io_type: str | None, extra: dict[str, Any],
    ) -> ExportResult:  # fmt: skip
        """Writes `model` as `path` for export target `target` (with its metadata and sidecar)."""
        raise NotImplementedError
