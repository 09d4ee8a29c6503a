"""Stage types are declared once (nlighten_tf.recipes.stage_types): the schema, overrides,
generated docs and tool flags all come from the declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from absl import flags

from nlighten_tf.optimize.fields import documented
from nlighten_tf.optimize.selection import LayerSelection
from nlighten_tf.recipes import overrides, schema, stage_types

REPO = Path(__file__).resolve().parents[2]
SOURCE = "toy.yaml"


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """A technique config as optimize/ writes them: documented fields, its own value checks."""

    strength: float = documented(0.5, "how hard the toy technique pushes, in (0, 1]")
    style: str = documented("gentle", "how it pushes", choices=("gentle", "firm"))
    selection: LayerSelection = dataclasses.field(default_factory=LayerSelection)

    def __post_init__(self):
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")


def run_toy(stage, ctx, workdir):
    return ("ran", stage.technique(), stage.train_config().learning_rate, workdir)


@pytest.fixture
def toy():
    # Adding a stage type: this one declaration (and its runner above).
    declaration = stage_types.register(stage_types.StageType(
        "toy", "a toy technique", run_toy, technique=ToyConfig, training={"learning_rate": 2e-4}, selection=True,
        own_keys=(stage_types.Key("keep", str, "last", "which model the next stage gets", ("last", "best")),),
        describe=("strength",),
    ))  # fmt: skip
    yield declaration
    stage_types.unregister("toy")


def toy_recipe(**toy):
    return {"name": "t", "model": {"name": "mobilenet_v2"}, "data": {"spec": "digits"},
            "stages": [{"train": {}}, {"toy": toy}, {"export": {"targets": ["fp32"]}}]}  # fmt: skip


def test_a_stage_type_declared_once_is_validated_overridden_run_and_documented(toy):
    recipe = schema.from_dict(toy_recipe(strength=0.3, per_layer={"conv": 0.2}), SOURCE)
    stage = recipe.stages[1]
    assert stage.dirname == "02-toy"
    assert dataclasses.asdict(stage.config) == {
        "policy": "all", "include": None, "exclude": None, "per_layer": {"conv": 0.2}, "epochs": 1.0,
        "learning_rate": 2e-4, "optimizer": "adam", "lr_schedule": "cosine", "label_smoothing": 0.0,
        "strength": 0.3, "style": "gentle", "keep": "last",
    }  # fmt: skip
    ran, technique, learning_rate, workdir = stage.declaration.run(stage, None, "w")
    assert technique == ToyConfig(0.3, "gentle", LayerSelection(per_layer={"conv": 0.2}))
    assert (ran, learning_rate, workdir) == ("ran", 2e-4, "w")
    # A stage that trains counts as a model for export; the resolved recipe reads back identically.
    assert schema.from_dict(recipe.as_dict(), SOURCE).as_dict() == recipe.as_dict()
    again = schema.from_dict(overrides.apply(toy_recipe(), ["stages.toy.strength=0.9"], SOURCE), SOURCE)
    assert again.stages[1].config.strength == 0.9

    def error_of(**keys):
        with pytest.raises(schema.RecipeError) as raised:
            schema.from_dict(toy_recipe(**keys), SOURCE)
        return str(raised.value)

    assert error_of(strength=2) == "toy.yaml: stage 2 (toy): strength must be in (0, 1], got 2.0"
    assert error_of(strenght=1).startswith("toy.yaml: stage 2 (toy): key 'strenght': unknown key; valid keys: policy,")
    assert error_of(strength="x") == "toy.yaml: stage 2 (toy): key 'strength': expected a number, got str 'x'"
    assert error_of(keep="first") == "toy.yaml: stage 2 (toy): keep must be 'last' or 'best', got 'first'"
    raw = toy_recipe()
    raw["stages"][1] = {"toys": {}}
    with pytest.raises(schema.RecipeError, match=r"unknown stage type 'toys'; valid: .*, edgetpu, toy$"):
        schema.from_dict(raw, SOURCE)

    table = stage_types.markdown()
    assert "#### `toy`\n\nA toy technique.\n" in table
    assert "| `strength` | a number | `0.5` | how hard the toy technique pushes, in (0, 1] |" in table
    assert "| `style` | a string | `gentle` | how it pushes; one of `gentle`, `firm` |" in table

    values = flags.FlagValues()
    stage_types.define_flags(toy.keys, ["strength", "style", "learning_rate", "per_layer"], values)
    values(["tool"])
    assert (values.strength, values.style, values.learning_rate, values.per_layer) == (0.5, "gentle", 2e-4, [])
    assert values["style"].parser.enum_values == ["gentle", "firm"]


def test_a_declaration_cannot_name_a_key_twice():
    twice = stage_types.StageType("twice", "x", run_toy, technique=ToyConfig, training={},
                                  own_keys=(stage_types.Key("epochs", float, 1.0, "again"),))  # fmt: skip
    with pytest.raises(TypeError, match="declares keys twice: epochs"):
        stage_types.register(twice)
    assert "twice" not in stage_types.names()


def test_the_readme_key_tables_are_the_declarations():
    readme = (REPO / "recipes" / "README.md").read_text(encoding="utf-8")
    assert stage_types.with_key_tables(readme) == readme, "run python tools/recipe_docs.py"


def test_every_shipped_stage_type_builds_its_technique_config_from_its_defaults():
    for name in stage_types.names():
        declaration = stage_types.get(name)
        config = declaration.config_class()
        if name == "channel_prune":  # no default target: the config says so
            with pytest.raises(ValueError, match="no channel-pruning target"):
                declaration.technique_config(config)
            continue
        technique = declaration.technique_config(config)
        assert (technique is None) == (declaration.technique is None)
        if declaration.trains and name != "lowrank":  # lowrank: 0 epochs = no fine-tuning
            assert declaration.train_config(config).epochs > 0
