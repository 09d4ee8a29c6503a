"""Recipe validation: one test per rule, each checking the message names file, stage and key."""

import copy

import pytest

from nlighten_tf.recipes import loader, schema
from nlighten_tf.recipes.schema import RecipeError

SOURCE = "recipes/x.yaml"
BASE = {
    "name": "t",
    "model": {"name": "mobilenet_v2", "options": {"width_multiplier": 0.35}},
    "data": {"spec": "digits", "image_size": 32},
    "stages": [
        {"train": {"epochs": 1}},
        {"prune": {"target_sparsity": 0.5}},
        {"cluster": {"number_of_clusters": 8}},
        {"qat": {}},
        {"export": {"targets": ["int8_sparse"]}},
        {"benchmark": {}},
    ],
}


def recipe(**changes):
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    return raw


def with_stages(*stages):
    return recipe(stages=list(stages))


def error_of(raw) -> str:
    with pytest.raises(RecipeError) as info:
        schema.from_dict(raw, SOURCE)
    return str(info.value)


def test_valid_recipe_resolves_defaults_and_numbers_stages_from_one():
    parsed = schema.from_dict(recipe(), SOURCE)
    assert [s.dirname for s in parsed.stages] == [
        "01-train", "02-prune", "03-cluster", "04-qat", "05-export", "06-benchmark"
    ]
    assert parsed.stages[1].config.learning_rate == 5e-4  # the prune stage's fine-tuning default
    assert parsed.data.eval_split == "test"
    # The resolved form reads back to the same recipe.
    assert schema.from_dict(parsed.as_dict(), SOURCE).as_dict() == parsed.as_dict()


def test_yaml_exponent_floats_are_numbers():
    assert schema.parse_yaml("lr: 5e-4\nn: 1e3\ns: abc", "x") == {"lr": 5e-4, "n": 1000.0, "s": "abc"}


def test_unknown_stage_key_names_file_stage_and_valid_keys():
    message = error_of(with_stages({"train": {}}, {"prune": {"target_sparsty": 0.8}}))
    assert message.startswith("recipes/x.yaml: stage 2 (prune): key 'target_sparsty': unknown key; valid keys:")
    assert "target_sparsity" in message


def test_unknown_top_level_and_section_keys():
    assert "key 'stagez': unknown key" in error_of(recipe(stagez=[]))
    assert error_of(recipe(data={"spec": "digits", "imagesize": 32})).startswith(
        "recipes/x.yaml: data: key 'imagesize': unknown key"
    )


def test_unknown_stage_type():
    assert "stage 1: unknown stage type 'finetune'" in error_of(with_stages({"finetune": {}}))


def test_wrong_types():
    message = error_of(with_stages({"train": {"epochs": "two"}}))
    assert message == "recipes/x.yaml: stage 1 (train): key 'epochs': expected a number, got str 'two'"
    assert "key 'targets': expected a list of a string" in error_of(
        with_stages({"train": {}}, {"export": {"targets": "int8"}})
    )
    assert "key 'random_control': expected true/false" in error_of(with_stages({"lottery": {"random_control": 1}}))


def test_impossible_values_come_from_the_technique_configs():
    assert error_of(with_stages({"train": {}}, {"prune": {"target_sparsity": 1.5}})).startswith(
        "recipes/x.yaml: stage 2 (prune): target_sparsity must be in [0, 1)"
    )
    assert "clusters must be an integer >= 2" in error_of(with_stages({"train": {}}, {"cluster": {"number_of_clusters": 1}}))
    assert "stage 1 (train): epochs must be > 0" in error_of(with_stages({"train": {"epochs": 0}}))
    assert "unknown layer policy 'convs'" in error_of(with_stages({"train": {}}, {"prune": {"policy": "convs"}}))
    assert "unknown export target 'int4'" in error_of(with_stages({"train": {}}, {"export": {"targets": ["int4"]}}))


def test_model_and_data_checks():
    assert "model: unknown model 'resnet'" in error_of(recipe(model={"name": "resnet"}))
    assert "key 'options.depth': unknown option" in error_of(recipe(model={"name": "mobilenet_v2", "options": {"depth": 1}}))
    assert "key 'options.num_classes': set by the data's classes" in error_of(
        recipe(model={"name": "mobilenet_v2", "options": {"num_classes": 3}})
    )
    assert "data: key 'image_size'" in error_of(recipe(data={"spec": "digits", "image_size": 16}))
    assert "data: key 'augment'" in error_of(recipe(data={"spec": "digits", "augment": "sharpen"}))


def test_qat_after_pruning_or_clustering_must_preserve_them():
    after_prune = error_of(with_stages({"train": {}}, {"prune": {}}, {"qat": {"scheme": "default"}}))
    assert after_prune.startswith("recipes/x.yaml: stage 3 (qat): key 'scheme': 'default' after pruning would undo it")
    after_cluster = error_of(with_stages({"train": {}}, {"cluster": {}}, {"qat": {"scheme": "pqat"}}))
    assert "'pqat' after clustering would undo it; use auto or cqat or pcqat" in after_cluster
    assert "use auto or pcqat" in error_of(with_stages({"train": {}}, {"prune": {}}, {"cluster": {}}, {"qat": {"scheme": "cqat"}}))


def test_no_training_after_qat():
    message = error_of(with_stages({"train": {}}, {"qat": {}}, {"prune": {}}))
    assert message.startswith("recipes/x.yaml: stage 3 (prune): comes after qat")


def test_no_retraining_after_prune_or_cluster():
    assert "stage 3 (train): comes after prune" in error_of(with_stages({"train": {}}, {"prune": {}}, {"train": {}}))
    assert "stage 3 (prune): pruning after clustering" in error_of(with_stages({"train": {}}, {"cluster": {}}, {"prune": {}}))


def test_export_needs_a_model_and_benchmark_needs_an_export():
    assert "stage 1 (export): export needs a model" in error_of(with_stages({"export": {"targets": ["fp32"]}}))
    # Pretrained weights are a model.
    raw = with_stages({"export": {"targets": ["fp32"]}})
    raw["model"] = {"name": "efficientnet_lite0", "weights": "imagenet"}
    schema.from_dict(raw, SOURCE)
    assert "stage 2 (benchmark): benchmark needs an earlier export" in error_of(with_stages({"train": {}}, {"benchmark": {}}))


def test_edgetpu_stage_needs_a_model_and_checks_its_keys():
    assert "stage 1 (edgetpu): edgetpu needs a model" in error_of(with_stages({"edgetpu": {}}))
    message = error_of(with_stages({"train": {}}, {"edgetpu": {"io_type": "float32"}}))
    assert "stage 2 (edgetpu): key 'io_type': the Edge TPU takes int8 or uint8" in message
    assert "key 'num_segments'" in error_of(with_stages({"train": {}}, {"edgetpu": {"num_segments": 0}}))
    assert "key 'timeout'" in error_of(with_stages({"train": {}}, {"edgetpu": {"timeout": 0}}))
    assert "key 'calibration_samples'" in error_of(with_stages({"train": {}}, {"edgetpu": {"calibration_samples": 0}}))
    # The edgetpu stage exports, so a benchmark may follow it.
    plan = schema.from_dict(with_stages({"train": {}}, {"edgetpu": {"compile": False}}, {"benchmark": {}}), SOURCE)
    assert [s.type for s in plan.stages] == ["train", "edgetpu", "benchmark"]
    assert plan.stages[1].config.compile is False and plan.stages[1].config.io_type == "uint8"


def test_channel_prune_rules():
    assert "stage 1 (channel_prune): channel_prune ranks the filters of a trained model" in error_of(
        with_stages({"channel_prune": {"keep_madds": 0.5}})
    )
    message = error_of(with_stages({"train": {}}, {"channel_prune": {}}))
    assert "stage 2 (channel_prune)" in message and "no channel-pruning target" in message
    assert "keep_madds is a keep ratio and must be in (0, 1]" in error_of(
        with_stages({"train": {}}, {"channel_prune": {"keep_madds": 0}})
    )
    assert "unknown channel criterion 'l3'" in error_of(
        with_stages({"train": {}}, {"channel_prune": {"keep_madds": 0.5, "criterion": "l3"}})
    )
    assert "key 'keep_ratio': unknown key" in error_of(with_stages({"train": {}}, {"channel_prune": {"keep_ratio": 0.5}}))
    message = error_of(with_stages({"train": {}}, {"prune": {}}, {"channel_prune": {"keep_madds": 0.5}}))
    assert "stage 3 (channel_prune): comes after prune" in message
    plan = schema.from_dict(
        with_stages({"train": {}}, {"channel_prune": {"keep_madds": 0.5, "distill": True}}, {"prune": {}}), SOURCE
    )
    config = plan.stages[1].technique()
    assert config.keep_madds == 0.5 and config.distill is not None


def test_distill_needs_one_teacher():
    assert "give exactly one of teacher.name" in error_of(with_stages({"distill": {}}))
    assert "key 'teacher.path': no such file" in error_of(with_stages({"distill": {"teacher": {"path": "/nope.h5"}}}))


def test_stage_entries_must_be_single_key_mappings_and_name_is_required():
    assert "stage 1: each stage is a mapping with one key" in error_of(with_stages({"train": {}, "prune": {}}))
    assert "key 'name': required" in error_of(recipe(name="bad name"))
    assert "key 'stages': required" in error_of(recipe(stages=[]))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        loader.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        loader.load(bad)


def test_export_quantizer_and_mixed_keys():
    parsed = schema.from_dict(with_stages({"train": {}}, {"export": {"targets": ["int8", "mixed"], "quantizer": "litert",
                                                                     "mixed_min_agreement": 0.99}}), SOURCE)  # fmt: skip
    assert parsed.stages[1].config.quantizer == "litert" and parsed.stages[1].config.mixed_min_agreement == 0.99
    assert "stage 2 (export): quantizer converter cannot produce target mixed" in error_of(
        with_stages({"train": {}}, {"export": {"targets": ["mixed"], "quantizer": "converter"}}))  # fmt: skip
    assert "quantizer litert cannot produce target int8_sparse" in error_of(
        with_stages({"train": {}}, {"export": {"targets": ["int8_sparse"], "quantizer": "litert"}}))  # fmt: skip
    assert "quantizer must be one of auto, converter, litert" in error_of(
        with_stages({"train": {}}, {"export": {"targets": ["int8"], "quantizer": "tflite"}}))  # fmt: skip
    assert "mixed promote_to must be one of int16, float" in error_of(
        with_stages({"train": {}}, {"export": {"targets": ["mixed"], "mixed_promote_to": "int4"}}))  # fmt: skip
