"""One function per stage type: (stage, context, work directory) -> Outcome.

Each calls one function of `optimize/`, `export/` or `bench/` with the model and data of the
previous stage and writes its extra files (exports, plots, teacher) into the work directory;
the runner saves the model, evaluates it and writes metrics.json.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from nlighten_tf import data, models, tasks
from nlighten_tf.keras_utils import copy_model
from nlighten_tf.optimize import training, weight_stats
from nlighten_tf.recipes import schema
from nlighten_tf.recipes.schema import Recipe, Stage


@dataclasses.dataclass
class Context:
    """What a stage gets from the run: the data, the current model and earlier exports."""

    recipe: Recipe
    run_dir: Path
    train: tf.data.Dataset
    eval: tf.data.Dataset
    class_names: tuple[str, ...]
    scheme: str  # the model's input normalisation (nlighten_tf.data scheme)
    task: tasks.Task  # the model's task: its data targets, losses, scoring and export
    strategy: Any = None
    verbose: int = 2  # Keras: 1 progress bars (TTY), 2 one line per epoch
    log: Callable[[str], None] = print
    model: tf_keras.Model | None = None
    model_stage: str | None = None  # directory holding `model` (None: built from the recipe's model spec)
    qat_scheme: str | None = None  # set once a qat stage has run
    exports: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    scored_split: str = ""  # the split `eval` holds: validation, or eval_split when there is none

    def compile_options(self) -> dict[str, Any] | None:
        """``model.compile`` arguments besides the optimizer (None: the classifier's)."""
        return self.task.compile_options(len(self.class_names))

    @property
    def image_size(self) -> int:
        return self.recipe.data.image_size

    def callbacks(self, workdir: Path) -> list[tf_keras.callbacks.Callback]:
        """Per-epoch history as CSV, and TensorBoard scalars when TensorBoard is installed
        (TensorFlow 2.21 no longer depends on it: `pip install tensorboard`)."""
        logs = workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        callbacks = [tf_keras.callbacks.CSVLogger(str(logs / "history.csv"), append=True)]
        if tensorboard_available():
            # Scalars only: graphs and profiles of every stage would dwarf the models.
            callbacks.append(tf_keras.callbacks.TensorBoard(log_dir=str(logs), write_graph=False, profile_batch=0))
        return callbacks

    def prepare(self):
        """Under a distribution strategy the model must be created in its scope: copy it there."""
        default = self.strategy in (None, "default")
        return None if default else copy_model


def tensorboard_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


@dataclasses.dataclass
class Outcome:
    model: tf_keras.Model | None = None  # the model the next stage gets (None: unchanged)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # technique report etc.
    qat_scheme: str | None = None
    exports: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    summary: str = ""  # extra words for the stage's one-line summary


def build_model(spec: schema.ModelSpec, image_size: int, num_classes: int) -> tf_keras.Model:
    if spec.options.get("include_top") is False:
        # The backbone without its classifier + a new head (the transfer-learning set-up);
        # the backbone's dropout_rate, unused without its own head, sets the new head's.
        from nlighten_tf.optimize import transfer

        options = {k: v for k, v in spec.options.items() if k != "include_top"}
        if options.get("dropout_rate") is not None:
            options["dropout"] = options.pop("dropout_rate")
        return transfer.build_transfer_model(
            spec.name, num_classes, (image_size, image_size, 3), weights=spec.weights, **options
        )
    return models.build(
        spec.name, input_shape=(image_size, image_size, 3), num_classes=num_classes, weights=spec.weights, **spec.options
    )


def last_values(history: dict[str, list[float]]) -> dict[str, float]:
    return {key: float(values[-1]) for key, values in history.items() if values}


# --- Training stages ----------------------------------------------------------------------


def run_train(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    config = stage.train_config(ctx.verbose)
    model, history = training.fit(
        ctx.model, ctx.train, config, callbacks=ctx.callbacks(workdir), strategy=ctx.strategy, prepare=ctx.prepare(),
        compile_options=ctx.compile_options(),
    )
    return Outcome(model, {"history": last_values(history)})


def _teacher(stage: Stage, ctx: Context, workdir: Path) -> tuple[tf_keras.Model, dict[str, Any]]:
    spec = stage.config.teacher
    if spec.path:
        from nlighten_tf.keras_io import load_keras

        teacher = load_keras(Path(spec.path))
        return teacher, {"source": spec.path}
    teacher = build_model(schema.ModelSpec(spec.name, spec.options, spec.weights), ctx.image_size, len(ctx.class_names))
    info: dict[str, Any] = {"source": spec.name, "weights": spec.weights}
    if spec.epochs > 0:
        ctx.log(f"  training the teacher {spec.name} for {spec.epochs:g} epochs")
        config = training.TrainConfig(epochs=spec.epochs, learning_rate=spec.learning_rate, verbose=ctx.verbose)
        teacher, _ = training.fit(teacher, ctx.train, config, strategy=ctx.strategy, prepare=ctx.prepare())
        from nlighten_tf.keras_io import save_model

        save_model(teacher, workdir / "teacher.h5", qat=False)
        info["file"] = "teacher.h5"
    info["accuracy"] = training.evaluate(teacher, ctx.eval)["accuracy"]
    ctx.log(f"  teacher accuracy {100 * info['accuracy']:.2f}%")
    return teacher, info


def run_transfer(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import transfer

    result = transfer.transfer(
        ctx.model, ctx.train, stage.technique(ctx.verbose), strategy=ctx.strategy,
        callbacks=ctx.callbacks(workdir), prepare=ctx.prepare(),
    )  # fmt: skip
    metrics = {"unfrozen_blocks": result.unfrozen, **{f"history_{k}": last_values(v) for k, v in result.history.items()}}
    unfrozen = ", ".join(result.unfrozen) if result.unfrozen else "none"
    return Outcome(result.model, metrics, summary=f"head, then blocks {unfrozen}" if result.unfrozen else "head only")


def run_distill(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import distill

    teacher, teacher_info = _teacher(stage, ctx, workdir)
    if stage.config.synthetic_images:
        from nlighten_tf.optimize import data_free

        result = data_free.distill(
            ctx.model, teacher, stage.technique(), stage.train_config(ctx.verbose),
            count=stage.config.synthetic_images, scheme=ctx.scheme, callbacks=ctx.callbacks(workdir),
            strategy=ctx.strategy, prepare=ctx.prepare(), log=ctx.log,
        )  # fmt: skip
        teacher_info["synthetic_images"] = stage.config.synthetic_images
        return Outcome(result.model, {"teacher": teacher_info, "history": last_values(result.history)})
    result = distill.distill(
        ctx.model, teacher, ctx.train, stage.technique(), stage.train_config(ctx.verbose),
        callbacks=ctx.callbacks(workdir), strategy=ctx.strategy, prepare=ctx.prepare(),
    )  # fmt: skip
    return Outcome(result.model, {"teacher": teacher_info, "history": last_values(result.history)})


def run_channel_prune(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import channel_prune

    # Calibration, Taylor scores and the sensitivity scan read training batches: choosing what to
    # cut on the evaluation split would leak it into the reported accuracy.
    result = channel_prune.channel_prune(
        ctx.model, stage.technique(), ctx.train, None,
        train_config=stage.train_config(ctx.verbose), strategy=ctx.strategy,
        callbacks=ctx.callbacks(workdir), log=ctx.log,
    )  # fmt: skip
    metrics: dict[str, Any] = {"report": result.report, "steps": result.history}
    if result.sensitivity is not None:
        written = channel_prune.write_sensitivity(result.sensitivity, workdir)
        metrics["files"] = {f"sensitivity_{kind}": Path(path).name for kind, path in written.items()}
    report = result.report
    return Outcome(result.model, metrics, summary=(
        f"{100 * report['madds_ratio']:.1f}% of MAdds and {100 * report['params_ratio']:.1f}% of parameters kept"
    ))  # fmt: skip


def run_autocompress(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.autocompress import search as autocompress

    # Choices on the validation split; without one, on training batches, never on eval_split.
    validation = ctx.train if ctx.scored_split == ctx.recipe.data.eval_split else ctx.eval
    result = autocompress.autocompress(
        ctx.model, stage.technique(), ctx.train, validation, stage.train_config(ctx.verbose),
        log=ctx.log, callbacks=ctx.callbacks(workdir),
    )  # fmt: skip
    written = autocompress.write_outputs(result, workdir, save_keras=False)  # the runner saves the model
    report = result.report
    metrics = {"report": report, "files": {kind: Path(path).name for kind, path in written.items()}}
    return Outcome(result.model, metrics, summary=(
        f"budget {report['budget']['text']} {'met' if report['met'] else 'NOT met'}: "
        f"{100 * report['achieved']['ratio']:.1f}% of the original {report['unit']}"
    ))  # fmt: skip


def run_prune(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import prune

    result = prune.prune(
        ctx.model, ctx.train, stage.technique(), stage.train_config(ctx.verbose),
        strategy=ctx.strategy, callbacks=ctx.callbacks(workdir), compile_options=ctx.compile_options(),
    )  # fmt: skip
    return Outcome(result.model, {"report": result.report, "history": last_values(result.history)})


def run_cluster(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import cluster

    result = cluster.cluster(
        ctx.model, ctx.train, stage.technique(), stage.train_config(ctx.verbose),
        strategy=ctx.strategy, callbacks=ctx.callbacks(workdir), compile_options=ctx.compile_options(),
    )  # fmt: skip
    return Outcome(result.model, {"report": result.report, "history": last_values(result.history)})


def run_qat(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import quantize

    result = quantize.qat(
        ctx.model, ctx.train, stage.train_config(ctx.verbose), scheme=stage.config.scheme,
        strategy=ctx.strategy, callbacks=ctx.callbacks(workdir), compile_options=ctx.compile_options(),
    )  # fmt: skip
    return Outcome(result.model, {"history": last_values(result.history)}, qat_scheme=result.scheme,
                   summary=f"scheme {result.scheme}")  # fmt: skip


def run_lottery(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import lottery
    from nlighten_tf.recipes import report

    def on_round(entry: lottery.LotteryRound) -> None:
        control = f", random control {100 * entry.control_accuracy:.2f}%" if entry.control_accuracy is not None else ""
        ctx.log(f"  round {entry.round}: {100 * entry.remaining:.1f}% weights remain, accuracy {100 * entry.accuracy:.2f}%{control}")

    rounds = lottery.lottery(
        ctx.model, ctx.train, ctx.eval, stage.technique(), stage.train_config(ctx.verbose),
        strategy=ctx.strategy, on_round=on_round, callbacks=ctx.callbacks(workdir),
    )  # fmt: skip
    report.write_lottery(rounds, workdir)
    chosen = rounds[-1] if stage.config.keep == "last" else max(rounds, key=lambda r: r.accuracy)
    return Outcome(chosen.model, {"rounds": [r.as_dict() for r in rounds], "kept_round": chosen.round},
                   summary=f"kept round {chosen.round}")  # fmt: skip


def run_lowrank(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.optimize import lowrank

    result = lowrank.factorize(ctx.model, stage.technique())
    metrics: dict[str, Any] = {
        "report": result.report, "params_before": result.params_before, "params_after": result.params_after,
    }  # fmt: skip
    model = result.model
    if stage.config.epochs > 0:
        model, history = training.fit(
            model, ctx.train, stage.train_config(ctx.verbose), callbacks=ctx.callbacks(workdir),
            strategy=ctx.strategy, prepare=ctx.prepare(),
        )  # fmt: skip
        metrics["history"] = last_values(history)
    return Outcome(model, metrics, summary=f"{len(result.report)} layers factorised")


# --- Export and benchmark -----------------------------------------------------------------


def file_weight_stats(path: Path) -> dict[str, Any]:
    """What the file itself stores: zeros among the prunable weights (CONV_2D / FULLY_CONNECTED
    kernels, as TFMOT prunes them), the most distinct values in one output channel, and where
    the bytes go (weights, sparse indices, quantization parameters, ...)."""
    from nlighten_tf.bench import tflite_inspection

    report = tflite_inspection.inspect_file(path)
    prunable = [
        w for w in report.weights if any(c.split(" ")[0] in ("CONV_2D", "FULLY_CONNECTED") for c in w.consumers)
    ]
    total = sum(w.size for w in prunable)
    zeros = sum(w.sparsity * w.size for w in prunable)
    per_channel = [w.unique_per_channel for w in prunable if w.unique_per_channel is not None]
    return {
        "prunable_zero_fraction": zeros / total if total else 0.0,
        "max_values_per_channel": max(per_channel) if per_channel else None,
        "sparse_tensors": report.sparse_weights,
        "size_breakdown": report.size_breakdown,
    }


def _calibration(ctx: Context, samples: int, source: str = "data"):
    from nlighten_tf.export import tflite

    if source != "data":  # synthetic:bn, from the current model (data/synthetic.py)
        return tflite.calibration_data(source, samples, ctx.image_size, preprocessing=ctx.scheme, keras_model=ctx.model)
    return tflite.calibration_data(
        ctx.recipe.data.spec, samples, ctx.image_size, preprocessing=ctx.scheme, data_dir=ctx.recipe.data.data_dir,
        split=ctx.task.calibration_split(ctx.recipe),
    )  # fmt: skip


def _file_entry(ctx: Context, stage: Stage, target_name: str, path: Path, notes: list[str]) -> dict[str, Any]:
    """What every exported file's report entry holds: names, sizes, what the file stores, and
    whether an Android app can load it with MediaPipe Tasks (input/output types, metadata)."""
    from nlighten_tf.bench import clients, suite

    raw = path.read_bytes()
    return {
        "name": f"{stage.dirname}/{target_name}", "target": target_name, "file": f"{stage.dirname}/{path.name}",
        "source_stage": ctx.model_stage, "size_bytes": len(raw), "gzip_bytes": suite.gzip_size(raw),
        "notes": notes, **file_weight_stats(path), "mediapipe": clients.mediapipe(raw).as_dict(),
    }  # fmt: skip


def export_one(
    ctx: Context, stage: Stage, workdir: Path, target_name: str, *, calibration, io_type: str | None,
    evaluate: bool, runtime: str, quantizer: str = "auto", mixed: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """Exports the current model to one target in `workdir` (as its task exports it); the entry
    the report and the benchmark stage read (sizes, what the file stores, its score through the
    interpreter)."""
    import inspect

    from nlighten_tf.export import litert_backend, targets

    recipe = ctx.recipe
    path = workdir / f"{target_name}.tflite"
    backend = {}
    if litert_backend.resolve(quantizer, targets.get_target(target_name)) == "litert":
        # Only tasks whose export_file takes the backend (classification) can use LiteRT Quantizer.
        if "quantizer" not in inspect.signature(ctx.task.export_file).parameters:
            raise schema.RecipeError(f"stage {stage.dirname}: {ctx.task.name} models export through the TF converter only "
                             f"(target {target_name}, quantizer {quantizer})")  # fmt: skip
        backend = {"quantizer": "litert", "mixed": mixed}
    result = ctx.task.export_file(
        ctx.model, path, target_name, recipe=recipe, labels=ctx.class_names, scheme=ctx.scheme,
        calibration=calibration, io_type=io_type,
        extra={"recipe": recipe.name, "stage": stage.dirname, "source_stage": ctx.model_stage}, **backend,
    )  # fmt: skip
    entry = _file_entry(ctx, stage, target_name, path, result.notes)
    if evaluate:
        entry.update(ctx.task.evaluate_file(path, ctx.eval, recipe, runtime))
    score = ctx.task.file_score_text(entry)
    score = f", {score} (interpreter)" if score else ""
    ctx.log(
        f"  {target_name}: {entry['size_bytes']:,} bytes (gzip {entry['gzip_bytes']:,}), "
        f"{100 * entry['prunable_zero_fraction']:.1f}% of prunable weights zero{score}"
    )
    return entry


def run_export(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.export import targets
    from nlighten_tf.recipes import stage_types

    config = stage.config
    calibration = None
    # Also for QAT models: their learnt ranges win, but TF 2.21's converter still refuses a
    # full-integer conversion without a representative dataset for some QAT graphs (PCQAT).
    if any(targets.get_target(t).needs_calibration for t in config.targets):
        calibration = _calibration(ctx, config.calibration_samples, config.calibration)
    exports = []
    for name in config.targets:
        target = targets.get_target(name)
        # io_type overrides int8 I/O (e.g. uint8 for Coral); a *_float_io target keeps float I/O.
        io_type = config.io_type if target.quantization == "full" and target.io_type != "float32" else None
        exports.append(export_one(ctx, stage, workdir, name, calibration=calibration, io_type=io_type,
                                  evaluate=config.evaluate, runtime=config.runtime, quantizer=config.quantizer,
                                  mixed=stage_types.mixed_config(config)))  # fmt: skip
    return Outcome(metrics={"exports": exports}, exports=exports, summary=", ".join(config.targets))


def run_edgetpu(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf import edgetpu

    config = stage.config
    # Where the task's Edge TPU file is another target's file exactly (detectors: the int8 one),
    # an export of the same model is reused.
    reused = ctx.task.edgetpu_reuses
    same = [e for e in ctx.exports if reused and e.get("target") == reused and e.get("source_stage") == ctx.model_stage]
    if same:
        entry = _reuse_export(ctx, stage, workdir, same[-1], "edgetpu")
    else:
        entry = export_one(
            ctx, stage, workdir, "edgetpu", calibration=_calibration(ctx, config.calibration_samples),
            io_type=config.io_type, evaluate=config.evaluate, runtime=config.runtime,
        )  # fmt: skip
    result = edgetpu.run(
        workdir / "edgetpu.tflite", workdir, num_segments=config.num_segments,
        min_runtime_version=config.min_runtime_version, timeout=config.timeout, analysis_only=not config.compile,
    )  # fmt: skip
    # `workdir` is renamed when the stage completes: name files by their final place in the run.
    result = _relocated(result, os.fspath(workdir), stage.dirname)
    ctx.log(f"  Edge TPU: {result['verdict']}")
    ctx.log(f"  compiled: {'yes' if result['compiled'] else 'no'} ({result['reason']})")
    entry["edgetpu_verdict"] = result["verdict"]
    return Outcome(metrics={"exports": [entry], "edgetpu": result}, exports=[entry],
                   summary="compiled" if result["compiled"] else "analysed, not compiled")  # fmt: skip


def _reuse_export(ctx: Context, stage: Stage, workdir: Path, earlier: dict[str, Any], target_name: str) -> dict[str, Any]:
    """An earlier export's file (and sidecar) copied as `target_name`, with its measurements."""
    import shutil

    source = ctx.run_dir / earlier["file"]
    path = workdir / f"{target_name}.tflite"
    shutil.copyfile(source, path)
    if source.with_suffix(".json").exists():
        shutil.copyfile(source.with_suffix(".json"), path.with_suffix(".json"))
    ctx.log(f"  {target_name}: the same file as {earlier['name']} (copied)")
    return {**earlier, "name": f"{stage.dirname}/{target_name}", "target": target_name,
            "file": f"{stage.dirname}/{path.name}", "notes": [*earlier.get("notes", []), f"same file as {earlier['name']}"]}  # fmt: skip


def _relocated(value: Any, old: str, new: str) -> Any:
    """`value` (JSON-like) with every path under directory `old` moved under `new`."""
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old + os.sep) else value
    if isinstance(value, list):
        return [_relocated(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _relocated(v, old, new) for k, v in value.items()}
    return value


BENCH_ROW_KEYS = ("name", "device", "threads", "size_bytes", "gzip_bytes", "init_ms", "min_ms", "median_ms", "p90_ms",
                  "speedup_vs_first", "peak_rss_mb", "top1", "top5", "runtime", "xnnpack", "fallback")  # fmt: skip


def run_benchmark(stage: Stage, ctx: Context, workdir: Path) -> Outcome:
    from nlighten_tf.bench import suite

    config = stage.config
    files = [ctx.run_dir / e["file"] for e in ctx.exports]
    # On an emulated device the files' accuracy is measured there (and on the host paths, on the
    # same examples) if the task's files can be scored so (detectors' are timed only).
    emulated = any(d != "host" for d in config.devices) and ctx.task.scores_on_devices
    limit = min(config.device_limit, ctx.recipe.data.eval_limit or config.device_limit)
    result = suite.run(
        [os.fspath(f) for f in files], threads=config.threads, runs=config.runs, warmup=config.warmup,
        runtime=config.runtime, xnnpack=config.xnnpack, data=ctx.recipe.data.spec if emulated else None,
        split=ctx.recipe.data.eval_split, limit=limit, rss=config.rss, devices=config.devices,
        device_runs=config.device_runs, paths=emulated,
    )  # fmt: skip
    # The export stages measured accuracy through the interpreter already: reuse it for the
    # table and the accuracy-vs-size plot instead of a second pass over the evaluation split.
    by_file = {os.fspath(f): e for f, e in zip(files, ctx.exports, strict=True)}
    for row in result["rows"]:
        export = by_file.get(row["model"], {})
        if row.get("device", "host") == "host":
            row.update(top1=export.get("top1"), top5=export.get("top5"))
        row["export"] = export.get("name")
    written = suite.write(result, workdir)
    rows = [{**{k: row.get(k) for k in BENCH_ROW_KEYS}, "export": row["export"]} for row in result["rows"]]
    return Outcome(metrics={
        "rows": rows, "settings": result["settings"], "fallbacks": result["fallbacks"],
        "paths": [{**p, "export": by_file.get(p["model"], {}).get("name")} for p in result["paths"]],
        "notes": result["notes"],
        "files": {kind: Path(p).name for kind, p in written.items()},
    }, summary=f"{len(files)} files")  # fmt: skip


# --- Measuring a Keras model --------------------------------------------------------------


def model_metrics(model: tf_keras.Model, ctx: Context) -> dict[str, Any]:
    """Accuracy on the split stages are scored on (validation) and what the kernels carry
    (sparsity, clusters)."""
    from nlighten_tf.keras_utils import unwrap

    quality = ctx.task.evaluate_keras(model, ctx.eval, ctx.recipe)
    quality["scored_on"] = ctx.scored_split
    prunable = {
        unwrap(layer).name for layer in model.layers
        if not isinstance(unwrap(layer), tf_keras.layers.DepthwiseConv2D)
    }  # fmt: skip
    everything = weight_stats.sparsity_report(model)
    kernels = weight_stats.kernels(model, prunable)
    unique = [int(np.unique(v).size) for v in kernels.values() if v.size >= weight_stats.CLUSTER_CHECK_MIN_SIZE]
    zeros = sum(int(np.count_nonzero(v == 0)) for v in kernels.values())
    size = sum(int(v.size) for v in kernels.values())
    clustered: bool | None = weight_stats.is_clustered(model)
    if any("Quantize" in type(layer).__name__ for layer in model.layers):
        # Inside QAT wrappers the float kernels are not what gets exported (PCQAT trains the
        # centroids): sparsity holds, value counts do not. The export stage measures the file.
        unique, clustered = [], None
    return {
        **quality,
        "global_sparsity": everything["global_sparsity"], "prunable_sparsity": zeros / size if size else 0.0,
        "max_unique_values": max(unique) if unique else None, "clustered": clustered,
        "params": models.count_params(model),
    }  # fmt: skip


def describe(stage: Stage) -> str:
    """The stage's key settings, for its first log line."""
    config = stage.config
    keys = stage.declaration.describe
    parts = []
    for key in keys:
        value = getattr(config, key)
        if value is None:
            continue
        parts.append(f"{key}={','.join(map(str, value)) if isinstance(value, list) else f'{value:g}' if isinstance(value, float) else value}")
    return " ".join(parts)


AUTO_VALIDATION_FRACTION = 0.1  # validation: auto carves this much of a plain train_split


def splits(recipe: Recipe) -> tuple[str, str]:
    """(training split, split every stage figure and choice is made on) after `data.validation`:
    the second is the validation split, or `eval_split` when there is none."""
    spec = recipe.data
    value = spec.validation
    if isinstance(value, str) and value.lower() == "none":
        return spec.train_split, spec.eval_split
    if isinstance(value, str) and value.lower() != "auto":
        return spec.train_split, value
    if value == "auto":
        if _has_split(recipe, "validation"):
            return spec.train_split, "validation"
        if not schema.is_plain_split(spec.train_split):  # already sliced: nothing to carve safely
            return spec.train_split, spec.eval_split
        value = AUTO_VALIDATION_FRACTION
    kept = round(100 * (1 - float(value)))
    return f"{spec.train_split}[:{kept}%]", f"{spec.train_split}[{kept}%:]"


def _has_split(recipe: Recipe, name: str) -> bool:
    """Whether the data source has a split of that name (not merely an alias of another)."""
    try:
        _, info = tasks.for_model(recipe.model.name).load(
            recipe.data.spec, name, image_size=recipe.data.image_size, batch_size=1, limit=1, model=recipe.model.name,
            data_dir=recipe.data.data_dir, cache=False,
        )  # fmt: skip
    except (data.DataError, ValueError):
        return False
    return info.split in ("validation", "val")


def data_for(recipe: Recipe) -> tuple[tf.data.Dataset, tf.data.Dataset, data.DatasetInfo, str]:
    """(train, the split stages are scored on, train info, scheme) for the recipe's data and model.
    Stages are scored on the validation split (`splits`); only exports are measured on eval_split."""
    spec = recipe.data
    train_split, scored_split = splits(recipe)
    common = dict(image_size=spec.image_size, batch_size=spec.batch_size, model=recipe.model.name,
                  data_dir=spec.data_dir, cache=spec.cache)  # fmt: skip
    task = tasks.for_model(recipe.model.name)
    train, info = task.load(spec.spec, train_split, augment=spec.augment, seed=recipe.seed,
                            limit=spec.train_limit, **common)  # fmt: skip
    evaluation, eval_info = task.load(spec.spec, scored_split, limit=spec.eval_limit, **common)
    train = task.training_data(train, info, recipe)
    if eval_info.num_classes != info.num_classes:
        raise data.DataError(
            f"{spec.spec}: split {scored_split!r} has {eval_info.num_classes} classes but {train_split!r} "
            f"has {info.num_classes}"
        )
    return train, evaluation, info, info.preprocessing or data.resolve_scheme(model=recipe.model.name)
