"""tools/autocompress.py end to end on a tiny untrained model (a MAdds budget: an untrained
network's file bytes grow in the fine-tune, as identical BatchNorm vectors stop being one
deduplicated buffer; byte budgets are tested on a trained model in tests/optimize), the autocompress stage inside a recipe,
and bad budgets as one clear line."""

import json

import pytest

from nlighten_tf.keras_io import load_keras
from nlighten_tf.models.complexity import count_madds
from tests.tools_runner import run_tool

TINY = ["--model=efficientnet_lite0", "--model_option=width_coefficient=0.5", "--model_option=depth_coefficient=0.34",
        "--model_option=head_filters=128", "--data=digits", "--image_size=32", "--batch_size=32", "--eval_limit=96"]


@pytest.mark.slow
def test_writes_result_json_with_the_budget_met_and_measured(tmp_path):
    out = tmp_path / "out"
    result = run_tool(
        "tools/autocompress.py", *TINY, "--budget=madds:0.5x", "--step=0.34", "--score_batches=1",
        "--norecalibrate_proposals", "--epochs=0.25", "--calibration_samples=16", f"--output_dir={out}", timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "result.json").read_text())
    assert report["met"] and report["budget"]["text"] == "madds:0.5x"
    # Achieved is measured on the written model.
    model = load_keras(out / "model.h5")
    assert report["achieved"]["value"] == count_madds(model) <= 0.5 * 1.03 * report["original"]["madds"]
    assert 0.0 <= report["test_accuracy"] <= 1.0 and "accuracy" in report["validation"]["final"]
    assert report["choices"] and (out / "model.h5").exists() and (out / "choices.png").exists()
    assert "budget **met**" in (out / "report.md").read_text()
    assert "wrote result:" in result.stdout


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--budget=flops:0.5x", "error: budget 'flops:0.5x': unknown kind 'flops'"),
        ("--budget=latency_ms:2", "error: budget 'latency_ms:2' on rpi-aarch64: emulated milliseconds"),
        ("--keras_model=/nonexistent.h5", "error: --keras_model /nonexistent.h5: no such file"),
    ],
)
def test_bad_budgets_are_one_clear_line(tmp_path, flag, message):
    extra = ["--device=rpi-aarch64"] if "latency" in flag else []
    result = run_tool("tools/autocompress.py", flag, *extra, f"--output_dir={tmp_path}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr


RECIPE = """
name: tiny_autocompress
seed: 0
model:
  name: efficientnet_lite0
  options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128, dropout_rate: 0.0}
data: {spec: digits, image_size: 32, batch_size: 32, train_limit: 640, eval_limit: 96, validation: 0.1}
stages:
  - train: {epochs: 1, learning_rate: 3e-3}
  - autocompress: {budget: "madds:0.5x", step: 0.34, score_batches: 1, recalibrate_proposals: false, epochs: 0.25}
  - export: {targets: [int8], calibration_samples: 16}
"""


@pytest.mark.slow
def test_the_stage_runs_in_a_recipe(tmp_path):
    recipe = tmp_path / "tiny_autocompress.yaml"
    recipe.write_text(RECIPE)
    result = run_tool("tools/optimize.py", f"--recipe={recipe}", f"--output_dir={tmp_path}", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    stage = tmp_path / "tiny_autocompress" / "02-autocompress"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["report"]["met"] and metrics["report"]["achieved"]["ratio"] <= 0.5 * 1.03
    assert (stage / "model.tflite").exists() and (stage / "result.json").exists()
    assert (tmp_path / "tiny_autocompress" / "03-export" / "int8.tflite").exists()
