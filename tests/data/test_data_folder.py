"""folder: specs over image trees written from real images (see conftest.py)."""

import os
import shutil

import numpy as np
import pytest

import nlighten_tf.data as data
from nlighten_tf.data import DataError


def _examples(spec: str, split: str, **options) -> tuple[list[tuple[np.ndarray, int]], data.DatasetInfo]:
    dataset, info = data.load_raw(spec, split, **options)
    return [(image, int(label)) for image, label in dataset.as_numpy_iterator()], info


def _matches(image: np.ndarray, candidates: list[np.ndarray | None]) -> bool:
    if image.ndim == 3 and (candidates[0] is None or candidates[0].ndim == 2):
        image = image[..., 0]  # grayscale files decode to three equal channels
    return any(c is not None and c.shape == image.shape and np.array_equal(c, image) for c in candidates)


def test_class_folders_give_labels_that_match_the_images(digit_tree: dict) -> None:
    examples, info = _examples(f"folder:{digit_tree['root']}", "train")
    assert info.class_names == ("0", "1", "2") and info.num_examples == 18 == len(examples)  # labels.json ignored
    assert info.crop is True and info.source == f"image folder {digit_tree['root']}"
    for image, label in examples:
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image[..., 0], image[..., 2])
        assert _matches(image, digit_tree["train"][info.class_names[label]])


def test_val_folder_is_the_validation_split(digit_tree: dict) -> None:
    examples, info = _examples(f"folder:{digit_tree['root']}", "val")
    assert info.split == "validation" and info.num_examples == 6
    for image, label in examples:
        assert _matches(image, digit_tree["val"][info.class_names[label]])
    with pytest.raises(DataError, match=r"split 'test' does not exist .*available splits: train, validation"):
        data.load_raw(f"folder:{digit_tree['root']}", "test")


def test_fraction_slices_are_disjoint_mixed_and_complete(digit_tree: dict) -> None:
    spec = f"folder:{digit_tree['root']}"
    head, _ = _examples(spec, "train[:50%]")
    tail, _ = _examples(spec, "train[50%:]")
    assert len(head) == len(tail) == 9
    keys = [image.tobytes() for image, _ in head + tail]
    assert len(set(keys)) == 18
    assert len({label for _, label in head}) > 1  # a fixed shuffle, not class-by-class order
    again, _ = _examples(spec, "train[:50%]")
    assert [image.tobytes() for image, _ in again] == keys[:9]


def test_photo_tree_with_train_folder_mixed_formats_and_sizes(photo_tree: dict) -> None:
    spec = f"folder:{photo_tree['root']}"
    examples, info = _examples(spec, "train")
    assert info.class_names == ("camera", "cat", "coffee") and info.num_examples == 12
    shapes = {image.shape[:2] for image, _ in examples}
    assert len(shapes) > 3  # variable sizes and aspect ratios
    checked = 0
    for image, label in examples:
        candidates = photo_tree["train"][info.class_names[label]]
        if _matches(image, candidates):
            checked += 1
        else:  # JPEG is lossy: the size must still match a crop of the right class
            assert any(c is None for c in candidates)
    assert checked == 9  # every PNG and BMP decoded exactly into its class

    test, test_info = _examples(spec, "test")
    assert test_info.num_examples == 1 and test_info.class_names[test[0][1]] == "cat"

    dataset, info = data.load(spec, "train", image_size=48, batch_size=5, shuffle=False)
    batches = list(dataset.as_numpy_iterator())
    assert [x.shape for x, _ in batches] == [(5, 48, 48, 3), (5, 48, 48, 3), (2, 48, 48, 3)]
    assert info.crop is True and info.steps_per_epoch == 3


def test_corrupt_files_fail_by_name_by_default(corrupt_tree: dict) -> None:
    with pytest.raises(DataError) as raised:
        data.load(f"folder:{corrupt_tree['root']}", image_size=32)
    message = str(raised.value)
    assert any(message.startswith(f"cannot read image {bad} and 2 more") for bad in corrupt_tree["bad"])
    assert "on_corrupt='skip'" in message and "\n" not in message


def test_skip_policy_leaves_out_and_counts_the_corrupt_files(corrupt_tree: dict) -> None:
    dataset, info = data.load(f"folder:{corrupt_tree['root']}", image_size=32, batch_size=3, on_corrupt="skip")
    assert sorted(info.skipped) == corrupt_tree["bad"]
    assert info.num_examples == corrupt_tree["good"]
    labels = np.concatenate([y for _, y in dataset.as_numpy_iterator()])  # decodes without error
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4


def test_a_limit_counts_readable_images(corrupt_tree: dict) -> None:
    for limit in (1, 5, 8):
        examples, info = _examples(f"folder:{corrupt_tree['root']}", "train", limit=limit, on_corrupt="skip")
        assert info.num_examples == len(examples) == limit
        assert set(info.skipped) <= set(corrupt_tree["bad"])


def test_layout_errors_name_the_folder_and_the_fix(tmp_path, digit_tree: dict) -> None:
    with pytest.raises(DataError, match=f"folder {tmp_path}/missing does not exist"):
        data.load_raw(f"folder:{tmp_path}/missing")

    tree = tmp_path / "tree"
    shutil.copytree(digit_tree["root"], tree)
    (tree / "7").mkdir()
    (tree / "7" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=f"class folder {tree}/7 has no images .*fix: add images or remove the folder"):
        data.load_raw(f"folder:{tree}")
    shutil.rmtree(tree / "7")

    os.rename(tree / "val" / "2", tree / "val" / "zebra")
    with pytest.raises(DataError, match=f"folder {tree}/val has class folder\\(s\\) zebra"):
        data.load_raw(f"folder:{tree}", "val")

    (tree / "train").mkdir()
    with pytest.raises(DataError, match="has a train/ folder and class-like folders beside it"):
        data.load_raw(f"folder:{tree}")

    with pytest.raises(DataError, match=r"on_corrupt must be one of fail, skip"):
        data.load_raw(f"folder:{digit_tree['root']}", on_corrupt="ignore")
