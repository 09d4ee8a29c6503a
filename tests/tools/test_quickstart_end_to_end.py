"""recipes/quickstart.yaml, the main job, end to end through tools/optimize.py at tiny size
(digits, fractions of an epoch): every stage it ships runs (train, fp32 export, sensitivity-
guided channel pruning, pruning, clustering, PCQAT, int8 sparse export, benchmark), and a run
killed after its PCQAT stage resumes from the saved PCQAT model to the same deliverables."""

import json
import signal

import pytest

from tests.tools.test_optimize_tool import TOOL, wait_for
from tests.tools_runner import run_tool, start_tool

TINY = (
    "--override=data.spec=digits",
    "--override=data.eval_limit=200",
    "--override=stages.1.epochs=1",
    "--override=stages.3.epochs_per_step=0.25",
    "--override=stages.4.epochs=0.5",
    "--override=stages.4.end_epoch=0.25",
    "--override=stages.4.frequency=2",
    "--override=stages.5.epochs=0.1",
    "--override=stages.6.epochs=0.1",
    "--override=stages.8.runs=3",
)
STAGES = ["01-train", "02-export", "03-channel_prune", "04-prune", "05-cluster", "06-qat", "07-export", "08-benchmark"]


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_resumes_after_pcqat(tmp_path):
    out = tmp_path / "runs"
    run = out / "quickstart"
    args = ("--recipe=recipes/quickstart.yaml", f"--output_dir={out}", *TINY)
    log = tmp_path / "first.log"
    first = start_tool(TOOL, *args, log=log)
    # Killed once the int8 export has started, i.e. after PCQAT has written its model.
    wait_for(lambda: "[07/08 export]" in log.read_text(), first, timeout=900)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (run / "06-qat" / "metrics.json").exists() and not (run / "07-export").exists()
    qat = json.loads((run / "06-qat" / "metrics.json").read_text())
    assert qat["qat_scheme"] == "pcqat", qat

    result = run_tool(TOOL, *args, "--resume", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for n, stage in enumerate(STAGES[:6], 1):
        assert f"[{n:02d}/08 {stage[3:]}] complete, skipped" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and [m["stage"] for m in summary["stage_metrics"]] == STAGES

    channels = json.loads((run / "03-channel_prune" / "metrics.json").read_text())
    assert channels["report"]["params_ratio"] == pytest.approx(0.6, abs=0.05)
    assert "sensitivity_json" in channels.get("files", {}), channels.get("files")
    pruned = json.loads((run / "04-prune" / "metrics.json").read_text())
    assert pruned["prunable_sparsity"] > 0.8, pruned
    exports = {e["target"]: e for e in summary["exports"]}
    assert set(exports) == {"fp32", "int8_sparse", "int8_sparse_float_io"}, exports
    assert all(e["examples"] == 200 and 0 < e["top1"] <= 1 for e in exports.values()), exports
    assert exports["int8_sparse_float_io"]["mediapipe"]["loads"], exports["int8_sparse_float_io"]
    assert (run / "07-export" / "int8_sparse.tflite").stat().st_size < (run / "02-export" / "fp32.tflite").stat().st_size / 4
    report = (run / "report.md").read_text()
    assert "08-benchmark" in report and "int8_sparse" in report
