import json

from tests.tools_runner import run_tool


def test_benchmark_writes_json_markdown_and_plots(export_target, tmp_path):
    models = f"{export_target('fp32')},{export_target('fp32_sparse')}"
    result = run_tool(
        "tools/benchmark.py", f"--tflite={models}", "--threads=1,2", "--runs=3", "--warmup=1",
        f"--output_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert [(r["name"], r["threads"]) for r in data["rows"]] == [
        ("digits_fp32", 1), ("digits_fp32_sparse", 1), ("digits_fp32", 2), ("digits_fp32_sparse", 2)
    ]
    assert all(r["top1"] is None and r["peak_rss_mb"] > 0 for r in data["rows"])
    assert (tmp_path / "latency.png").exists() and not (tmp_path / "accuracy_vs_size.png").exists()
    assert "| digits_fp32_sparse | 2 |" in result.stdout
    assert f"wrote json: {tmp_path / 'benchmark.json'}" in result.stdout


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path, export_target):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"PK\x03\x04 not a model at all")
    for models, message in (
        (f"{export_target('fp32')},{tmp_path / 'missing.tflite'}", "missing.tflite: no such file"),
        (str(corrupt), "not a TFLite flatbuffer"),
    ):
        result = run_tool("tools/benchmark.py", f"--tflite={models}", "--runs=1", f"--output_dir={tmp_path / 'out'}")
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr
    assert run_tool("tools/benchmark.py", "--threads=1").returncode == 2
