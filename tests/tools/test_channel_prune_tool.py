import json

import pytest

from tests.tools_runner import run_tool


def test_prunes_to_the_budget_saves_and_reports(tmp_path):
    output = tmp_path / "pruned.h5"
    result = run_tool(
        "tools/channel_prune.py",
        "--model=mobilenet_v2", "--model_option=width_multiplier=0.35", "--data=digits", "--image_size=32",
        "--keep_madds=0.5", "--criterion=bn_gamma", "--epochs_per_step=0.2", "--train_limit=256", "--eval_limit=64",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote model: {output}" in result.stdout and f"wrote report: {output.with_suffix('.json')}" in result.stdout
    report = json.loads(output.with_suffix(".json").read_text())
    assert abs(report["madds_ratio"] - 0.5) <= 0.01 and report["criterion"] == "bn_gamma"
    assert 0.0 <= report["accuracy"] <= 1.0 and report["groups"]

    # The saved model loads as a plain Keras model and can be pruned again (--keras_model).
    again = tmp_path / "again.h5"
    result = run_tool(
        "tools/channel_prune.py", f"--keras_model={output}", "--data=digits", "--per_layer=top_conv=0.5",
        "--epochs_per_step=0", "--eval_limit=64", f"--output={again}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(again.with_suffix(".json").read_text())["groups"]["top_conv"]["ratio"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--keep_madds=0", "error: keep_madds is a keep ratio and must be in (0, 1], got 0.0"),
        ("--per_layer=block99_conv=0.5", "error: no layer named 'block99_conv' in the model"),
        ("--keras_model=/nonexistent.h5", "error: --keras_model /nonexistent.h5: no such file"),
    ],
)
def test_bad_targets_are_one_clear_line(tmp_path, flag, message):
    result = run_tool("tools/channel_prune.py", flag, "--epochs_per_step=0", f"--output={tmp_path / 'm.h5'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr and "Traceback" not in result.stderr
