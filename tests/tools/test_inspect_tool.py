import json

import pytest

from tests.tools_runner import run_tool


def test_prints_histogram_weights_and_verdict(export_target, tmp_path):
    out = tmp_path / "inspect.json"
    result = run_tool(
        "tools/inspect_tflite.py", export_target("fp32_sparse"), export_target("fp32"), f"--json_out={out}",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Op histogram" in result.stdout and "| DENSIFY |" in result.stdout
    assert "XNNPACK sparse inference: ELIGIBLE - eligible" in result.stdout
    assert "XNNPACK sparse inference: NOT ELIGIBLE - no weights stored sparse" in result.stdout
    reports = json.loads(out.read_text())
    assert [r["eligibility"]["eligible"] for r in reports] == [True, False]
    assert f"wrote {out}" in result.stdout


@pytest.mark.parametrize("case", ["missing", "text", "truncated"])
def test_bad_files_give_one_clear_line(case, tmp_path, export_target):
    path = tmp_path / "bad.tflite"
    if case == "text":
        path.write_text("hello, this is a text file\n")
    elif case == "truncated":
        path.write_bytes(export_target("fp32").read_bytes()[:5000])
    result = run_tool("tools/inspect_tflite.py", path, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert {"missing": "no such file", "text": "not a TFLite flatbuffer", "truncated": "truncated"}[case] in lines[0]
