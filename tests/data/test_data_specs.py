import pytest

from nlighten_tf.data import DataError, parse_spec
from nlighten_tf.data.specs import resolve_split


@pytest.mark.parametrize(
    "text, tfds_name, config, version",
    [
        ("tfds:cifar10", "cifar10", None, None),
        ("tfds:imagenette/320px-v2", "imagenette/320px-v2", "320px-v2", None),
        ("tfds:mnist:3.0.1", "mnist:3.0.1", None, "3.0.1"),
        ("tfds:imagenette:1.0.0/full-size-v2", "imagenette/full-size-v2:1.0.0", "full-size-v2", "1.0.0"),
        ("tfds:imagenette/160px:1.*.*", "imagenette/160px:1.*.*", "160px", "1.*.*"),
    ],
)
def test_tfds_specs_become_tfds_names(text: str, tfds_name: str, config: str | None, version: str | None) -> None:
    spec = parse_spec(text)
    assert (spec.kind, spec.tfds_name, spec.config, spec.version) == ("tfds", tfds_name, config, version)


def test_other_spec_forms(tmp_path) -> None:
    assert parse_spec("digits").kind == "digits"
    assert parse_spec(" fashion_mnist ").kind == "fashion_mnist"
    spec = parse_spec(f"folder:{tmp_path}/a:b")  # everything after "folder:" is the path
    assert spec.kind == "folder" and spec.path == f"{tmp_path}/a:b"


@pytest.mark.parametrize("text", ["", "mnist", "tfds:", "tfds:Bad Name", "tfds:a:1.0.0/b:1.0.0", "folder:", "s3:x"])
def test_bad_specs_say_which_forms_exist(text: str) -> None:
    with pytest.raises(DataError, match="tfds:|folder:"):
        parse_spec(text)


SIZES = {"train": 1000, "validation": 200, "test": 50}


def test_slicing_follows_tfds_grammar() -> None:
    assert resolve_split("train[:90%]", SIZES, "x").ranges == (("train", 0, 900),)
    assert resolve_split("train[90%:]", SIZES, "x").ranges == (("train", 900, 1000),)
    both = resolve_split("train[10:20]+test", SIZES, "x")
    assert both.ranges == (("train", 10, 20), ("test", 0, 50)) and both.num_examples == 60
    assert resolve_split("train[-10:]", SIZES, "x").ranges == (("train", 990, 1000),)


def test_val_alias_resolves_to_the_split_the_source_has() -> None:
    assert resolve_split("val[:50%]", SIZES, "x").text == "validation[:50%]"
    assert resolve_split("validation", {"train": 5, "val": 3}, "x").text == "val"


def test_unknown_split_names_the_available_ones() -> None:
    with pytest.raises(DataError, match=r"split 'validation' does not exist in digits; available splits: train, test"):
        resolve_split("validation", {"train": 10, "test": 5}, "digits")


@pytest.mark.parametrize("split", ["train[:2000]", "train[1:2:3]", "train[", "train[50%:50%]"])
def test_bad_slices_are_refused(split: str) -> None:
    with pytest.raises(DataError, match=r"train"):
        resolve_split(split, SIZES, "x")
