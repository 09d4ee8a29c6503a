"""tools/lottery.py end to end: rounds at 0.8^k of the weights, each with its random control,
written as JSON, markdown and a plot."""

import json

import pytest

from tests.tools_runner import run_tool


@pytest.mark.slow
def test_lottery_tool_writes_rounds_and_controls(tmp_path):
    result = run_tool(
        "tools/lottery.py", "--rounds=1", "--epochs=0.5", "--train_limit=256", "--batch_size=32",
        f"--output_dir={tmp_path}", timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rounds = json.loads((tmp_path / "lottery.json").read_text())
    rounds = rounds.get("rounds", rounds) if isinstance(rounds, dict) else rounds
    assert [r["round"] for r in rounds] == [0, 1]
    assert [round(r["remaining"], 2) for r in rounds] == [1.0, 0.8]
    assert rounds[0]["control_accuracy"] is None and rounds[1]["control_accuracy"] is not None
    assert (tmp_path / "lottery.md").read_text().strip() and (tmp_path / "lottery.png").stat().st_size > 1000
    assert str(tmp_path / "lottery.json") in result.stdout
