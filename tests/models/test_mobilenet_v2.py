import re

import pytest
from tf_keras import layers

from nlighten_tf import models
from nlighten_tf.models import block_table
from nlighten_tf.models.block_table import block_names
from nlighten_tf.models.edgetpu import EDGETPU_BLOCKS
from nlighten_tf.models.efficientnet import EFFICIENTNET_BLOCKS
from nlighten_tf.models.mobilenet_v2 import MOBILENET_V2_BLOCKS
from nlighten_tf.models.naming import LEGACY_MOBILENET_V2_BLOCKS, block_of, from_legacy_name, stage_of
from nlighten_tf.optimize import channel_groups, channel_prune, transfer
from nlighten_tf.optimize.channel_prune import ChannelPruneConfig
from nlighten_tf.optimize.selection import LayerSelection


def test_width_multiplier_scales_channels_but_keeps_1280_head_below_one():
    model = models.build("mobilenet_v2", input_shape=(64, 64, 3), width_multiplier=0.5, num_classes=10)
    assert model.get_layer("stem_conv").filters == 16
    assert model.get_layer("block7a_project_conv").filters == 160
    assert model.get_layer("top_conv").filters == 1280
    wide = models.build("mobilenet_v2", input_shape=(64, 64, 3), width_multiplier=1.4)
    assert wide.get_layer("top_conv").filters == 1792


def test_batchnorm_momentum_is_short_training_safe():
    # Keras' 0.999 leaves moving statistics at their initial values after short trainings.
    model = models.build("mobilenet_v2", input_shape=(64, 64, 3))
    momenta = {layer.momentum for layer in model.layers if layer.name.endswith("_bn")}
    assert momenta == {0.99}


def test_non_positive_width_is_refused():
    with pytest.raises(ValueError, match="width_multiplier"):
        models.build("mobilenet_v2", input_shape=(64, 64, 3), width_multiplier=0)


# --- One builder, uniform block names ------------------------------------------------------

# One variant per family, small and at 32 px (narrow coefficients where the family has them).
FAMILIES = {
    "efficientnet_b0": {"width_coefficient": 0.25, "depth_coefficient": 0.34, "head_filters": 64},
    "efficientnet_lite0": {"width_coefficient": 0.25, "depth_coefficient": 0.34, "head_filters": 64},
    "efficientnet_edgetpu_s": {"width_coefficient": 0.25, "depth_coefficient": 0.34, "head_filters": 64},
    "mobilenet_v2": {"width_multiplier": 0.35},
}
LAYER_NAME = re.compile(r"^(image|stem_\w+|block[1-9][a-z]_\w+|top_\w+|avg_pool|top_dropout|predictions)$")


def small(name, **options):
    return models.build(name, input_shape=(32, 32, 3), num_classes=4, **FAMILIES[name], **options)


def test_every_family_is_built_by_the_one_block_table_builder(monkeypatch):
    tables = []
    build = block_table.build_from_block_table

    def spy(**kwargs):
        tables.append(kwargs["blocks"])
        return build(**kwargs)

    monkeypatch.setattr(block_table, "build_from_block_table", spy)
    for name in FAMILIES:
        small(name)
    assert tables == [EFFICIENTNET_BLOCKS, EFFICIENTNET_BLOCKS, EDGETPU_BLOCKS, MOBILENET_V2_BLOCKS]
    assert {info.family for info in map(models.info, models.names())} == {
        "efficientnet", "efficientnet_lite", "efficientnet_edgetpu", "mobilenet_v2",
    }  # fmt: skip


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_names_its_layers_stem_blockNx_top(name):
    model = small(name)
    bad = [layer.name for layer in model.layers if not LAYER_NAME.match(layer.name)]
    assert not bad, bad
    blocks = list(dict.fromkeys(filter(None, map(block_of, (layer.name for layer in model.layers)))))
    stages = list(dict.fromkeys(stage_of(b + "_") for b in blocks))
    assert stages == [f"block{i}" for i in range(1, len(stages) + 1)]
    for stage in stages:  # letters a, b, c ... within each stage, in graph order
        letters = [b[len(stage):] for b in blocks if stage_of(b + "_") == stage]
        assert letters == [chr(ord("a") + i) for i in range(len(letters))]


def test_mobilenet_v2_blocks_follow_the_paper_table():
    model = models.build("mobilenet_v2", input_shape=(64, 64, 3), num_classes=10)
    blocks = list(dict.fromkeys(filter(None, map(block_of, (layer.name for layer in model.layers)))))
    assert blocks == list(LEGACY_MOBILENET_V2_BLOCKS.values()) == block_names(MOBILENET_V2_BLOCKS)
    assert [len([b for b in blocks if b.startswith(f"block{s}")]) for s in range(1, 8)] == [1, 2, 3, 4, 3, 3, 1]
    assert "block1a_expand_conv" not in {layer.name for layer in model.layers}  # t = 1
    assert model.get_layer("block5c_expand_conv").filters == 96 * 6
    assert model.get_layer("block5c_dwconv").strides == (1, 1) and model.get_layer("block6a_dwconv").strides == (2, 2)
    assert model.get_layer("block5c_project_conv").padding == "valid"  # as it always was here
    assert isinstance(model.get_layer("block5c_add"), layers.Add)
    assert "block6a_add" not in {layer.name for layer in model.layers}  # strided


def test_a_per_stage_key_selects_the_analogous_layers_in_every_family():
    config = ChannelPruneConfig(per_stage={"block6": 0.5, "block4b": 0.75})
    for name in ("mobilenet_v2", "efficientnet_lite0"):
        cgraph = channel_groups.analyze(small(name))
        ratios = channel_prune.explicit_ratios(cgraph, config)
        stage6 = {n for n in cgraph.prunable if n.startswith("block6")}
        assert {"block6a_expand_conv", "block6b_expand_conv"} <= stage6
        assert {n for n, r in ratios.items() if r == 0.5} == stage6, name
        assert {n for n, r in ratios.items() if r == 0.75} == {"block4b_expand_conv"}, name


# --- Old MobileNetV2 names (block0 .. block16) ----------------------------------------------


def test_legacy_names_map_to_the_same_layers():
    assert LEGACY_MOBILENET_V2_BLOCKS["block0"] == "block1a" and LEGACY_MOBILENET_V2_BLOCKS["block16"] == "block7a"
    assert from_legacy_name("block12") == "block5c"
    assert from_legacy_name("block1_project_conv") == "block2a_project_conv"
    assert from_legacy_name("block12a_expand_conv") is None and from_legacy_name("block17") is None
    model = small("mobilenet_v2")
    cgraph = channel_groups.analyze(model)
    # An old recipe's keys select exactly what the new names select.
    old = ChannelPruneConfig(per_stage={"block12": 0.5}, per_layer={"block1_expand_conv": 0.25})
    new = ChannelPruneConfig(per_stage={"block5c": 0.5}, per_layer={"block2a_expand_conv": 0.25})
    assert channel_prune.explicit_ratios(cgraph, old) == channel_prune.explicit_ratios(cgraph, new) == {
        "block5c_expand_conv": 0.5, "block2a_expand_conv": 0.25,
    }  # fmt: skip
    with pytest.raises(ValueError, match="share channel group 'block2a_project_conv'"):
        channel_prune.allocate_channels(model, ChannelPruneConfig(per_layer={"block1_project_conv": 0.5, "block2_project_conv": 0.75}))
    # 'block1' .. 'block7' are stages now, in MobileNetV2 as in every family.
    stage = channel_prune.explicit_ratios(cgraph, ChannelPruneConfig(per_stage={"block3": 0.5}))
    assert set(stage) == {"block3a_expand_conv", "block3a_project_conv", "block3b_expand_conv", "block3c_expand_conv"}
    # Only a MobileNetV2 translates: Lite0 has no 'block12'.
    with pytest.raises(ValueError, match="no prunable channel group in stage 'block12'"):
        channel_prune.explicit_ratios(channel_groups.analyze(small("efficientnet_lite0")), old)


def test_legacy_regexes_and_transfer_blocks_fail_naming_the_key_and_the_new_name():
    model = small("mobilenet_v2")
    with pytest.raises(ValueError, match=r"exclude: layer-name regex '\^block12_' matches only MobileNetV2's old .*"
                                         r"block12 is now block5c"):
        LayerSelection(exclude="^block12_").selected_layers(model)
    with pytest.raises(ValueError, match=r"per_layer: layer-name regex 'block1\[0-6\]'"):
        LayerSelection(per_layer={"block1[0-6]": 0.5}).selected_layers(model)
    with pytest.raises(ValueError, match=r"exclude: layer-name regex 'block16_project'"):
        channel_prune.allocate_channels(model, ChannelPruneConfig(keep_madds=0.5, exclude="block16_project"))
    assert LayerSelection(exclude="^block5c_").selected_layers(model)  # new names are fine
    assert LayerSelection(exclude="^block12_").selected_layers(small("efficientnet_lite0"))  # not a MobileNetV2
    # Transfer unfreezes whole stages: an old block cannot be the same layers; the error names its stage.
    with pytest.raises(ValueError, match=r"unknown block\(s\) 'block12' .* numbering, 'block12' was block5c, now in "
                                         r"stage block5\)"):
        transfer.select_blocks(model, names=["block12"])
