import json
import zipfile

import pytest

from tests.export import artifacts
from tests.tools_runner import run_tool


def test_exports_targets_with_metadata_and_sidecars(tmp_path_factory, tmp_path):
    keras_model = artifacts.digits_model(tmp_path_factory)
    result = run_tool(
        "tools/export.py",
        f"--keras_model={keras_model}", "--model=mobilenet_v2", "--targets=fp32,int8_float_io", "--data=digits",
        "--calibration_samples=20", f"--output_dir={tmp_path}", "--name=digits",
    )
    assert result.returncode == 0, result.stderr
    for target in ("fp32", "int8_float_io"):
        path = tmp_path / f"digits_{target}.tflite"
        assert zipfile.ZipFile(path).read("labels.txt").decode().split() == [str(d) for d in range(10)]
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["classifier"]["preprocessing"] == "mobilenet"  # the registry scheme of --model
        assert sidecar["source"] == str(keras_model)
        assert f"wrote {path}" in result.stdout
    assert "signature 'serving_default'" in result.stdout
    assert "input serving_default_image:0: float32 [1, 32, 32, 3]" in result.stdout


def test_bad_arguments_are_one_clear_line(tmp_path):
    for args, message in (
        (["--targets=int4"], "unknown export target 'int4'"),
        ([f"--keras_model={tmp_path / 'missing.keras'}"], "no such file"),
    ):
        result = run_tool("tools/export.py", *args, f"--output_dir={tmp_path}")
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # ~30 s: a subprocess that imports TensorFlow and runs the mixed search
def test_mixed_target_through_litert_quantizer(tmp_path_factory, tmp_path):
    keras_model = artifacts.digits_model(tmp_path_factory)
    result = run_tool(
        "tools/export.py",
        f"--keras_model={keras_model}", "--model=mobilenet_v2", "--targets=mixed,int16x8", "--quantizer=litert",
        "--data=digits", "--calibration_samples=40", "--mixed_min_agreement=0.9", f"--output_dir={tmp_path}",
        "--name=digits",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    path = tmp_path / "digits_mixed.tflite"
    assert zipfile.ZipFile(path).read("labels.txt").decode().split() == [str(d) for d in range(10)]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["quantizer"]["name"] == "litert" and sidecar["mixed_precision"]["held_out_examples"] == 10
    assert sidecar["mixed_precision"]["config"]["min_agreement"] == 0.9
    assert "mixed: scanning each op's sensitivity" in result.stdout and "target met" in result.stdout
    assert (tmp_path / "digits_int16x8.tflite").exists()


def test_a_target_the_chosen_quantizer_cannot_write_is_one_clear_line(tmp_path):
    # Checked before any model is built (the other pairs: tests/export/test_litert_backend.py).
    result = run_tool("tools/export.py", "--targets=int8,int16x8", "--quantizer=converter", f"--output_dir={tmp_path}")
    assert result.returncode == 2, result.stderr
    assert "cannot produce target int16x8" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())
