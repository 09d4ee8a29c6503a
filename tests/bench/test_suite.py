"""The benchmark engine end to end on real files: every JSON field, ratios, accuracy of the
.tflite itself, fallback reporting, markdown and plots."""

import json

import pytest

from nlighten_tf import render
from nlighten_tf.bench import accuracy, latency, suite


@pytest.fixture(scope="module")
def result(export_target):
    return suite.run(
        [export_target("fp32"), export_target("int8_sparse")], threads=(1, 2), runs=5, warmup=1,
        data="digits", split="test", limit=120,
    )  # fmt: skip


def test_every_row_has_every_field(result):
    assert len(result["rows"]) == 4
    for row in result["rows"]:
        assert set(suite.ROW_FIELDS) <= set(row)
        for key in ("size_bytes", "gzip_bytes", "init_ms", "min_ms", "median_ms", "p90_ms", "peak_rss_mb", "top1", "top5"):
            assert row[key] is not None and row[key] > 0, key
        assert row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["gzip_bytes"] < row["size_bytes"]
        assert row["runs"] == 5
    first = [r for r in result["rows"] if r["name"] == "digits_fp32"]
    assert all(r["speedup_vs_first"] == 1.0 and r["size_vs_first"] == 1.0 for r in first)
    json.dumps(result)


def test_deployed_accuracy_and_fallback_are_reported(result):
    for model, acc in result["accuracy"].items():
        assert acc["examples"] == 120 and acc["preprocessing"] == "lite", model
        assert acc["top1"] > 0.85 and acc["top5"] >= acc["top1"]
    sparse = [r for r in result["rows"] if r["name"] == "digits_int8_sparse"]
    assert all("failed to delegate FULLY_CONNECTED" in r["fallback"] for r in sparse)
    assert all(r["runtime"] == "tensorflow" for r in sparse)
    assert any("digits_int8_sparse" in f for f in result["fallbacks"])


def test_outputs_written(result, tmp_path):
    written = suite.write(result, tmp_path)
    assert set(written) == {"json", "markdown", "latency_plot", "accuracy_plot"}
    assert json.loads((tmp_path / "benchmark.json").read_text())["rows"][0]["name"] == "digits_fp32"
    text = (tmp_path / "benchmark.md").read_text()
    assert "| digits_int8_sparse | 2 |" in text and "Runtime fallbacks" in text
    for key in ("latency_plot", "accuracy_plot"):
        assert open(written[key], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_preprocessing_declared_by_the_file(export_target):
    assert accuracy.declared_preprocessing(export_target("fp32")) == "lite"


def test_latency_summary_and_validation():
    stats = latency.summarize([0.001, 0.002, 0.003, 0.004])
    assert stats["min_ms"] == pytest.approx(1.0) and stats["median_ms"] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="runs must be"):
        latency.measure_interleaved([], runs=0)


def test_plots_skip_without_accuracy(tmp_path):
    assert render.plot_accuracy_vs_size([{"name": "a", "gzip_bytes": 10, "top1": None}], str(tmp_path / "a.png")) is None
