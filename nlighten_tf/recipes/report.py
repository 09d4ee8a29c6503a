"""The run report: `report.md` + `summary.json` (+ `accuracy_vs_size.png`) from the completed
stages' metrics, regenerated after every stage; and the lottery loop's JSON/markdown/plot.

Tables and plots come from `nlighten_tf.render`; this module only chooses the rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlighten_tf import io as atomic
from nlighten_tf.render import markdown_table, plot_accuracy_vs_size

if TYPE_CHECKING:
    from nlighten_tf.tasks import Task

# The tables' columns around the scores, which the model's task names (`Task.model_scores`,
# `Task.file_scores`: top1_%/top5_% for classifiers, map_%/map_50_%/map_75_% for detectors).
STAGE_COLUMNS_AFTER_SCORES = ("sparsity_%", "clusters", "params", "model_bytes", "wall_time_s")
EXPORT_COLUMNS_AFTER_SCORES = (
    "size_bytes", "gzip_bytes", "smaller_than_first", "gzip_smaller_than_first", "zeros_%", "values_per_channel",
    "median_ms",
)  # fmt: skip


def stage_columns(task: Task) -> tuple[str, ...]:
    return ("stage", *task.model_scores.values(), *STAGE_COLUMNS_AFTER_SCORES)


def export_columns(task: Task) -> tuple[str, ...]:
    return ("name", "source_stage", *task.file_scores.values(), *EXPORT_COLUMNS_AFTER_SCORES)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _table_rows(rows: Sequence[dict[str, Any]], renames: dict[str, str]) -> list[dict[str, Any]]:
    """Fractions as percentages for people (summary.json keeps the fractions)."""
    out = []
    for row in rows:
        shown = dict(row)
        for source, target in renames.items():
            value = row.get(source)
            shown[target] = _percent(value) if target.endswith("_%") else value
        out.append(shown)
    return out


def _scored_on(metrics: Sequence[dict[str, Any]], eval_split: str) -> str:
    """Where the stage figures come from, e.g. "the validation split `train[90%:]`"."""
    splits = {m["scored_on"] for m in metrics if m.get("scored_on")}
    if len(splits) != 1:
        return "the evaluation split"
    split = splits.pop()
    if split == eval_split:
        return f"the evaluation split `{split}`, no validation split"
    return f"the validation split `{split}`"


def stage_rows(metrics: Sequence[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """One row per completed stage that holds a model (its scores on the split stages are scored on)."""
    rows = []
    for m in metrics:
        if not task.has_model_score(m):
            continue
        rows.append({
            "stage": m["stage"], "accuracy": m.get("accuracy"), "top5": m.get("top5"),
            **{k: m.get(k) for k in task.model_scores},
            "prunable_sparsity": m.get("prunable_sparsity"),
            "clusters": m.get("max_unique_values") if m.get("clustered") else None,
            "params": m.get("params"), "model_bytes": m.get("model_bytes"), "wall_time_s": m.get("wall_time_s"),
        })  # fmt: skip
    return rows


def export_rows(metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per exported `.tflite`; ratios against the first export (the baseline file),
    latency from the last benchmark stage (first thread count)."""
    exports = [dict(e) for m in metrics for e in m.get("exports", [])]
    latency: dict[str, float] = {}
    for m in metrics:
        rows = m.get("rows") or []
        first_threads = rows[0]["threads"] if rows else None
        latency.update({r["export"]: r["median_ms"] for r in rows
                        if r.get("export") and r["threads"] == first_threads and r.get("device", "host") == "host"})  # fmt: skip
    if not exports:
        return []
    first = exports[0]
    for e in exports:
        e["smaller_than_first"] = first["size_bytes"] / e["size_bytes"]
        e["gzip_smaller_than_first"] = first["gzip_bytes"] / e["gzip_bytes"]
        e["median_ms"] = latency.get(e["name"])
    return exports


def android_lines(exports: Sequence[dict[str, Any]]) -> list[str]:
    """The report section saying which exported files an Android app can load with MediaPipe
    Tasks (each file's input/output types and metadata, `nlighten_tf.bench.clients`)."""
    checked = [e for e in exports if e.get("mediapipe")]
    if not checked:
        return []
    usable = [e for e in checked if e["mediapipe"]["loads"]]
    lines = [
        "", "## Android apps (MediaPipe Tasks)", "",
        "Checked on each file: MediaPipe Tasks (`mediapipe` 1.2.2, `ImageClassifier` / `ObjectDetector`) takes "
        "uint8 or float32 input and output and needs the normalisation metadata for float32 input. "
        + (f"Files an app can use: {', '.join('`' + e['file'] + '`' for e in usable)}." if usable
           else "**No file here loads in MediaPipe Tasks**: export an `int8_float_io` or `int8_sparse_float_io` target."),
        "",
    ]  # fmt: skip
    for e in checked:
        verdict = e["mediapipe"]
        lines.append(f"- `{e['file']}`: {'yes' if verdict['loads'] else 'no'} ({verdict['task']}): {verdict['reason']}")
    if usable:
        lines += [
            "", "MediaPipe needs an RGB image (a grayscale one fails) and squashes the whole image to the input "
            "size without a centre crop: crop and resize in the app as the evaluation here does (docs/deployment.md, "
            "\"Android apps: MediaPipe Tasks\").",
        ]  # fmt: skip
    return lines


def summary(recipe_dict: dict[str, Any], metrics: Sequence[dict[str, Any]], complete: bool, task: Task) -> dict[str, Any]:
    return {
        "name": recipe_dict["name"], "complete": complete, "recipe": recipe_dict,
        "stages": stage_rows(metrics, task), "exports": export_rows(metrics),
        "stage_metrics": [{k: v for k, v in m.items() if k not in ("report", "rows")} for m in metrics],
    }  # fmt: skip


def markdown(
    recipe_dict: dict[str, Any], metrics: Sequence[dict[str, Any]], total: int, plots: dict[str, str], task: Task
) -> str:
    done = len(metrics)
    lines = [
        f"# Run `{recipe_dict['name']}`",
        "",
        (recipe_dict.get("description") or "").strip(),
        "",
        f"Model `{recipe_dict['model']['name']}` on `{recipe_dict['data']['spec']}` at {recipe_dict['data']['image_size']}px; "
        f"{done} of {total} stages complete. The recipe as run: `resolved_recipe.yaml`.",
        "",
        f"## Stages (Keras model on {_scored_on(metrics, recipe_dict['data']['eval_split'])}{task.keras_scoring})",
        "",
        markdown_table(
            _table_rows(stage_rows(metrics, task), {"prunable_sparsity": "sparsity_%", **task.model_scores}),
            stage_columns(task),
        ) or "(no model stage complete yet)",
    ]
    exports = export_rows(metrics)
    if exports:
        lines += [
            "",
            f"## Exported `.tflite` files ({task.score_name} through the interpreter)",
            "",
            "Sizes in bytes; `smaller_than_first` = size of the first export / this size; "
            "`zeros_%` = zeros among the CONV_2D/FULLY_CONNECTED weights stored in the file; "
            "`values_per_channel` = most distinct values in one output channel of those weights; "
            "`median_ms` from the benchmark stage (one invoke, first thread count).",
            "",
            markdown_table(_table_rows(exports, {
                "prunable_zero_fraction": "zeros_%", "max_values_per_channel": "values_per_channel", **task.file_scores,
            }), export_columns(task)),  # fmt: skip
        ]
    lines += device_path_lines(metrics)
    lines += android_lines(exports)
    edgetpu = [m for m in metrics if m.get("edgetpu")]
    if edgetpu:
        lines += ["", "## Edge TPU", ""]
        for m in edgetpu:
            result = m["edgetpu"]
            lines += [
                f"- `{result['model']}`: {result['verdict']}",
                f"  compiled: {'yes' if result['compiled'] else 'no'} ({result['reason']}); "
                f"op-by-op analysis: `{m['stage']}/compat.txt`",
            ]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({path})" for name, path in plots.items()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


def device_path_lines(metrics: Sequence[dict[str, Any]]) -> list[str]:
    """The benchmark stage's runtime paths (host XNNPACK, host builtin, each device asked for):
    every file's accuracy on each, and how often they agree."""
    from nlighten_tf.bench import suite

    lines: list[str] = []
    for m in metrics:
        for entry in m.get("paths") or []:
            if not lines:
                lines += ["", "## Accuracy on every runtime path (benchmark stage, same examples on each path)", ""]
            lines += [f"`{entry.get('export') or entry['name']}` on {entry['inputs']}:", "", markdown_table([
                {"path": path, "top1_%": suite.percent(a["top1"]), "examples": a["examples"], "runtime": a["runtime"]}
                for path, a in entry["accuracy"].items()
            ]), "", markdown_table([
                {"paths": f"{p['a']} vs {p['b']}", "top1_agreement_%": suite.percent(p["top1_agreement"]),
                 "max_abs_diff": p["max_abs_diff"]} for p in entry["agreement"]
            ]), ""]  # fmt: skip
    notes = [f"- {note}" for m in metrics for note in m.get("notes") or []]
    if notes:
        lines += ["", "Benchmark notes:", "", *notes]
    return lines


def write(run_dir: Path, recipe_dict: dict[str, Any], metrics: Sequence[dict[str, Any]], total: int, task: Task) -> Path:
    """Writes report.md, summary.json and (with measured exports) accuracy_vs_size.png atomically."""
    plots: dict[str, str] = {}
    exports = [e for e in export_rows(metrics) if e.get("top1") is not None]
    if exports and plot_accuracy_vs_size(exports, str(run_dir / "accuracy_vs_size.png")):
        plots["accuracy vs gzipped size"] = "accuracy_vs_size.png"
    for m in metrics:  # the benchmark module's own plots, where a benchmark stage ran
        for kind, name in (m.get("files") or {}).items():
            if name.endswith(".png"):
                plots[f"{m['stage']} {kind}"] = f"{m['stage']}/{name}"
    atomic.write_json(run_dir / "summary.json", summary(recipe_dict, metrics, len(metrics) == total, task))
    return atomic.write_text(run_dir / "report.md", markdown(recipe_dict, metrics, total, plots, task))


# --- Lottery ------------------------------------------------------------------------------


def lottery_rows(rounds: Sequence[Any]) -> list[dict[str, Any]]:
    return [r.as_dict() if hasattr(r, "as_dict") else dict(r) for r in rounds]


def plot_lottery(rounds: Sequence[Any], path: str | os.PathLike[str]) -> str:
    """Accuracy (%) against the remaining fraction of weights (%, log axis, shrinking to the
    right) for the tickets and their random-reinitialisation control."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # files only; no display on the machines this runs on
    import matplotlib.pyplot as plt

    rows = lottery_rows(rounds)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    remaining = [100 * r["remaining"] for r in rows]
    ax.plot(remaining, [100 * r["accuracy"] for r in rows], "o-", label="winning ticket (rewound)")
    controls = [(100 * r["remaining"], 100 * r["control_accuracy"]) for r in rows if r["control_accuracy"] is not None]
    if controls:
        ax.plot(*zip(*controls, strict=True), "s--", label="random reinitialisation (control)")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining in the selected kernels (%)")
    ax.set_ylabel("accuracy on the evaluation split (%)")
    ax.set_title("Lottery ticket rounds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, buffer.getvalue())
    return os.fspath(path)


def write_lottery(rounds: Sequence[Any], output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """lottery.json, lottery.md and lottery.png in `output_dir`."""
    out = Path(output_dir)
    rows = lottery_rows(rounds)
    columns = ("round", "target_remaining", "remaining", "accuracy", "control_accuracy")
    return {
        "json": str(atomic.write_json(out / "lottery.json", rows)),
        "markdown": str(atomic.write_text(out / "lottery.md", markdown_table(rows, columns) + "\n")),
        "plot": plot_lottery(rounds, out / "lottery.png"),
    }
