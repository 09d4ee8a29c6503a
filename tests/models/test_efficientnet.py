"""Structure of the EfficientNet family against the TensorFlow reference builders."""

import numpy as np
import pytest
from tf_keras import layers

from nlighten_tf import models
from nlighten_tf.models.block_table import round_filters, round_repeats


def block_names(model, stage):
    return sorted({layer.name[:8] for layer in model.layers if layer.name.startswith(f"block{stage}")})


def test_round_filters_follows_reference_rounding():
    assert round_filters(32, 1.0) == 32
    assert round_filters(32, 1.1) == 32  # 35.2 -> 32 (>= 90%)
    assert round_filters(40, 1.8) == 72  # 72 exactly
    assert round_filters(16, 1.4) == 24  # 22.4 -> 24
    assert round_filters(24, 1.2) == 32  # 28.8 -> 32
    assert round_repeats(3, 1.1) == 4  # ceil


def test_lite_keeps_stem_head_and_first_last_repeats_fixed():
    model = models.build("efficientnet_lite4", input_shape=(64, 64, 3))
    assert model.get_layer("stem_conv").filters == 32
    assert model.get_layer("top_conv").filters == 1280
    assert block_names(model, 1) == ["block1a_"]
    assert block_names(model, 7) == ["block7a_"]
    assert len(block_names(model, 6)) == round_repeats(4, 1.8)
    assert not [layer for layer in model.layers if "se_" in layer.name]
    assert {type(layer) for layer in model.layers} >= {layers.ReLU}
    relus = [layer for layer in model.layers if isinstance(layer, layers.ReLU)]
    assert all(float(r.max_value) == 6.0 for r in relus)


def test_b_models_scale_stem_head_and_use_squeeze_excite_with_swish():
    model = models.build("efficientnet_b4", input_shape=(64, 64, 3))
    assert model.get_layer("stem_conv").filters == round_filters(32, 1.4)
    assert model.get_layer("top_conv").filters == round_filters(1280, 1.4)
    assert len(block_names(model, 7)) == round_repeats(1, 1.8) == 2
    # SE reduces to a quarter of the block's input filters (block2a input 16*1.4 -> 24).
    assert model.get_layer("block2a_se_reduce").filters == int(24 * 0.25)
    assert model.get_layer("stem_act").activation.__name__ == "swish"


def test_edgetpu_fused_stages_and_first_block_without_skip():
    model = models.build("efficientnet_edgetpu_s", input_shape=(64, 64, 3))
    names = {layer.name for layer in model.layers}
    for stage in (1, 2, 3):
        assert not [n for n in names if n.startswith(f"block{stage}") and "dwconv" in n]
    assert "block4a_dwconv" in names
    assert "block1a_add" not in names  # no skip even though 24 -> 24 at stride 1
    expand = model.get_layer("block2a_expand_conv")
    assert expand.kernel_size == (3, 3) and expand.strides == (1, 1)
    assert expand.filters == 24 * 8
    assert model.get_layer("block2a_project_conv").strides == (2, 2)
    assert model.get_layer("block1a_expand_conv").filters == 24 * 4  # declared input filters


def strided_convs(model):
    return [
        layer
        for layer in model.layers
        if isinstance(layer, layers.Conv2D) and layer.strides[0] > 1 and layer.kernel_size[0] > 1
    ]


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v2"])
def test_sparse_ready_is_default_and_pads_symmetrically(name):
    model = models.build(name, input_shape=(64, 64, 3))
    convs = strided_convs(model)
    assert convs, "expected stride-2 convolutions"
    assert all(layer.padding == "valid" for layer in convs)
    for layer in convs:
        pad = model.get_layer(layer.name.replace("_conv", "_pad").replace("_dwconv", "_dw_pad"))
        k = layer.kernel_size[0]
        assert pad.padding == ((k // 2, k // 2), (k // 2, k // 2))


def test_sparse_ready_off_uses_keras_same_padding_with_identical_shapes():
    sparse = models.build("efficientnet_lite0", input_shape=(96, 96, 3), features_only=True)
    default = models.build("efficientnet_lite0", input_shape=(96, 96, 3), features_only=True, sparse_ready=False)
    assert all(layer.padding == "same" for layer in strided_convs(default))
    assert not [layer for layer in default.layers if isinstance(layer, layers.ZeroPadding2D)]
    assert [o.shape.as_list() for o in sparse.outputs] == [o.shape.as_list() for o in default.outputs]


@pytest.mark.parametrize(
    "name, channels",
    [
        ("efficientnet_lite0", [40, 112, 320]),
        ("efficientnet_b0", [40, 112, 320]),
        ("efficientnet_edgetpu_s", [48, 144, 192]),
        ("mobilenet_v2", [32, 96, 320]),
    ],
)
def test_features_only_taps_strides_8_16_32(name, channels):
    model = models.build(name, input_shape=(128, 96, 3), features_only=True)
    shapes = [tuple(o.shape[1:]) for o in model.outputs]
    assert shapes == [(16, 12, channels[0]), (8, 6, channels[1]), (4, 3, channels[2])]
    features = model(np.zeros((1, 128, 96, 3), np.float32))
    assert len(features) == 3


def test_include_top_false_ends_at_head_features():
    model = models.build("efficientnet_lite0", input_shape=(64, 64, 3), include_top=False)
    assert model.output_shape == (None, 2, 2, 1280)


def test_drop_connect_rate_grows_with_depth_and_can_be_disabled():
    model = models.build("efficientnet_lite0", input_shape=(64, 64, 3), drop_connect_rate=0.3)
    rates = [layer.rate for layer in model.layers if layer.name.endswith("_drop")]
    assert rates == sorted(rates) and rates[-1] < 0.3 and rates[0] > 0
    plain = models.build("efficientnet_lite0", input_shape=(64, 64, 3), drop_connect_rate=0.0, dropout_rate=0.0)
    assert not [layer for layer in plain.layers if isinstance(layer, layers.Dropout)]


def test_initial_weights_differ_between_same_shaped_layers():
    model = models.build("efficientnet_lite0", input_shape=(64, 64, 3))
    a = model.get_layer("block6b_expand_conv").kernel.numpy()
    b = model.get_layer("block6c_expand_conv").kernel.numpy()
    assert a.shape == b.shape and not np.allclose(a, b)
