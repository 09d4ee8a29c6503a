"""Auto-compression to a budget: budgets parse or fail in one clear line; on a tiny trained
model each budget kind is met on the final exported file (or graph, for MAdds), measured again
here independently of the search's own measurement."""

import numpy as np
import pytest

from nlighten_tf.autocompress import budgets
from nlighten_tf.autocompress import search as autocompress
from nlighten_tf.autocompress.search import AutocompressConfig
from nlighten_tf.bench.latency import measure_interleaved
from nlighten_tf.edgetpu import compat
from nlighten_tf.export import tflite
from nlighten_tf.models.complexity import count_madds
from tests.optimize.conftest import quick


@pytest.mark.parametrize(
    "text, message",
    [
        ("madds", "expected KIND:VALUE with KIND one of size_kb, latency_ms, madds, edgetpu_sram_mib"),
        ("flops:0.5x", "unknown kind 'flops'"),
        ("size_kb:big", "'big' is not a number or a fraction like 0.5x"),
        ("size_kb:-3", "the value must be a positive number"),
        ("madds:1.5x", "a relative budget must be below 1x"),
        ("latency_ms:nan", "the value must be a positive number"),
    ],
)
def test_bad_budgets_are_one_clear_line(text, message):
    with pytest.raises(budgets.BudgetError, match=message):
        budgets.parse_budget(text)


def test_budgets_parse_and_emulated_latency_must_be_relative():
    assert budgets.parse_budget("madds:0.5x") == budgets.Budget("madds", 0.5, True)
    assert budgets.parse_budget(" size_kb : 300 ").target(1000.0) == 300.0
    assert budgets.parse_budget("latency_ms:0.5x", "rpi-aarch64").relative
    with pytest.raises(budgets.BudgetError, match="emulated milliseconds are not the board's"):
        budgets.parse_budget("latency_ms:3", "rpi-aarch64")
    with pytest.raises(ValueError, match="only matters to latency_ms budgets"):
        AutocompressConfig(budget="madds:0.5x", device="rpi-aarch64")
    with pytest.raises(ValueError, match="only a size_kb budget measures, not madds"):
        AutocompressConfig(target="int8_sparse")


def _run(model, splits, budget, **kwargs):
    train, validation = splits
    options = {"step": 0.34, "score_batches": 1, "calibration_samples": 32, "recalibrate_proposals": False, **kwargs}
    config = AutocompressConfig(budget=budget, **options)
    return autocompress.autocompress(model, config, train, validation, quick(epochs=1, learning_rate=2e-3))


def _representative(splits):
    return autocompress.representative(splits[0], 32)


@pytest.mark.slow
def test_madds_budget_is_met_on_the_final_graph_and_the_model_stays_useful(trained, splits):
    result = _run(trained, splits, "madds:0.5x", recalibrate_proposals=True)
    report = result.report
    assert report["met"] and report["achieved"]["ratio"] <= 0.5 * 1.03
    assert count_madds(result.model) / count_madds(trained) == pytest.approx(report["achieved"]["ratio"])
    # The search keeps the model useful: well above chance (10 classes) on the validation split.
    # Measured 48.6% with TF_ENABLE_ONEDNN_OPTS=0 (one fine-tuning epoch after halving the MAdds
    # of a 6-epoch model; 0.5 failed there), above it with oneDNN's kernels: 3x chance is the bound.
    assert report["validation"]["final"]["accuracy"] > 0.3, report["validation"]
    assert set(report["choices"]) and any(c["ratio"] < 1 for c in report["choices"].values())


@pytest.mark.slow
def test_size_budget_is_met_on_the_exported_file(trained, splits, tmp_path):
    original = len(tflite.convert(trained, "int8", _representative(splits))[0]) / 1024
    budget = round(0.6 * original, 1)
    result = _run(trained, splits, f"size_kb:{budget}")
    assert result.report["met"], result.report["rounds"]
    assert len(result.flatbuffer) / 1024 <= budget * 1.03
    # The written file is the measured one.
    written = autocompress.write_outputs(result, tmp_path, save_keras=False)
    assert (tmp_path / "model.tflite").stat().st_size == len(result.flatbuffer)
    assert written["report"].endswith("report.md") and (tmp_path / "choices.png").stat().st_size > 0


@pytest.mark.slow
def test_edgetpu_sram_budget_is_met_by_the_offline_analysis(trained, splits):
    result = _run(trained, splits, "edgetpu_sram_mib:0.2")
    assert result.report["target"] == "edgetpu" and result.report["met"]
    assert compat.analyse(result.flatbuffer).param_bytes <= 0.2 * 1024 * 1024 * 1.03


@pytest.mark.slow
def test_latency_budget_is_met_on_the_host_against_a_measured_original(trained, splits, tmp_path):
    # Relative to the original measured interleaved in the same run: no fixed milliseconds. A
    # tiny 32 px network is mostly per-op overhead, so the budget asks for 15% off, met within
    # 10% (the timing spread of a shared 2-core machine).
    result = _run(trained, splits, "latency_ms:0.85x", latency_runs=60, tolerance=0.1)
    report = result.report
    assert report["met"], report["rounds"]
    # Measured again here: the final file against the original, with margin for a shared machine.
    original = tmp_path / "original.tflite"
    original.write_bytes(tflite.convert(trained, "int8", _representative(splits))[0])
    final = tmp_path / "final.tflite"
    final.write_bytes(result.flatbuffer)
    medians = [r.median_ms for r in measure_interleaved([original, final], runs=200, warmup=10)]
    assert medians[1] / medians[0] <= 0.85 * 1.15, medians


@pytest.mark.slow
def test_uniform_baseline_meets_the_same_budget(trained, splits):
    result = _run(trained, splits, "madds:0.5x", method="uniform")
    # One ratio for every group, up to rounding to multiples of 8 channels (wide groups: within 8/64).
    ratios = [c["ratio"] for c in result.report["choices"].values() if c["size"] >= 64]
    assert result.report["met"] and max(ratios) - min(ratios) <= 0.13, result.report["choices"]


def test_unreachable_budget_is_a_clear_error(trained, splits):
    with pytest.raises(ValueError, match="unreachable by channel pruning"):
        _run(trained, splits, "madds:0.001x")
    assert np.isfinite(count_madds(trained))
