"""`folder:PATH`: one sub-folder per class, the layout labelling tools export.

Accepted layouts (class names are the sub-folder names, sorted):

    PATH/<class>/<image>            training images; optional PATH/val|validation|test/<class>/<image>
    PATH/train/<class>/<image>      the same with an explicit train folder

Without a validation folder, hold out a fraction with split slicing: `train[:90%]` and
`train[90%:]`. Files are listed recursively inside each class folder; .jpg/.jpeg/.png/.bmp
are read (any case), hidden files and other extensions (label sidecars, notes) are ignored.
Each split's files are put in a fixed pseudo-random order (independent of the shuffle seed)
so that slices mix classes and two disjoint slices stay disjoint across runs.

Every file a split reads is decoded once when the split is opened, with TensorFlow's own
decoder, so that a corrupt file is reported by name (or skipped and counted) instead of
failing mid-epoch with an anonymous decode error.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from nlighten_tf.data.errors import DataError
from nlighten_tf.data.raw import RawSplit
from nlighten_tf.data.specs import Spec, resolve_split

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
# Folder name -> split name; anything else at the top level is a class.
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
ORDER_SEED = 0
ON_CORRUPT = ("fail", "skip")

# (path, size, mtime_ns) of files already decoded successfully in this process, so that
# opening the same split again (e.g. calibration after training) does not decode twice.
_KNOWN_GOOD: set[tuple[str, int, int]] = set()


def _visible_dirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _images_under(path: str) -> list[str]:
    found = []
    for parent, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [
            os.path.join(parent, f)
            for f in files
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
        ]
    return sorted(found)


def _layout(root: str) -> tuple[list[str], dict[str, str]]:
    """(class names, {split name: folder holding that split's class folders})."""
    if not os.path.isdir(root):
        raise DataError(
            f"folder {root} does not exist or is not a directory; fix: point folder: at a directory "
            "laid out as <root>/<class>/<image>"
        )
    top = _visible_dirs(root)
    split_dirs = {name: os.path.join(root, name) for name in top if name in SPLIT_FOLDERS}
    if "val" in split_dirs and "validation" in split_dirs:
        raise DataError(f"folder {root} has both val/ and validation/; fix: merge them into one")
    others = [name for name in top if name not in SPLIT_FOLDERS]
    if "train" in split_dirs and others:
        raise DataError(
            f"folder {root} has a train/ folder and class-like folders beside it ({', '.join(others[:5])}); "
            "fix: move those into train/ (or remove train/ and keep classes at the top level)"
        )
    train_dir = split_dirs.pop("train", root)
    classes = _visible_dirs(train_dir) if train_dir != root else others
    if not classes:
        raise DataError(f"folder {train_dir} has no class sub-folders; fix: put images in {train_dir}/<class name>/")
    splits = {"train": train_dir}
    splits.update({SPLIT_FOLDERS[name]: path for name, path in split_dirs.items()})
    return classes, splits


def _list_split(split_dir: str, classes: list[str], is_train: bool) -> list[tuple[str, int]]:
    """(path, label) of every image; other splits may lack classes but not add any."""
    present = _visible_dirs(split_dir)
    if not is_train:
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise DataError(
                f"folder {split_dir} has class folder(s) {', '.join(unknown)} that the training classes "
                f"lack ({', '.join(classes)}); fix: rename or remove them, or add them to the training data"
            )
    examples = []
    for label, name in enumerate(classes):
        if name not in present and not is_train:
            continue
        images = _images_under(os.path.join(split_dir, name))
        if not images:
            raise DataError(
                f"class folder {os.path.join(split_dir, name)} has no images ({'/'.join(IMAGE_EXTENSIONS)}); "
                "fix: add images or remove the folder"
            )
        examples += [(path, label) for path in images]
    return examples


def decode_file(path: tf.Tensor) -> tf.Tensor:
    # channels=3 makes grayscale, palette and RGBA files RGB, so every class agrees on shape.
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _decodable(paths: list[str]) -> np.ndarray:
    """Whether each file decodes, checked in parallel with the same decoder the pipeline uses."""
    keys = []
    for path in paths:
        try:
            stat = os.stat(path)
            keys.append((path, stat.st_size, stat.st_mtime_ns))
        except OSError:
            keys.append(None)
    ok = np.array([key in _KNOWN_GOOD for key in keys])
    todo = [i for i, key in enumerate(keys) if key is not None and not ok[i]]
    if todo:
        checks = tf.data.Dataset.from_tensor_slices(([paths[i] for i in todo], todo)).map(
            lambda path, index: (index, tf.shape(decode_file(path))),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False,
        )
        # ignore_errors drops the elements whose decode failed; the missing indices are the culprits.
        for index, _ in checks.ignore_errors().as_numpy_iterator():
            ok[index] = True
            _KNOWN_GOOD.add(keys[index])
    return ok


def _readable(
    candidates: list[tuple[str, int]], limit: int | None, on_corrupt: str
) -> tuple[list[tuple[str, int]], list[str]]:
    """The first `limit` decodable examples (all when None) and the unreadable files met on
    the way; decodes only as far as needed, so a limit keeps opening a large folder cheap."""
    examples: list[tuple[str, int]] = []
    bad: list[str] = []
    position = 0
    while position < len(candidates) and (limit is None or len(examples) < limit):
        chunk = candidates[position : position + (len(candidates) if limit is None else limit - len(examples))]
        position += len(chunk)
        ok = _decodable([path for path, _ in chunk])
        examples += [ex for ex, good in zip(chunk, ok, strict=True) if good]
        bad += [path for (path, _), good in zip(chunk, ok, strict=True) if not good]
        if bad and on_corrupt == "fail":
            more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
            raise DataError(
                f"cannot read image {bad[0]}{more} (corrupt, unreadable, or not a JPEG/PNG/BMP); "
                "fix: replace or delete the file(s), or pass on_corrupt='skip' to leave them out"
            )
    return examples, bad


def open_split(spec: Spec, split: str, *, on_corrupt: str, limit: int | None) -> RawSplit:
    root = spec.path
    classes, split_dirs = _layout(root)
    listings = {}
    for name, split_dir in split_dirs.items():
        examples = _list_split(split_dir, classes, is_train=name == "train")
        order = np.random.default_rng(ORDER_SEED).permutation(len(examples))
        listings[name] = [examples[i] for i in order]
    sizes = {name: len(examples) for name, examples in listings.items()}
    resolved = resolve_split(split, sizes, where=spec.text)
    candidates = [ex for name, start, stop in resolved.ranges for ex in listings[name][start:stop]]
    examples, bad = _readable(candidates, limit, on_corrupt)
    if not examples:
        raise DataError(f"split {split!r} of {spec.text} has no readable images; fix: check the files")
    elements = tf.data.Dataset.from_tensor_slices(
        ([path for path, _ in examples], np.array([label for _, label in examples], np.int64))
    )
    return RawSplit(
        elements=elements,
        decode=lambda path, label: (decode_file(path), label),
        num_examples=len(examples),
        class_names=tuple(classes),
        source=f"image folder {root}",
        split=resolved.text,
        crop=True,  # photos of any size: the reference centre crop for evaluation
        shuffle_buffer=len(examples),  # shuffling file names is cheap
        skipped=tuple(bad),
    )

