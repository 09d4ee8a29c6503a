"""`--resume` reproduces an uninterrupted run (issue 17 item 4): a run resumed at a training
stage computes, figure for figure and byte for byte, what the same run did without stopping.

A shortened quickstart (train -> prune -> int8 sparse export) on digits: run once whole, then
a second run directory gets only the first run's completed train stage and resumes from the
prune stage. Before the fix the resumed prune stage trained on another shuffle order (the
data pipeline was built once per process and its shuffle advanced with every earlier epoch),
so its losses, sparsity counts and the int8 file differed."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools_runner import run_tool

RECIPE = """
name: resumed
seed: 3
model:
  name: efficientnet_lite0
  options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128, dropout_rate: 0.1}
data: {spec: digits, image_size: 32, batch_size: 64, train_limit: 640, eval_limit: 120}
stages:
  - train: {epochs: 2, learning_rate: 3e-3}
  - prune: {target_sparsity: 0.8, epochs: 1, frequency: 2}
  - export: {targets: [int8_sparse], calibration_samples: 16}
"""
STAGES = ("01-train", "02-prune", "03-export")
TIMINGS = {"wall_time_s", "seconds", "train_time_s"}


def figures(value, prefix=""):
    """(dotted key, number) for every number in a metrics.json, timings left out."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in TIMINGS and not key.endswith(("_ms", "_s")):
                yield from figures(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from figures(item, f"{prefix}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix, value


def run_figures(run: Path) -> dict[str, float]:
    found = {}
    for stage in STAGES:
        metrics = json.loads((run / stage / "metrics.json").read_text())
        found.update({f"{stage}: {key}": number for key, number in figures(metrics)})
        # Sizes of what the stage wrote (TensorBoard logs and metrics.json carry wall-clock
        # times: left out; metrics.json's figures are compared above).
        for path in sorted((run / stage).rglob("*")):
            if path.is_file() and path.name != "metrics.json" and "logs" not in path.relative_to(run / stage).parts:
                found[f"{stage}: size of {path.name}"] = path.stat().st_size
    return found


def optimize(recipe: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    result = run_tool("tools/optimize.py", f"--recipe={recipe}", f"--output_dir={out}", *extra, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_run_resumed_at_a_training_stage_equals_an_uninterrupted_one(tmp_path):
    recipe = tmp_path / "resumed.yaml"
    recipe.write_text(RECIPE)
    whole = tmp_path / "whole" / "resumed"
    optimize(recipe, tmp_path / "whole")

    # What an interruption during the prune stage leaves: stage 1 complete, nothing after it.
    resumed = tmp_path / "resumed" / "resumed"
    resumed.mkdir(parents=True)
    shutil.copytree(whole / "01-train", resumed / "01-train")
    shutil.copy(whole / "resolved_recipe.yaml", resumed)
    result = optimize(recipe, tmp_path / "resumed", "--resume")
    assert "[01/03 train] complete, skipped" in result.stdout and "[02/03 prune] done" in result.stdout

    expected, got = run_figures(whole), run_figures(resumed)
    assert len(expected) > 50 and set(got) == set(expected)
    differing = {key: (expected[key], got[key]) for key in expected if got[key] != expected[key]}
    assert not differing, f"{len(differing)} of {len(expected)} figures differ: {differing}"
    name = "int8_sparse.tflite"
    assert (resumed / "03-export" / name).read_bytes() == (whole / "03-export" / name).read_bytes()
