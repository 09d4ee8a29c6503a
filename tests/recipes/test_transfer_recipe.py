"""The transfer stage and `include_top: false` models in recipes: validation naming file, stage
and key, the shipped flowers recipe, and a tiny run through the runner where the loss falls."""

import csv
import json
from pathlib import Path

import pytest

from nlighten_tf.keras_io import load_keras
from nlighten_tf.recipes import loader, runner, schema

REPO = Path(__file__).resolve().parents[2]
MODEL = """\
  name: efficientnet_lite0
  options: {{include_top: {include_top}, width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128,
            dropout_rate: 0.0{extra}}}"""


def recipe_dict(*stages, include_top="false", extra=""):
    text = (
        "name: tiny_transfer\nmodel:\n" + MODEL.format(include_top=include_top, extra=extra)
        + "\ndata: {spec: digits, image_size: 32, batch_size: 64}\nstages:\n"
        + "\n".join(f"  - {s}" for s in stages)
    )  # fmt: skip
    return schema.parse_yaml(text, "t.yaml")


def test_shipped_flowers_recipe():
    recipe = loader.load(REPO / "recipes" / "transfer_lite0_flowers.yaml")
    assert recipe.data.spec == "tfds:tf_flowers"
    assert recipe.model.weights == "imagenet" and recipe.model.options["include_top"] is False
    assert [s.type for s in recipe.stages] == ["transfer", "export", "prune", "export"]
    first = recipe.stages[0].config
    assert first.unfreeze_top_blocks == 2 and first.fine_tune_learning_rate < first.head_learning_rate


@pytest.mark.parametrize(
    ("stages", "kwargs", "message"),
    [
        (["transfer: {unfreeze_top_blocks: 12, fine_tune_epochs: 1}"], {},
         "t.yaml: stage 1 (transfer): key 'unfreeze_top_blocks': cannot unfreeze the top 12 blocks: model "),
        (["transfer: {unfreeze_blocks: [block9], fine_tune_epochs: 1}"], {},
         "t.yaml: stage 1 (transfer): key 'unfreeze_blocks': unknown block(s) 'block9'"),
        (["transfer: {fine_tune_epochs: 1}"], {}, "t.yaml: stage 1 (transfer): key 'fine_tune_epochs': the fine-tuning"),
        (["transfer: {unfreeze_top_blocks: 2}"], {}, "t.yaml: stage 1 (transfer): key 'unfreeze_top_blocks': unfrozen"),
        (["transfer: {head_epochs: 0}"], {}, "t.yaml: stage 1 (transfer): key 'head_epochs': must be > 0"),
        (["transfer: {unfreeze_top_blocks: 1, unfreeze_blocks: [top], fine_tune_epochs: 1}"], {},
         "t.yaml: stage 1 (transfer): key 'unfreeze_blocks': give unfreeze_top_blocks or unfreeze_blocks, not both"),
        (["transfer: {optimizer: adamw}"], {}, "t.yaml: stage 1 (transfer): unknown optimizer 'adamw'"),
        (["train: {epochs: 1}", "prune: {epochs: 1}", "transfer: {}"], {}, "t.yaml: stage 3 (transfer): comes after prune"),
        (["transfer: {}"], {"include_top": "1"}, "t.yaml: model: key 'options.include_top': expected true/false"),
        (["transfer: {}"], {"extra": ", features_only: true"},
         "t.yaml: model: key 'options.include_top': false puts a new classification head"),
    ],
)  # fmt: skip
def test_bad_transfer_recipes_name_file_stage_and_key(stages, kwargs, message):
    with pytest.raises(schema.RecipeError) as error:
        schema.from_dict(recipe_dict(*stages, **kwargs), "t.yaml")
    assert str(error.value).startswith(message), str(error.value)


@pytest.mark.slow
def test_tiny_transfer_run_loss_falls(tmp_path):
    """Random-weight tiny Lite0 on digits: the head on the frozen backbone, then every block
    (BatchNorms frozen at their initial statistics, so training and evaluation agree)."""
    recipe = schema.from_dict(recipe_dict(
        "transfer: {head_epochs: 1, head_learning_rate: 3e-3, unfreeze_top_blocks: 9, fine_tune_epochs: 2, "
        "fine_tune_learning_rate: 3e-3}",
    ), "t.yaml")  # fmt: skip
    # 1,024 images (16 steps an epoch): over seeds 0/1/2 and TF_ENABLE_ONEDNN_OPTS=0 the loss
    # ratio was 0.42-0.65 and the accuracy 0.42-0.78; with 512 it was 0.65-0.86 and 0.27-0.55,
    # so the bounds below held or failed by the seed.
    recipe.data.train_limit, recipe.data.eval_limit = 1024, 128
    runner.run(recipe, tmp_path, log=lambda line: None, verbose=0)
    stage = tmp_path / "tiny_transfer" / "01-transfer"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["unfrozen_blocks"] == ["stem", *(f"block{i}" for i in range(1, 8)), "top"]
    with open(stage / "logs" / "history.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 3  # one head epoch, then two fine-tuning epochs
    assert losses[-1] < 0.8 * losses[0], losses
    assert metrics["accuracy"] > 0.3  # chance: 0.1
    saved = load_keras(stage / metrics["model_file"])
    assert saved.layers[-1].name == "head_logits" and all(layer.trainable for layer in saved.layers)
