"""The stage types the quickstart does not use, run through tools/optimize.py on digits at tiny
size: distill (with its teacher trained first), distill again data-free (synthetic:bn images from
its teacher's BatchNorm statistics), lowrank, lottery (keep: best), export (int8 calibrated data-free, mixed) and
benchmark. (train, channel_prune, prune, cluster, PCQAT, export and benchmark run in
tests/tools/test_quickstart_end_to_end.py; transfer in tests/recipes/test_transfer_recipe.py;
edgetpu and detector stages in tests/tools/test_optimize_tool.py and test_detection_recipe.py.)"""

import json

import pytest

from tests.tools_runner import run_tool

# Batch 16 on 640 images: 40 steps an epoch, so in 2 epochs BatchNorm's moving statistics
# (momentum 0.99) leave their initial values, evaluations are not all at chance and keep: best
# has a choice to make.
RECIPE = """
name: every_stage
seed: 5
model:
  name: efficientnet_lite0
  options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128, dropout_rate: 0.0}
data: {spec: digits, image_size: 32, batch_size: 16, train_limit: 640, eval_limit: 120}
stages:
  - train: {epochs: 2, learning_rate: 3e-3}
  - distill: {epochs: 0.5, learning_rate: 1e-3, teacher: {name: efficientnet_lite0, epochs: 1, learning_rate: 3e-3,
              options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128}}}
  - distill: {epochs: 0.5, learning_rate: 1e-3, synthetic_images: 32,
              teacher: {name: efficientnet_lite0, epochs: 1, learning_rate: 3e-3,
              options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128}}}
  - lowrank: {energy: 0.9, policy: conv1x1, epochs: 0.25}
  - lottery: {rounds: 1, epochs: 0.5, learning_rate: 1e-3, keep: best}
  - export: {targets: [int8, mixed], calibration_samples: 16, calibration: synthetic:bn, mixed_min_agreement: 0.9}
  - benchmark: {runs: 3, warmup: 1}
"""


@pytest.mark.slow
def test_distill_lowrank_lottery_export_benchmark_through_the_runner(tmp_path):
    recipe = tmp_path / "every_stage.yaml"
    recipe.write_text(RECIPE)
    result = run_tool("tools/optimize.py", f"--recipe={recipe}", f"--output_dir={tmp_path}", timeout=1200,
                      env={"NLIGHTEN_TF_HOME": str(tmp_path / "home")})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "every_stage"

    def metrics(stage):
        return json.loads((run / stage / "metrics.json").read_text())

    distilled = metrics("02-distill")
    assert distilled["teacher"]["source"] == "efficientnet_lite0" and (run / "02-distill" / "teacher.h5").exists()
    assert "training the teacher efficientnet_lite0 for 1 epochs" in result.stdout
    assert distilled["history"]["distill_kl"] >= 0
    assert "synthetic_images" not in distilled["teacher"]
    # Data-free: 32 images for the distillation, 16 for calibration, synthesised from the teacher
    # and from the model being exported.
    data_free = metrics("03-distill")
    assert data_free["teacher"]["synthetic_images"] == 32 and data_free["history"]["distill_kl"] >= 0
    reports = [json.loads(p.read_text()) for p in (tmp_path / "home" / "synthetic").glob("*/report.json")]
    assert sorted(r["settings"]["count"] for r in reports) == [16, 32]
    assert all(r["error_after"] < r["error_before"] for r in reports), reports

    lowrank = metrics("04-lowrank")
    assert lowrank["params_after"] < lowrank["params_before"] == data_free["params"] == distilled["params"]
    assert lowrank["params"] == lowrank["params_after"]

    lottery = metrics("05-lottery")
    rounds = lottery["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["control_accuracy"] is not None
    best = max(rounds, key=lambda r: r["accuracy"])  # first of equals, as the stage picks
    assert lottery["kept_round"] == best["round"], rounds
    # The model handed on is the kept round's: its sparsity says which one it is.
    assert lottery["prunable_sparsity"] == pytest.approx(1 - best["remaining"], abs=0.01), lottery

    export = metrics("06-export")
    assert (run / "06-export" / "int8.tflite").exists()
    assert json.dumps(export["exports"]).count("int8.tflite") >= 1
    # quantizer auto: int8 from the TF converter, mixed from LiteRT Quantizer (4 of the 16 held out).
    sidecars = {t: json.loads((run / "06-export" / f"{t}.json").read_text()) for t in ("int8", "mixed")}
    assert sidecars["int8"]["quantizer"]["name"] == "converter" and sidecars["mixed"]["quantizer"]["name"] == "litert"
    assert sidecars["mixed"]["mixed_precision"]["held_out_examples"] == 4
    bench = json.loads((run / "07-benchmark" / "benchmark.json").read_text())
    assert bench["rows"], bench
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"]
    assert [m["stage"] for m in summary["stage_metrics"]] == [
        "01-train", "02-distill", "03-distill", "04-lowrank", "05-lottery", "06-export", "07-benchmark",
    ]  # fmt: skip
