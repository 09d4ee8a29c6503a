"""Real images to compare a compressed model with its float original when the model's own data
is not at hand (an ImageNet checkpoint without ImageNet).

No labels are needed: what is measured is agreement with the float model
(`nlighten_tf.fidelity`). The set is built offline from what the project can always
read: scikit-image's bundled photos, each in several crops and mirrored (objects, animals,
people, textures, scenes), scikit-learn's digits and Fashion-MNIST's test images upscaled
(real pixels, not ImageNet's classes), and optionally a folder of the user's own photos.
Crops of one photo are not independent examples: results say how many images came from where.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from nlighten_tf.data.errors import DataError

# scikit-image photos that ship with the package (others need a download); grayscale ones are
# repeated over three channels. Measured 2026-11-30 with scikit-image 0.2x: all load offline.
PHOTOS = (
    "astronaut", "cat", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "page", "clock", "brick",
    "grass", "gravel", "immunohistochemistry", "retina", "hubble_deep_field", "colorwheel", "logo",
)  # fmt: skip
# (side of the square crop as a fraction of the short side, positions along each axis).
CROPS = ((1.0, (0.5,)), (0.75, (0.0, 1.0)), (0.5, (0.0, 0.5, 1.0)))
# Images `photo_crops` makes from each photo (every crop and its mirror image).
CROPS_PER_PHOTO = 2 * sum(len(positions) ** 2 for _, positions in CROPS)
SOURCES = ("photos", "digits", "fashion_mnist")


@dataclasses.dataclass
class ReferenceImages:
    images: list[np.ndarray]  # uint8 (H, W, 3) each, sizes differ
    sources: list[str]  # where each image came from: "photos", "digits", "fashion_mnist", "folder"

    def counts(self) -> dict[str, int]:
        return {source: self.sources.count(source) for source in dict.fromkeys(self.sources)}

    def preprocessed(self, image_size: int, scheme: str) -> np.ndarray:
        """Float32 model inputs (N, image_size, image_size, 3) with the model's normalisation."""
        from nlighten_tf.data.preprocessing import preprocess_for_eval

        return np.stack([preprocess_for_eval(image, image_size, scheme) for image in self.images]).astype(np.float32)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


def photo_crops(mirror: bool = True) -> list[np.ndarray]:
    """Square crops of every bundled scikit-image photo (`CROPS`), and their mirror images."""
    from skimage import data as skimage_data

    crops = []
    for name in PHOTOS:
        photo = _rgb(getattr(skimage_data, name)())
        height, width = photo.shape[:2]
        for fraction, positions in CROPS:
            side = int(round(fraction * min(height, width)))
            for fy in positions:
                for fx in positions:
                    top, left = int(round(fy * (height - side))), int(round(fx * (width - side)))
                    crop = photo[top : top + side, left : left + side]
                    crops.append(crop)
                    if mirror:
                        crops.append(crop[:, ::-1])
    return crops


def _upscaled_set(spec: str, count: int) -> list[np.ndarray]:
    from nlighten_tf.data.pipeline import load_raw

    dataset, _ = load_raw(spec, "test" if spec == "fashion_mnist" else "train", shuffle=True, seed=0, limit=count)
    return [_rgb(image.numpy()) for image, _ in dataset]


def _folder(path: str | Path) -> list[np.ndarray]:
    import tensorflow as tf

    folder = Path(path)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".gif"})
    if not files:
        raise DataError(f"{folder}: no .jpg/.jpeg/.png/.bmp/.gif images in this folder")
    images = []
    for file in files:
        try:
            images.append(_rgb(tf.io.decode_image(file.read_bytes(), channels=3, expand_animations=False).numpy()))
        except tf.errors.InvalidArgumentError:
            raise DataError(f"{file}: not a readable image") from None
    return images


def load(
    sources: tuple[str, ...] = SOURCES, per_set: int = 200, folder: str | Path | None = None
) -> ReferenceImages:
    """The reference images: `sources` among "photos" (all crops), "digits" and "fashion_mnist"
    (`per_set` each, a fixed shuffle), plus every image under `folder`."""
    unknown = set(sources) - set(SOURCES)
    if unknown:
        raise DataError(f"unknown reference image sources {sorted(unknown)}; valid: {', '.join(SOURCES)}")
    images: list[np.ndarray] = []
    names: list[str] = []
    for source in sources:
        found = photo_crops() if source == "photos" else _upscaled_set(source, per_set)
        images += found
        names += [source] * len(found)
    if folder is not None:
        found = _folder(folder)
        images += found
        names += ["folder"] * len(found)
    return ReferenceImages(images, names)
