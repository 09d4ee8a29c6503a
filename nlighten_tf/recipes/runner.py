"""Runs a validated recipe stage by stage in `<output_dir>/<name>/`, resumably.

Layout of a run directory::

    runs/<name>/resolved_recipe.yaml      the recipe as run (defaults and overrides filled in)
    runs/<name>/01-train/metrics.json     + model.h5, logs/ (TensorBoard)
    runs/<name>/02-prune/...
    runs/<name>/05-export/int8_sparse.tflite (+ .json sidecar)
    runs/<name>/report.md, summary.json, accuracy_vs_size.png

A stage works in `.NN-type.partial/` and is renamed to `NN-type/` only once its model, files
and metrics.json are written: a directory without the dot is complete by construction, and a
crash or Ctrl-C leaves at most a `.partial` directory, removed when the run starts again.

One process at a time: a run holds an exclusive lock (flock) on `<run dir>/.lock`, which names
its PID and start time, from before it touches anything until it ends. A second start on the
same directory is refused with those; the kernel drops the lock when its process dies, so a
crashed run never blocks the next one.

A stage's inputs depend only on the recipe and the stages before it, never on what this
process ran earlier: each stage reseeds every generator (seed + stage number) and rebuilds
the data pipelines, so the shuffle order does not carry on from the previous stages' epochs.
A resumed run therefore computes what an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlighten_tf import interrupts
from nlighten_tf import io as atomic
from nlighten_tf.errors import NlightenError
from nlighten_tf.keras_io import load_keras, save_model
from nlighten_tf.recipes import schema
from nlighten_tf.recipes.schema import Recipe, Stage

if TYPE_CHECKING:
    from nlighten_tf.tasks import Task

MODEL_FILE = "model.h5"
METRICS_FILE = "metrics.json"
RESOLVED_FILE = "resolved_recipe.yaml"
LOCK_FILE = ".lock"


class RunError(NlightenError, ValueError):
    """The run directory does not fit the request (existing run without --resume, changed recipe)."""


class RunLocked(RunError):
    """Another process is running in the same run directory."""


class RunInterrupted(Exception):
    """Ctrl-C / SIGTERM during a stage; nothing of that stage is marked complete."""

    def __init__(self, stage: Stage, run_dir: Path):
        super().__init__(
            f"interrupted during stage {stage.index} ({stage.type}); nothing of it was kept. "
            f"Rerun with --resume to continue from stage {stage.index} ({run_dir})"
        )
        self.stage = stage


@dataclasses.dataclass
class RunResult:
    run_dir: Path
    report: Path
    metrics: list[dict[str, Any]]
    ran: list[str]  # stage directories run now
    skipped: list[str]  # completed earlier (--resume)


def keras_verbosity() -> int:
    """Progress bars on a terminal; one line per epoch in logs and pipes."""
    return 1 if sys.stdout.isatty() else 2


def completed_dirs(run_dir: Path) -> list[str]:
    if not run_dir.is_dir():
        return []
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name[:2].isdigit() and (p / METRICS_FILE).exists())


def read_metrics(run_dir: Path, dirname: str) -> dict[str, Any]:
    import json

    return json.loads((run_dir / dirname / METRICS_FILE).read_text())


def changed_keys(old: Any, new: Any, prefix: str) -> list[str]:
    """``prefix.key: old -> new`` for every leaf that differs (lists of stages numbered from 1,
    as the run directories), e.g. ``stages.4.prune.target_sparsity: 0.9 -> 0.8``."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes = []
        for key in [*old, *(k for k in new if k not in old)]:
            changes += changed_keys(old.get(key, "(absent)"), new.get(key, "(absent)"), f"{prefix}.{key}")
        return changes
    if prefix == "stages" and isinstance(old, list) and isinstance(new, list):
        changes = []
        for number in range(1, max(len(old), len(new)) + 1):
            before = old[number - 1] if number <= len(old) else "(absent)"
            after = new[number - 1] if number <= len(new) else "(absent)"
            changes += changed_keys(before, after, f"{prefix}.{number}")
        return changes
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def _changes_text(changes: list[str], limit: int = 5) -> str:
    more = f" (and {len(changes) - limit} more)" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Holds an exclusive flock on `<run_dir>/.lock` (PID and start time written in it) for the
    duration; RunLocked if another process holds it. The kernel releases the lock when the
    holder exits however it exits, so a stale file from a killed run is simply taken over."""
    path = run_dir / LOCK_FILE
    try:
        # Opened without truncation: the holder's PID must stay readable until we own the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as error:
        raise RunError(f"{run_dir}: cannot create the run's lock file {path}: {error.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise RunLocked(
                f"{run_dir} is in use by a run in progress ({holder}); wait for it to end, stop it, or choose "
                "another --output_dir or name (--override name=...)"
            ) from None
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_resumable(recipe: Recipe, run_dir: Path, done: list[str], resume: bool) -> None:
    expected = [s.dirname for s in recipe.stages]
    if done and not resume:
        raise RunError(
            f"{run_dir} already holds a run with completed stages ({', '.join(done)}): pass --resume to continue "
            "it, or choose another --output_dir or name (--override name=...)"
        )
    for position, name in enumerate(done):
        if position >= len(expected) or expected[position] != name:
            raise RunError(
                f"{run_dir}: completed stage {name} does not match the recipe (stage {position + 1} is now "
                f"{expected[position] if position < len(expected) else 'absent'}); use another --output_dir or name"
            )
    resolved = run_dir / RESOLVED_FILE
    if not done or not resolved.exists():
        return
    try:
        before = schema.parse_yaml(resolved.read_text(encoding="utf-8"), str(resolved)) or {}
    except (OSError, UnicodeDecodeError) as error:
        raise RunError(f"{resolved}: cannot read the run's resolved recipe: {error}") from None
    if not isinstance(before, dict):
        raise RunError(f"{resolved}: not a recipe mapping; use another --output_dir or name")
    now = recipe.as_dict()
    for key in ("seed", "model", "data"):
        changes = changed_keys(before.get(key, "(absent)"), now[key], key)
        if changes:
            raise RunError(
                f"{run_dir}: --resume: the recipe's {key!r} changed since the run started ({_changes_text(changes)}); "
                "completed stages used the old value: use another --output_dir or name"
            )
    old_stages = before.get("stages") or []
    for position in range(len(done)):
        old = old_stages[position] if position < len(old_stages) else "(absent)"
        changes = changed_keys(old, now["stages"][position], f"stages.{position + 1}")
        if changes:
            stage = recipe.stages[position]
            raise RunError(
                f"{run_dir}: --resume: {stage.label} completed with different settings ({_changes_text(changes)}); "
                "use another --output_dir or name"
            )


def run(
    recipe: Recipe,
    output_dir: str | os.PathLike[str] = "runs",
    resume: bool = False,
    strategy: str | None = None,
    log: Callable[[str], None] = print,
    verbose: int | None = None,
) -> RunResult:
    """Executes the recipe's stages in order, skipping those complete (with `resume`).

    Raises RunLocked when another process runs in the same directory, RunError when the
    directory does not fit the request or a stage's training diverged (NaN/inf loss)."""
    run_dir = Path(output_dir) / recipe.name
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunError(f"--output_dir {output_dir}: cannot create the run directory {run_dir}: {error.strerror}") from None
    # The lock comes before anything is deleted or written: a second start must not remove
    # the working stage of a run in progress.
    with run_lock(run_dir):
        return _run_locked(recipe, run_dir, resume, strategy, log, verbose)


def _run_locked(recipe: Recipe, run_dir: Path, resume: bool, strategy: str | None, log: Callable[[str], None],
                verbose: int | None) -> RunResult:  # fmt: skip
    for stale in run_dir.glob(".*.partial"):  # a crash or SIGKILL mid-stage
        shutil.rmtree(stale, ignore_errors=True)
    done = completed_dirs(run_dir)
    _check_resumable(recipe, run_dir, done, resume)
    atomic.write_text(run_dir / RESOLVED_FILE, schema.dump_yaml(recipe.as_dict()))

    import tf_keras

    from nlighten_tf import tasks
    from nlighten_tf.optimize.training import TrainingDiverged
    from nlighten_tf.recipes import report, stages

    train, evaluation, info, scheme = stages.data_for(recipe)
    train_split, scored_split = stages.splits(recipe)
    log(f"run {run_dir}: {recipe.model.name} on {recipe.data.spec} ({info.num_examples:,} training examples, "
        f"{info.num_classes} classes, {recipe.data.image_size}px), {len(recipe.stages)} stages")  # fmt: skip
    if scored_split == recipe.data.eval_split:
        log(f"note: no validation split: stage figures and choices (keep: best) use eval_split {scored_split!r}")
    else:
        log(f"data: training on {train_split!r}; stages scored and chosen on {scored_split!r}; "
            f"exported files measured on {recipe.data.eval_split!r}")  # fmt: skip
    ctx = stages.Context(
        recipe=recipe, run_dir=run_dir, train=train, eval=evaluation, class_names=info.class_names, scheme=scheme,
        strategy=strategy, verbose=keras_verbosity() if verbose is None else verbose, log=log,
        scored_split=scored_split, task=tasks.for_model(recipe.model.name),
    )  # fmt: skip
    metrics: list[dict[str, Any]] = [read_metrics(run_dir, name) for name in done]
    _restore(ctx, recipe, metrics, len(info.class_names))
    total = len(recipe.stages)
    ran, skipped = [], []
    for stage in recipe.stages:
        prefix = f"[{stage.index:02d}/{total:02d} {stage.type}]"
        if stage.dirname in done:
            skipped.append(stage.dirname)
            log(f"{prefix} complete, skipped ({one_line(metrics[stage.index - 1], ctx.task)})")
            continue
        if ctx.model is None:
            tf_keras.utils.set_random_seed(recipe.seed)
            ctx.model = stages.build_model(recipe.model, recipe.data.image_size, len(info.class_names))
        log(f"{prefix} {stages.describe(stage)}")
        try:
            stage_metrics = _run_stage(stage, ctx)
        except KeyboardInterrupt:
            raise RunInterrupted(stage, run_dir) from None
        except TrainingDiverged as error:  # a NaN model is not a result: the stage stays incomplete
            raise RunError(f"{run_dir}: {stage.label}: {error}") from None
        metrics.append(stage_metrics)
        ran.append(stage.dirname)
        report.write(run_dir, recipe.as_dict(), metrics, total, ctx.task)
        log(f"{prefix} done: {one_line(stage_metrics, ctx.task)}")
    path = report.write(run_dir, recipe.as_dict(), metrics, total, ctx.task)
    return RunResult(run_dir, path, metrics, ran, skipped)


def _run_stage(stage: Stage, ctx) -> dict[str, Any]:
    import tf_keras

    from nlighten_tf.recipes import stages

    interrupts.raise_if_requested()  # a Ctrl-C during the previous stage's last steps or the data loading
    final = ctx.run_dir / stage.dirname
    partial = ctx.run_dir / f".{stage.dirname}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    start = time.time()
    try:
        # Per-stage seed and fresh pipelines: a resumed run draws what an uninterrupted one
        # would have. The pipelines must be rebuilt, not just reseeded: a dataset keeps its own
        # shuffle generator, which every epoch of the earlier stages advanced.
        tf_keras.utils.set_random_seed(ctx.recipe.seed + stage.index)
        ctx.train, ctx.eval, _, _ = stages.data_for(ctx.recipe)
        outcome = stage.declaration.run(stage, ctx, partial)
        metrics: dict[str, Any] = {"stage": stage.dirname, "index": stage.index, "type": stage.type,
                                   "config": dataclasses.asdict(stage.config)}  # fmt: skip
        qat_scheme = outcome.qat_scheme or ctx.qat_scheme
        if outcome.model is not None:
            metrics.update(stages.model_metrics(outcome.model, ctx))
            if outcome.qat_scheme and ctx.model is not None:
                # The QAT wrappers' quantizer variables are not model parameters.
                from nlighten_tf import models

                metrics["params"] = models.count_params(ctx.model)
            save_model(outcome.model, partial / MODEL_FILE, qat=qat_scheme is not None)
            metrics.update(model_file=MODEL_FILE, model_bytes=(partial / MODEL_FILE).stat().st_size)
            if outcome.qat_scheme:
                # Reloading a QAT model needs its float base and scheme (see load_stage_model).
                metrics.update(qat_scheme=outcome.qat_scheme, base_stage=ctx.model_stage)
            elif qat_scheme:
                metrics.update(qat_scheme=qat_scheme, base_stage=ctx.model_stage)
        metrics.update(outcome.metrics)
        metrics["summary"] = outcome.summary
        metrics["wall_time_s"] = time.time() - start
        atomic.write_json(partial / METRICS_FILE, metrics)
        os.rename(partial, final)  # the commit point: the stage is complete
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if outcome.model is not None:
        ctx.model, ctx.model_stage = outcome.model, stage.dirname
    if outcome.qat_scheme:
        ctx.qat_scheme = outcome.qat_scheme
    ctx.exports.extend(outcome.exports)
    return metrics


def _restore(ctx, recipe: Recipe, metrics: list[dict[str, Any]], num_classes: int) -> None:
    """Model, QAT scheme and exports as the completed stages left them."""
    for m in metrics:
        ctx.exports.extend(m.get("exports", []))
        if m.get("qat_scheme"):
            ctx.qat_scheme = m["qat_scheme"]
    with_model = [m for m in metrics if m.get("model_file")]
    if with_model:
        last = with_model[-1]
        ctx.model = load_stage_model(ctx.run_dir, last, recipe, num_classes)
        ctx.model_stage = last["stage"]


def load_stage_model(run_dir: Path, metrics: dict[str, Any], recipe: Recipe, num_classes: int):
    """The model a completed stage saved. QAT models are rebuilt: the float model of the stage
    before QAT, wrapped with the same scheme, then the saved weights. (Keras cannot rebuild the
    cluster-preserving quantizers of a PCQAT model from the .h5 config alone.)"""
    path = run_dir / metrics["stage"] / metrics["model_file"]
    if not metrics.get("qat_scheme"):
        return load_keras(path)
    from nlighten_tf.optimize import quantize
    from nlighten_tf.recipes import stages

    base_stage = metrics.get("base_stage")
    if base_stage:
        base = load_stage_model(run_dir, read_metrics(run_dir, base_stage), recipe, num_classes)
    else:
        base = stages.build_model(recipe.model, recipe.data.image_size, num_classes)
    with quantize.quantize_scope():
        model = quantize.quantize_model(base, quantize.make_scheme(metrics["qat_scheme"]))
    model.load_weights(path)
    return model


def one_line(m: dict[str, Any], task: Task) -> str:
    """score (as the model's task states it), sparsity, clusters, size, time of a completed stage."""
    parts = []
    if task.has_model_score(m):
        parts.append(task.model_score_text(m))
        parts.append(f"sparsity {100 * m.get('prunable_sparsity', 0):.1f}%")
        if m.get("clustered"):
            parts.append(f"<= {m['max_unique_values']} values/kernel")
        parts.append(f"params {m['params']:,}")
        parts.append(f"{MODEL_FILE} {m['model_bytes'] / 1e6:.2f} MB")
    for e in m.get("exports", []):
        score = task.file_score_text(e)
        score = f" {score}" if score else ""
        parts.append(f"{e['target']} {e['size_bytes'] / 1e3:.1f} KB (gzip {e['gzip_bytes'] / 1e3:.1f} KB){score}")
    for r in m.get("rows", []):
        parts.append(f"{r['name']} {r['median_ms']:.2f} ms ({r['threads']} thr)")
    if m.get("summary"):
        parts.append(m["summary"])
    parts.append(f"{m['wall_time_s']:.0f} s")
    return ", ".join(parts)


def check_inputs(recipe: Recipe) -> None:
    """What a run reads before it trains, checked without training (for --dry_run and before a
    run): the data source (folder, files, TFDS preparation) and its split names, and the
    model's and a distillation teacher's weights files. RecipeError naming the key otherwise."""
    from nlighten_tf import data, tasks
    from nlighten_tf.data.pipeline import open_raw
    from nlighten_tf.models import weights as weights_lib

    source = recipe.source
    spec = recipe.data
    if tasks.for_model(recipe.model.name).checks_raw_splits:
        checks = [("train_split", spec.train_split), ("eval_split", spec.eval_split)]
        if isinstance(spec.validation, str) and spec.validation.lower() not in ("auto", "none"):
            checks.insert(1, ("validation", spec.validation))  # a carved fraction is part of train_split
        for key, split in checks:
            try:
                open_raw(spec.spec, split, data_dir=spec.data_dir, limit=1)
            except data.DataError as error:
                raise schema.RecipeError(
                    f"{source}: data (spec {spec.spec!r}, {key} {split!r}): {' '.join(str(error).split())}"
                ) from None
    models = [("model", recipe.model.name, recipe.model.weights)]
    for stage in recipe.stages:
        if stage.type == "distill" and stage.config.teacher.name and stage.config.teacher.weights:
            teacher = stage.config.teacher
            models.append((f"{stage.label}: key 'teacher'", teacher.name, teacher.weights))
    for where, name, weights in models:
        if weights is None:
            continue
        try:
            weights_lib.resolve(name, weights)
        except weights_lib.WeightsError as error:
            raise schema.RecipeError(f"{source}: {where}: key 'weights': {' '.join(str(error).split())}") from None


def describe_run(recipe: Recipe, output_dir: str | os.PathLike[str] = "runs") -> str:
    """What `--dry_run` prints: the resolved recipe and where each stage will write (done or to run)."""
    run_dir = Path(output_dir) / recipe.name
    done = set(completed_dirs(run_dir))
    lines = [
        f"recipe {recipe.source}: run '{recipe.name}' -> {run_dir}/",
        "",
        schema.dump_yaml(recipe.as_dict()).rstrip(),
        "",
        "stages:",
    ]
    for stage in recipe.stages:
        state = "complete" if stage.dirname in done else "to run"
        from nlighten_tf.recipes.stages import describe

        lines.append(f"  {run_dir}/{stage.dirname}/  [{state}]  {describe(stage)}")
    return "\n".join(lines)
