import json

from tests.tools_runner import run_tool


def test_list_names_every_model():
    result = run_tool("tools/models.py", "--list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # classifiers + EfficientDet-D0..D2 / -Lite0..4 + 3 segmenters + 2 key-point models (heads.py)
    assert len(lines) == 17 + 8 + 3 + 2
    assert lines[0].split()[0] == "efficientnet_b0"
    tasks = {line.split()[0]: line.split()[2] for line in lines}
    assert tasks["efficientdet_lite0"] == "detection" and tasks["mobilenet_v2"] == "classification"
    assert tasks["lraspp_lite0"] == "segmentation" and tasks["keypoints_lite0"] == "keypoints"


def test_summary_table_and_json(tmp_path):
    out = tmp_path / "zoo.json"
    result = run_tool(
        "tools/models.py", "--summary", "--models=efficientnet_lite0,efficientnet_edgetpu_s", f"--json_out={out}",
    )
    assert result.returncode == 0, result.stderr
    assert "| efficientnet_lite0 | 224 | 1000 | 4.65 |" in result.stdout
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["efficientnet_lite0", "efficientnet_edgetpu_s"]
    assert all(abs(r["params diff (%)"]) < 0.5 for r in rows)
    assert rows[1]["classes"] == 1001


def test_unknown_model_is_one_clear_line_and_nonzero_exit():
    result = run_tool("tools/models.py", "--summary", "--models=resnet50")
    assert result.returncode == 2
    assert "error: --models: unknown model 'resnet50'" in result.stderr
    assert "Traceback" not in result.stderr
