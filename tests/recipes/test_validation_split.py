"""data.validation: every stage figure and choice (keep: best) is made on held-out training
data, never on the test split the exported files are reported on."""

import pytest

from nlighten_tf.recipes import schema, stages

BASE = {
    "name": "v",
    "model": {"name": "efficientnet_lite0", "options": {"width_coefficient": 0.5, "depth_coefficient": 0.34}},
    "stages": [{"train": {"epochs": 1}}],
}


def recipe(**data):
    return schema.from_dict({**BASE, "data": {"spec": "digits", **data}}, "v.yaml")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, ("train[:90%]", "train[90%:]")),  # auto: digits has no validation split: carve 10%
        ({"validation": 0.05}, ("train[:95%]", "train[95%:]")),
        ({"validation": "train[-100:]", "train_split": "train[:-100]"}, ("train[:-100]", "train[-100:]")),
        ({"validation": "none"}, ("train", "test")),
        ({"train_split": "train[:500]"}, ("train[:500]", "test")),  # auto cannot carve a slice
    ],
)
def test_splits(data, expected):
    assert stages.splits(recipe(**data)) == expected


def test_carved_splits_are_disjoint_and_cover_the_training_split():
    from nlighten_tf import data

    train_split, held_out = stages.splits(recipe())
    sizes = [data.load("digits", s, image_size=32, batch_size=1)[1].num_examples for s in (train_split, held_out, "train")]
    assert sizes[0] + sizes[1] == sizes[2] and sizes[1] == pytest.approx(0.1 * sizes[2], abs=1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"validation": 0.55}, "a fraction must be a whole percent in \\(0, 0.5\\], got 0.55"),
        ({"validation": 0.125}, "whole percent"),
        ({"validation": 0.1, "train_split": "train[:85%]"}, "a fraction is carved off a plain train_split"),
        ({"validation": ""}, "validation"),
        ({"validation": True}, "validation"),
    ],
)
def test_bad_validation_values_name_the_key(data, message):
    with pytest.raises(schema.RecipeError, match=message):
        recipe(**data)
