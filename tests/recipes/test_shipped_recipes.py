"""Every shipped recipe validates as is (the long ones cannot run in CI; `make demo` runs the
quickstart for real, and tests/tools/test_optimize_tool.py dry-runs it through the tool)."""

from pathlib import Path

import pytest

from nlighten_tf.recipes import loader, schema

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
SHIPPED = {
    "quickstart", "efficientnet_lite0_pcqat", "mobilenet_v2_xnnpack_sparse", "lottery_ticket",
    "distill_b0_to_lite0", "seed_study_mobilenet_v2", "transfer_lite0_flowers", "efficientdet_lite0_prune_qat",
    "autocompress_quickstart",
}  # fmt: skip


def test_all_recipes_are_shipped():
    assert {p.stem for p in RECIPES} >= SHIPPED


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_its_name_is_its_file_name(path):
    recipe = loader.load(path)
    assert recipe.name == path.stem
    # The resolved form (what resolved_recipe.yaml holds) validates to the same recipe.
    again = schema.from_dict(schema.parse_yaml(schema.dump_yaml(recipe.as_dict()), "resolved"), "resolved")
    assert again.as_dict() == recipe.as_dict()


def test_quickstart_is_the_documented_main_job():
    recipe = loader.load(RECIPES[0].parent / "quickstart.yaml")
    assert recipe.data.spec == "fashion_mnist" and recipe.model.name == "efficientnet_lite0"
    assert [s.type for s in recipe.stages] == ["train", "export", "channel_prune", "prune", "cluster", "qat", "export", "benchmark"]
    assert recipe.stages[-2].config.targets == ["int8_sparse", "int8_sparse_float_io"]
