import copy

import pytest

from nlighten_tf.recipes import overrides, schema
from nlighten_tf.recipes.schema import RecipeError
from tests.recipes.test_schema import BASE

SOURCE = "recipes/x.yaml"


def resolved(*items):
    return schema.from_dict(overrides.apply(copy.deepcopy(BASE), items, SOURCE), SOURCE)


def test_section_stage_index_and_stage_type_paths():
    recipe = resolved(
        "data.spec=fashion_mnist", "data.train_limit=500", "model.options.width_multiplier=0.5",
        "stages.2.prune.target_sparsity=0.6", "stages.3.number_of_clusters=4", "stages.qat.epochs=0.5",
        "stages.export.targets=[fp32, int8_sparse]", "name=other", "seed=7",
    )
    assert recipe.data.spec == "fashion_mnist" and recipe.data.train_limit == 500
    assert recipe.model.options == {"width_multiplier": 0.5}
    assert recipe.stages[1].config.target_sparsity == 0.6
    assert recipe.stages[2].config.number_of_clusters == 4
    assert recipe.stages[3].config.epochs == 0.5
    assert recipe.stages[4].config.targets == ["fp32", "int8_sparse"]
    assert (recipe.name, recipe.seed) == ("other", 7)


def test_the_file_is_not_modified():
    before = copy.deepcopy(BASE)
    overrides.apply(BASE, ["data.spec=x"], SOURCE)
    assert BASE == before


@pytest.mark.parametrize(
    "item, message",
    [
        ("data.spec", "expected key=value"),
        ("datum.spec=x", "unknown key 'datum'"),
        ("data.specs=x", "unknown key data.specs; valid keys of data:"),
        ("stages.9.epochs=1", "no stage 9: the recipe has stages 1..6"),
        ("stages.2.cluster.epochs=1", "stage 2 is 'prune', not 'cluster'"),
        ("stages.lottery.epochs=1", "the recipe has no 'lottery' stage"),
        ("stages.2.prune.target_sparsty=0.5", "unknown key stages.2.prune.target_sparsty"),
        ("stages.epochs=1", "give a stage number"),
    ],
)
def test_bad_overrides_name_the_override(item, message):
    with pytest.raises(RecipeError) as info:
        overrides.apply(copy.deepcopy(BASE), [item], SOURCE)
    assert info.value.args[0].startswith(f"{SOURCE}: --override {item!r}: ")
    assert message in str(info.value)


def test_ambiguous_stage_type_asks_for_a_number():
    raw = copy.deepcopy(BASE)
    raw["stages"].insert(1, {"train": {}})
    with pytest.raises(RecipeError, match=r"2 'train' stages \(1, 2\); say which by number"):
        overrides.apply(raw, ["stages.train.epochs=2"], SOURCE)


def test_overridden_values_are_validated_like_the_file():
    with pytest.raises(RecipeError, match=r"stage 2 \(prune\): target_sparsity must be in \[0, 1\)"):
        resolved("stages.prune.target_sparsity=2")
