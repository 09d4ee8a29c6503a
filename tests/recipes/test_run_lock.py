"""One process per run directory (issue 17 item 3): a second `tools/optimize.py` on the same
output directory is refused before it touches anything, naming the running one; a lock left by
a dead process does not block the next run."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nlighten_tf.recipes import runner
from tests.tools_runner import REPO, run_tool, start_tool

TOOL = "tools/optimize.py"

# The child tries the lock and prints what it got: "locked" (exit 0) or the refusal (exit 3).
TRY_LOCK = """
import sys
from pathlib import Path
from nlighten_tf.recipes import runner
try:
    with runner.run_lock(Path(sys.argv[1])):
        print("locked")
except runner.RunLocked as error:
    print(error)
    sys.exit(3)
"""


def try_lock(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(run_dir)], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_the_lock_refuses_a_second_holder_and_takes_over_a_stale_one(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # What a SIGKILLed run leaves: the file, with nobody holding the flock.
    (run_dir / runner.LOCK_FILE).write_text("pid 999999, started 2026-01-01 00:00:00 UTC\n")
    with runner.run_lock(run_dir):
        held = (run_dir / runner.LOCK_FILE).read_text()
        assert held.startswith(f"pid {os.getpid()}, started ") and "999999" not in held
        refused = try_lock(run_dir)
        assert refused.returncode == 3, refused.stderr[-2000:]
        assert f"is in use by a run in progress (pid {os.getpid()}, started" in refused.stdout
    taken = try_lock(run_dir)  # released when the holder leaves the block
    assert taken.returncode == 0 and taken.stdout.strip() == "locked", taken.stderr[-2000:]


RECIPE = """
name: locked
seed: 1
model:
  name: efficientnet_lite0
  options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128, dropout_rate: 0.0}
data: {spec: digits, image_size: 32, batch_size: 64, train_limit: 640, eval_limit: 60}
stages:
  - train: {epochs: 2, learning_rate: 2e-3}
  - prune: {target_sparsity: 0.5, epochs: 2, frequency: 5}
"""


@pytest.mark.slow
def test_a_second_start_is_refused_and_the_first_run_finishes_intact(tmp_path):
    recipe = tmp_path / "locked.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "runs"
    run = out / "locked"
    args = (f"--recipe={recipe}", f"--output_dir={out}")
    log = tmp_path / "first.log"
    first = start_tool(TOOL, *args, log=log)
    try:
        # Synchronise on the first run's progress: its first stage is being worked on.
        partial = run / ".01-train.partial"
        deadline = time.time() + 300
        while not partial.exists():
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the first run never started its first stage"
            time.sleep(0.2)
        for extra in ([], ["--resume"]):
            second = run_tool(TOOL, *args, *extra, timeout=300)
            assert first.poll() is None, "the first run ended before the second start was checked; inconclusive"
            assert second.returncode == 2, second.stderr[-3000:]
            assert f"is in use by a run in progress (pid {first.pid}, started" in second.stderr, second.stderr[-3000:]
            assert "Traceback" not in second.stderr
        assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    text = log.read_text()
    assert "NotFoundError" not in text and "[02/02 prune] done" in text
    summary = json.loads((run / "summary.json").read_text())
    assert summary["complete"] and [s["stage"] for s in summary["stages"]] == ["01-train", "02-prune"]
    assert not list(run.glob(".*.partial"))
