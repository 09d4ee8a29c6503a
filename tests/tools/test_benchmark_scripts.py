"""Every script behind a published ratio or size in docs/benchmarks.md runs end to end at tiny
settings and writes its JSON and markdown, so none can rot between the runs that regenerate
the tables (the figures themselves come from the scripts' full settings, not from here)."""

import json

import pytest

from nlighten_tf.models import weights
from tests.models.checkpoints import require_checkpoint
from tests.tools_runner import run_tool


def run_script(name, *args, env=None, timeout=900):
    result = run_tool(f"benchmarks/{name}", *args, timeout=timeout, env=env)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    return result


def results(output_dir, stem):
    assert (output_dir / f"{stem}.md").read_text().strip()
    return json.loads((output_dir / f"{stem}.json").read_text())


@pytest.fixture(scope="module")
def imagenet_home(tmp_path_factory):
    """NLIGHTEN_TF_HOME holding the ImageNet Lite0 weights converted from the checkpoint package."""
    require_checkpoint("efficientnet_lite0")
    home = tmp_path_factory.mktemp("nlighten_home")
    result = run_tool("tools/import_weights.py", "--model=efficientnet_lite0", env={weights.HOME_ENV: str(home)})
    assert result.returncode == 0, result.stderr[-3000:]
    return {weights.HOME_ENV: str(home)}


@pytest.mark.slow
def test_xnnpack_sparse_script(tmp_path):
    run_script("xnnpack_sparse.py", "--models=mobilenet_v2", "--sparsities=0.9", "--threads=1", "--repetitions=1",
               "--runs=2", "--warmup=1", "--input_size=32", "--devices=", f"--output_dir={tmp_path}")  # fmt: skip
    payload = results(tmp_path, "xnnpack_sparse")
    assert "mobilenet_v2" in json.dumps(payload)


@pytest.mark.slow
def test_channel_pruning_script(tmp_path):
    run_script("channel_pruning.py", "--models=mobilenet_v2", "--input_size=32", "--targets=fp32,int8",
               "--repetitions=1", "--runs=2", "--warmup=1", f"--output_dir={tmp_path}")  # fmt: skip
    payload = results(tmp_path, "channel_pruning")
    assert "mobilenet_v2" in json.dumps(payload)


@pytest.mark.slow
def test_compression_script(tmp_path, imagenet_home):
    # Two upscaled digits and Fashion-MNIST images beside the photo crops (not 200 of each):
    # every one of the 7 files is run on each at 224 px, and the figures are not checked here.
    run_script("compression.py", "--calibration_samples=4", "--per_set=2", f"--output_dir={tmp_path}", env=imagenet_home)
    payload = results(tmp_path, "compression")
    assert payload["rows"] and payload["weights"] == "imagenet"
    assert payload["reference_images"]["digits"] == payload["reference_images"]["fashion_mnist"] == 2


@pytest.mark.slow
def test_transfer_pruned_script(tmp_path, imagenet_home):
    run_script("transfer_pruned.py", "--sparsities=0,0.5", "--image_size=32", "--train_examples=64",
               "--test_examples=64", "--batch_size=32", "--head_epochs=0.5", "--fine_tune_epochs=0.5", "--nogradual",
               f"--output_dir={tmp_path}", env=imagenet_home)  # fmt: skip
    payload = results(tmp_path, "transfer_pruned")
    assert "0.5" in json.dumps(payload)


@pytest.mark.slow
def test_data_free_scripts(tmp_path, tmp_path_factory):
    from tests.export import artifacts

    home = {weights.HOME_ENV: str(tmp_path / "home")}
    tiny = ["--model=mobilenet_v2", "--weights=", "--input_size=32", "--steps=2", "--per_set=2"]
    run_script("data_free.py", *tiny, "--calibration_samples=4", f"--output_dir={tmp_path}", env=home)
    assert len(results(tmp_path, "data_free")["rows"]) == 4
    run_script("data_free_pruned.py", *tiny, "--synthetic_images=4", "--sparsities=0.5", "--epochs=2",
               f"--output_dir={tmp_path}", env=home)  # fmt: skip
    assert len(results(tmp_path, "data_free_pruned")["rows"]) == 3
    run_script("data_free_quickstart.py", f"--keras_model={artifacts.digits_model(tmp_path_factory)}",
               "--calibration_samples=4", "--synthetic_images=4", "--steps=2", "--test_examples=200",
               "--train_examples=256",
               "--distill_epochs=1", f"--output_dir={tmp_path}", env=home)  # fmt: skip
    assert len(results(tmp_path, "data_free_quickstart")["rows"]) == 6
def test_quantizers_script(tmp_path, tmp_path_factory):
    from tests.export import artifacts

    # The quickstart case on the session's digits model (any 32 px classifier runs it).
    model = artifacts.digits_model(tmp_path_factory)
    run_script("quantizers.py", "--cases=quickstart", f"--quickstart_model={model}", "--calibration=12", "--select=8",
               "--test=16", "--runs=1", "--quickstart_min_snr_db=1000", f"--output_dir={tmp_path}")  # fmt: skip
    payload = results(tmp_path, "quantizers")
    (case,) = payload["results"]
    names = [row["name"] for row in case["rows"]]
    assert names[:5] == ["fp32", "converter int8", "litert int8", "litert int16x8", "litert int4_weights"]
    # An unreachable SNR: every doubling step is measured, up to all ops, and the target is reported missed.
    assert not case["mixed"]["met"] and case["mixed"]["promoted"] == len(case["mixed"]["ops"])
    assert all(row["xnnpack_ms"] > 0 and row["builtin_ms"] > 0 for row in case["rows"])
    assert (tmp_path / "quantizers.png").stat().st_size > 0
