"""Real exported models run inside the emulated Raspberry Pi (tflite-runtime 2.14, aarch64):
accuracy and agreement with the host paths, the benchmark CLI with --device, and the
Raspberry Pi example on a real photo. Tiny 32 px models and a few dozen images: the emulation
is ~100x slower than the host."""

import json
import subprocess

import numpy as np
import pytest

from nlighten_tf.bench import devices, suite
from tests.tools_runner import REPO, run_tool

EXAMPLES = 48  # digits test images


@pytest.fixture(scope="module")
def result(rpi, export_target):
    return suite.run(
        [export_target("fp32"), export_target("int8")], threads=(1,), runs=3, warmup=1, data="digits", split="test",
        limit=EXAMPLES, rss=False, devices=["host", rpi], device_runs=3,
    )  # fmt: skip


def test_accuracy_on_the_device_matches_the_host(result, rpi):
    rows = {(r["name"], r["device"]): r for r in result["rows"]}
    assert set(rows) == {("digits_fp32", "host"), ("digits_int8", "host"), ("digits_fp32", rpi), ("digits_int8", rpi)}
    for name in ("digits_fp32", "digits_int8"):
        device = rows[(name, rpi)]
        assert device["latency_note"] == devices.EMULATED_NOTE and device["runs"] == 3
        assert device["runtime"].startswith("tflite_runtime 2.14.0") and device["xnnpack"]
        assert device["top1"] > 0.8 and abs(device["top1"] - rows[(name, "host")]["top1"]) <= 2 / EXAMPLES
        assert device["median_ms"] > 0 and device["peak_rss_mb"] is None
    assert result["devices"][rpi]["machine"] == "aarch64"


def test_runtime_paths_agree_and_the_differences_are_reported(result, rpi):
    by_name = {p["name"]: p for p in result["paths"]}
    for name, max_diff in (("digits_fp32", 1e-3), ("digits_int8", None)):
        entry = by_name[name]
        assert set(entry["accuracy"]) == {suite.HOST_XNNPACK, suite.HOST_BUILTIN, rpi}
        assert all(a["examples"] == EXAMPLES for a in entry["accuracy"].values())
        pairs = {(p["a"], p["b"]): p for p in entry["agreement"]}
        assert len(pairs) == 3
        device_pair = pairs[(suite.HOST_XNNPACK, rpi)]
        assert device_pair["top1_agreement"] >= 0.95
        if max_diff:  # fp32: different kernels, same maths to float rounding
            assert 0 < device_pair["max_abs_diff"] < max_diff or device_pair["bit_exact"]
    # int8: at most a quantization step or two apart (the output scale of the file)
    int8 = {(p["a"], p["b"]): p for p in by_name["digits_int8"]["agreement"]}
    assert int8[(suite.HOST_BUILTIN, rpi)]["max_abs_diff"] < 1.0


def test_markdown_shows_percentages_and_the_emulation_label(result, rpi):
    text = suite.markdown(result)
    assert f"{rpi} ({devices.EMULATED_NOTE})" in text
    assert f"host-xnnpack vs {rpi}" in text and "top-1 agreement %" in text
    top1 = next(r["top1"] for r in result["rows"] if r["device"] == rpi)
    assert f"{100 * top1:.2f}%" in text


def test_benchmark_cli_with_the_device(rpi, export_target, tmp_path):
    models = f"{export_target('fp32')},{export_target('fp32_sparse')}"
    result = run_tool(
        "tools/benchmark.py", f"--tflite={models}", f"--device={rpi}", "--device_runs=3", "--data=digits",
        "--limit=24", "--norss", f"--output_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert [(r["name"], r["device"]) for r in data["rows"]] == [("digits_fp32", rpi), ("digits_fp32_sparse", rpi)]
    assert all(r["top1"] is not None and r["median_ms"] > 0 for r in data["rows"])
    assert "| digits_fp32_sparse | 1 |" in result.stdout and devices.EMULATED_NOTE in result.stdout
    assert f"host-builtin vs {rpi}" in result.stdout
    assert (tmp_path / f"latency_{rpi}.png").exists() and (tmp_path / "accuracy_vs_size.png").exists()


def test_benchmark_cli_unknown_device_is_one_line(tmp_path, export_target):
    result = run_tool(
        "tools/benchmark.py", f"--tflite={export_target('fp32')}", "--device=pi9", f"--output_dir={tmp_path}",
        timeout=300,
    )
    assert result.returncode == 2 and "unknown device 'pi9'" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, quality=90)
    return path


def _example(argv_prefix, env, model, photo):
    result = subprocess.run(
        [*argv_prefix, str(REPO / "examples" / "raspberry_pi" / "classify.py"), "--model", str(model), "--image",
         str(photo), "--json", "--top_k", "3"], env=env, capture_output=True, text=True, timeout=600, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-1000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("target", ["fp32", "int8"])
def test_raspberry_pi_example_on_a_photo(rpi, export_target, photo, target):
    from nlighten_tf.data.preprocessing import preprocess_for_eval
    from nlighten_tf.export import metadata
    from nlighten_tf.litert import runtime

    model = export_target(target)
    argv, env = devices.command(rpi, [])
    on_pi = _example(argv, env, model, photo)
    # Labels and normalisation came from the file, as our own metadata reader sees them.
    info = metadata.read(model.read_bytes())
    assert on_pi["labels_file"] == "labels.txt" and on_pi["mean"] == info["mean"] and on_pi["std"] == info["std"]
    assert [t["label"] for t in on_pi["top"]] == [info["labels"][t["index"]] for t in on_pi["top"]]
    # The host interpreter on nlighten_tf's own evaluation transform of the same photo.
    from PIL import Image

    image = np.asarray(Image.open(photo).convert("RGB"))
    x = np.asarray(preprocess_for_eval(image, 32, "lite", crop=True))[np.newaxis]
    host = runtime.load(model, xnnpack=False).predict(x)[0]
    assert on_pi["top"][0]["index"] == int(np.argmax(host))
    assert np.max(np.abs(np.asarray(on_pi["scores"]) - host)) < (1e-3 if target == "fp32" else 0.3)


def test_raspberry_pi_example_bad_model_is_one_line(rpi, photo, tmp_path):
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a model")
    argv, env = devices.command(rpi, [str(REPO / "examples" / "raspberry_pi" / "classify.py"), "--model", str(bogus),
                                      "--image", str(photo)])  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.mark.slow
def test_recipe_benchmark_stage_reports_accuracy_on_every_device_path(rpi, tmp_path):
    from tests.tools.test_optimize_tool import TOOL, write_recipe

    recipe = write_recipe(
        tmp_path / "pi.yaml", "train: {epochs: 1, learning_rate: 2e-3}", "export: {targets: [fp32, int8]}",
        f"benchmark: {{runs: 3, warmup: 1, devices: [host, {rpi}], device_limit: 24, device_runs: 2}}",
    )  # fmt: skip
    result = run_tool(TOOL, f"--recipe={recipe}", f"--output_dir={tmp_path / 'runs'}", "--override=name=pi")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "pi"
    bench = json.loads((run / "03-benchmark" / "metrics.json").read_text())
    assert {(r["export"], r["device"]) for r in bench["rows"]} == {
        ("02-export/fp32", "host"), ("02-export/int8", "host"), ("02-export/fp32", rpi), ("02-export/int8", rpi)
    }
    for entry in bench["paths"]:
        assert set(entry["accuracy"]) == {suite.HOST_XNNPACK, suite.HOST_BUILTIN, rpi}
        assert all(a["examples"] == 24 and a["top1"] is not None for a in entry["accuracy"].values())
    report = (run / "report.md").read_text()
    assert "## Accuracy on every runtime path" in report
    for export in ("02-export/fp32", "02-export/int8"):
        assert f"`{export}` on digits test" in report
    assert f"| {rpi} |" in report and f"host-xnnpack vs {rpi}" in report
    assert (run / "03-benchmark" / f"latency_{rpi}.png").exists()


def test_recipe_rejects_an_unknown_device(tmp_path):
    from tests.tools.test_optimize_tool import TOOL, write_recipe

    recipe = write_recipe(tmp_path / "bad.yaml", "train: {epochs: 1}", "export: {targets: [fp32]}",
                          "benchmark: {devices: [host, pi9]}")  # fmt: skip
    result = run_tool(TOOL, f"--recipe={recipe}", f"--output_dir={tmp_path}", "--dry_run")
    assert result.returncode == 2 and "stage 3 (benchmark): key 'devices': unknown device 'pi9'" in result.stderr


def test_keras_model_joins_the_path_comparison(export_target, tmp_path_factory):
    from tests.export import artifacts

    keras_path = artifacts.digits_model(tmp_path_factory)
    result = suite.run([export_target("fp32")], runs=2, warmup=1, data="digits", limit=32, rss=False,
                       keras_model=keras_path)  # fmt: skip
    entry = result["paths"][0]
    assert set(entry["accuracy"]) == {suite.HOST_XNNPACK, suite.HOST_BUILTIN, suite.KERAS}
    keras_pair = next(p for p in entry["agreement"] if (p["a"], p["b"]) == (suite.HOST_XNNPACK, suite.KERAS))
    assert keras_pair["top1_agreement"] == 1.0 and keras_pair["max_abs_diff"] < 1e-3
    with pytest.raises(ValueError, match="cannot load"):
        suite.run([export_target("fp32")], runs=1, warmup=0, rss=False, keras_model=tmp_path_factory.mktemp("k") / "no.keras")
