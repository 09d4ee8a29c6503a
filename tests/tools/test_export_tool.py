import json
import zipfile

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
