"""`tfds:NAME[:VERSION][/CONFIG]`: any TensorFlow Datasets image-classification builder.

Nothing is downloaded unless the caller asks (`download=True`): the project runs offline,
and a silent multi-gigabyte download is worse than a clear error saying how to prepare data.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from nlighten_tf.data.errors import DataError
from nlighten_tf.data.raw import RawSplit
from nlighten_tf.data.specs import ResolvedSplit, Spec, resolve_split

# Shuffling happens on encoded bytes (tens of kB each), so this bounds memory, not quality.
MAX_SHUFFLE_BUFFER = 10_000


class NotPreparedError(DataError):
    """The builder exists but its data is not in data_dir (and download was not allowed)."""

    def __init__(self, message: str, data_dir: str):
        super().__init__(message)
        self.data_dir = data_dir


def builder(spec: Spec, data_dir: str | None) -> tfds.core.DatasetBuilder:
    """The TFDS builder of `spec` (DataError naming the spec for an unknown name/config/version)."""
    try:
        return tfds.builder(spec.tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(
            f"{spec.text}: TFDS has no data set named {spec.tfds_name!r}; fix: check the name against "
            "https://www.tensorflow.org/datasets/catalog (custom builders: import their module first)"
        ) from None
    except (ValueError, AssertionError) as error:  # unknown config or version
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{spec.text}: {first_line}; fix: check the config/version in the TFDS catalog") from None


def _classification_keys(spec: Spec, info: tfds.core.DatasetInfo) -> tuple[str, str]:
    """(image key, label key): the supervised keys if they are Image + ClassLabel, else the
    only top-level Image and ClassLabel features."""
    features = info.features
    described = ", ".join(f"{k}: {type(v).__name__}" for k, v in features.items()) if features else "none"
    refuse = DataError(
        f"{spec.text} is not an image-classification data set (features: {described}); "
        "the data layer needs one Image feature and one ClassLabel feature; fix: pick an "
        "image-classification builder, e.g. tfds:tf_flowers or tfds:cifar10"
    )
    if not isinstance(features, tfds.features.FeaturesDict):
        raise refuse
    keys = info.supervised_keys
    if (
        isinstance(keys, tuple)
        and len(keys) == 2
        and all(isinstance(k, str) and k in features for k in keys)
        and isinstance(features[keys[0]], tfds.features.Image)
        and isinstance(features[keys[1]], tfds.features.ClassLabel)
    ):
        return keys
    images = [k for k, v in features.items() if isinstance(v, tfds.features.Image)]
    labels = [k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)]
    if len(images) != 1 or len(labels) != 1:
        raise refuse
    return images[0], labels[0]


def read_split(
    dataset_builder: tfds.core.DatasetBuilder,
    spec: Spec,
    split: str,
    *,
    download: bool,
    shuffle_files: bool,
    seed: int | None,
    decoders: dict[str, Any] | None = None,
) -> tuple[tf.data.Dataset, ResolvedSplit]:
    """The examples of `split` (slices and `+` resolved against the builder's split sizes);
    NotPreparedError naming the directory and the fix when the data is not there and
    `download` is off."""
    if not dataset_builder.is_prepared():
        if not download:
            raise NotPreparedError(
                f"{spec.text}: TFDS data for {spec.tfds_name!r} is not prepared in {dataset_builder.data_dir_root}; "
                f"fix: pass data_dir=<directory holding a prepared copy>, run `tfds build {spec.tfds_name} "
                f"--data_dir=DIR` where there is network, or pass download=True",
                data_dir=str(dataset_builder.data_dir_root),
            )
        dataset_builder.download_and_prepare()
    sizes = {name: split_info.num_examples for name, split_info in dataset_builder.info.splits.items()}
    resolved = resolve_split(split, sizes, where=spec.text)
    dataset = dataset_builder.as_dataset(
        split=resolved.text, decoders=decoders, shuffle_files=shuffle_files,
        read_config=tfds.ReadConfig(shuffle_seed=seed),
    )  # fmt: skip
    return dataset, resolved


def open_split(
    spec: Spec,
    split: str,
    *,
    data_dir: str | None,
    download: bool,
    limit: int | None,
    shuffle_files: bool,
    seed: int | None,
) -> RawSplit:
    dataset_builder = builder(spec, data_dir)
    image_key, label_key = _classification_keys(spec, dataset_builder.info)
    image_feature = dataset_builder.info.features[image_key]
    channels = image_feature.shape[-1]
    if channels not in (1, 3) or image_feature.tf_dtype != tf.uint8:
        raise DataError(
            f"{spec.text}: images are {image_feature.tf_dtype.name} with {channels} channels; "
            "the data layer reads uint8 grayscale or RGB images"
        )
    dataset, resolved = read_split(
        dataset_builder, spec, split, download=download, shuffle_files=shuffle_files, seed=seed,
        decoders={image_key: tfds.decode.SkipDecoding()},
    )  # fmt: skip
    elements = dataset.map(lambda example: (example[image_key], example[label_key]))
    num_examples = resolved.num_examples
    if limit is not None:
        elements = elements.take(limit)
        num_examples = min(num_examples, limit)

    def decode(encoded: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return image_feature.decode_example(encoded), tf.cast(label, tf.int64)

    height, width = image_feature.shape[:2]
    return RawSplit(
        elements=elements,
        decode=decode,
        num_examples=num_examples,
        class_names=tuple(dataset_builder.info.features[label_key].names),
        source=f"TFDS {dataset_builder.info.full_name} in {dataset_builder.data_dir_root}",
        split=resolved.text,
        # Variable-size photos get the reference centre crop; fixed-size sets (MNIST, CIFAR)
        # are small, whole-image crops already.
        crop=height is None or width is None,
        shuffle_buffer=min(num_examples, MAX_SHUFFLE_BUFFER),
    )
