import json

from tests.tools_runner import run_tool


def test_trains_saves_and_reports(tmp_path):
    output = tmp_path / "m.h5"
    result = run_tool(
        "tools/train.py",
        "--model=mobilenet_v2", "--model_option=width_multiplier=0.35", "--data=digits", "--image_size=32",
        "--epochs=0.3", "--eval_limit=64", f"--output={output}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert output.exists() and f"wrote {output}" in result.stdout
    metrics = json.loads(output.with_suffix(".json").read_text())
    assert metrics["model"] == "mobilenet_v2" and metrics["options"] == {"width_multiplier": 0.35}
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["params"] > 0


def test_bad_option_is_one_clear_line(tmp_path):
    result = run_tool(
        "tools/train.py", "--model=mobilenet_v2", "--model_option=depth=2", f"--output={tmp_path / 'm.h5'}",
    )
    assert result.returncode == 2
    assert "unknown option(s) depth for model 'mobilenet_v2'" in result.stderr and "Traceback" not in result.stderr
