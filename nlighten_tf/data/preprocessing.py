"""Input normalisation schemes and the evaluation resize/centre-crop.

One home for how pixels become model inputs: training, int8 calibration and `.tflite`
evaluation all call these functions so that they see identical inputs. `eval_transform` is
the single raw-uint8-image -> model-input function; `load` (without augmentation),
`representative_dataset` and `preprocess_for_eval` (for the `.tflite` evaluator) all use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from nlighten_tf.data.errors import DataError

# (mean, std) per scheme, applied as (x - mean) / std to float pixels in [0, 255].
SCHEMES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # EfficientNet-Lite / EdgeTPU reference builders: (x - 127) / 128.
    "lite": ((127.0,) * 3, (128.0,) * 3),
    # EfficientNet-B reference (and torchvision): ImageNet channel statistics.
    "imagenet": ((0.485 * 255, 0.456 * 255, 0.406 * 255), (0.229 * 255, 0.224 * 255, 0.225 * 255)),
    # MobileNetV2 (slim / Keras applications): scale to [-1, 1].
    "mobilenet": ((127.5,) * 3, (127.5,) * 3),
    # Plain [0, 1] scaling.
    "unit": ((0.0,) * 3, (255.0,) * 3),
}

# Used when neither a scheme nor a model is named: the Lite/EdgeTPU families are the
# project's deployment targets.
DEFAULT_SCHEME = "lite"

# The networks downsample by 32; smaller inputs collapse to an empty feature map.
MIN_IMAGE_SIZE = 32

# The reference EfficientNet evaluation crop: image_size / (image_size + 32) of the shorter
# side, i.e. 87.5% at 224.
CROP_PADDING = 32


def mean_std(scheme: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    try:
        return SCHEMES[scheme]
    except KeyError:
        raise DataError(
            f"unknown preprocessing {scheme!r}; valid: {', '.join(SCHEMES)} (or pass model=<registry name>)"
        ) from None


def normalize(images: tf.Tensor, scheme: str) -> tf.Tensor:
    """Maps [0, 255] pixels (any numeric dtype, ..., 3 channels) to the model's float32 input."""
    mean, std = mean_std(scheme)
    images = tf.cast(images, tf.float32)
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def center_crop_and_resize(image: tf.Tensor, size: int, crop_padding: int = CROP_PADDING) -> tf.Tensor:
    """Reference evaluation transform: central square crop of size/(size+crop_padding) of the
    shorter side, resized (bilinear) to size x size. Returns float32 pixels in [0, 255].

    Works on one image (H, W, C) or a batch of equally sized images (N, H, W, C)."""
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
    crop = tf.cast(
        tf.cast(size, tf.float32) / float(size + crop_padding) * tf.cast(tf.minimum(height, width), tf.float32),
        tf.int32,
    )
    top = (height - crop + 1) // 2
    left = (width - crop + 1) // 2
    image = image[..., top : top + crop, left : left + crop, :]
    return tf.image.resize(tf.cast(image, tf.float32), (size, size), method="bilinear")


def check_image_size(image_size: int) -> int:
    if int(image_size) != image_size or image_size < MIN_IMAGE_SIZE:
        raise DataError(
            f"image_size {image_size!r} is below the minimum {MIN_IMAGE_SIZE} (the models downsample "
            f"by 32); use an integer image_size >= {MIN_IMAGE_SIZE}"
        )
    return int(image_size)


def check_batch_size(batch_size: int) -> int:
    if int(batch_size) != batch_size or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def resolve_scheme(preprocessing: str | None = None, model: str | None = None) -> str:
    """The normalisation scheme: `preprocessing` if given (an explicit override), else the
    scheme the model registry records for `model`, else DEFAULT_SCHEME."""
    if preprocessing is not None:
        mean_std(preprocessing)
        return preprocessing
    if model is None:
        return DEFAULT_SCHEME
    # Imported here so that loading data does not build the model families.
    from nlighten_tf.models import registry

    try:
        return registry.info(model).preprocessing
    except ValueError as error:
        raise DataError(f"{error}; fix: pass a registered model name or preprocessing=<scheme>") from None


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """(..., H, W, 1 or 3) -> (..., H, W, 3); the channel count must be known statically."""
    channels = image.shape[-1]
    if channels == 3:
        return image
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    raise DataError(f"images must have 1 or 3 channels, got shape {image.shape}; convert them to RGB or grayscale")


def resize(image: tf.Tensor, image_size: int, crop: bool) -> tf.Tensor:
    """Float32 [0, 255] pixels at image_size x image_size: the reference centre crop when
    `crop`, else a plain (aspect-distorting) resize of the whole image, which is what tiny
    fixed-size images such as 28x28 Fashion-MNIST need."""
    if crop:
        return center_crop_and_resize(image, image_size)
    return tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method="bilinear")


def eval_transform(image: tf.Tensor, image_size: int, scheme: str, crop: bool) -> tf.Tensor:
    """Raw [0, 255] image(s) (H, W, C) or (N, H, W, C), C in {1, 3} -> float32 model input."""
    return normalize(resize(to_rgb(image), image_size, crop), scheme)


def preprocess_for_eval(image: Any, image_size: int, scheme: str = DEFAULT_SCHEME, crop: bool = False) -> Any:
    """`eval_transform` for callers outside tf.data, e.g. the `.tflite` evaluator.

    Accepts a numpy array or a tensor: (H, W) grayscale, (H, W, C) or a batch (N, H, W, C),
    C in {1, 3}, pixels in [0, 255] (uint8 or float). Returns float32 of shape
    (image_size, image_size, 3) or (N, image_size, image_size, 3), numpy in -> numpy out.
    """
    check_image_size(image_size)
    mean_std(scheme)
    as_numpy = not tf.is_tensor(image)
    tensor = tf.convert_to_tensor(np.asarray(image) if as_numpy else image)
    if tensor.shape.rank == 2:
        tensor = tensor[..., tf.newaxis]
    if tensor.shape.rank not in (3, 4):
        raise DataError(
            f"preprocess_for_eval expects (H, W), (H, W, C) or (N, H, W, C) images, got shape {tensor.shape}"
        )
    out = eval_transform(tensor, image_size, scheme, crop)
    return out.numpy() if as_numpy else out
