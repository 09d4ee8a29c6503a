"""Real-image fixtures for the data tests: folder trees of PNG/JPEG/BMP files written from
scikit-learn digits (upscaled) and scikit-image photos."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow)


def _save(path: pathlib.Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 at 0..16 -> 40x40 uint8 by pixel repetition, so the saved PNG is exact.
    images = np.kron(np.round(bunch.images * (255 / 16)), np.ones((5, 5))).astype(np.uint8)
    return images, bunch.target


@pytest.fixture(scope="session")
def digit_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """root/<0|1|2>/*.png (6 each) and root/val/<0|1|2>/*.png (2 each), grayscale PNGs.

    Returns {"root": path, "train": {class: [arrays]}, "val": {class: [arrays]}}."""
    root = tmp_path_factory.mktemp("digit_tree")
    images, targets = _digit_images()
    tree: dict = {"root": str(root), "train": {}, "val": {}}
    for digit in (0, 1, 2):
        picks = images[targets == digit][:8]
        tree["train"][str(digit)] = list(picks[:6])
        tree["val"][str(digit)] = list(picks[6:])
        for i, image in enumerate(picks[:6]):
            _save(root / str(digit) / f"d{digit}_{i}.png", image)
        for i, image in enumerate(picks[6:]):
            _save(root / "val" / str(digit) / f"v{digit}_{i}.png", image)
    # Things a labelling tool leaves behind, which the reader must ignore.
    (root / "0" / "labels.json").write_text("{}")
    (root / ".cache").mkdir()
    return tree


def photo_crops() -> dict[str, list[np.ndarray]]:
    """Three classes of real photos, several crops each, of different sizes and aspect ratios;
    "camera" is grayscale."""
    from skimage import data

    def crops(image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        return [image, image[: h // 2, : w // 2], image[h // 4 :, w // 3 :], image[h // 3 : h // 3 + 90, :120]]

    return {"camera": crops(data.camera()), "cat": crops(data.chelsea()), "coffee": crops(data.coffee())}


@pytest.fixture(scope="session")
def photo_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """root/train/<camera|cat|coffee>/ with PNG, JPEG and BMP files; root/test/cat/ only.

    Returns {"root": path, "train": {class: [arrays exactly as decodable]}}; JPEG-saved
    crops are recorded as None because JPEG is lossy."""
    root = tmp_path_factory.mktemp("photo_tree")
    tree: dict = {"root": str(root), "train": {}}
    for name, images in photo_crops().items():
        tree["train"][name] = []
        for i, image in enumerate(images):
            extension = (".png", ".bmp", ".jpg", ".PNG")[i % 4]
            _save(root / "train" / name / f"{name}{i}{extension}", image)
            tree["train"][name].append(None if extension == ".jpg" else image)
    _save(root / "test" / "cat" / "held_out.png", photo_crops()["cat"][1][::-1])
    return tree


@pytest.fixture
def corrupt_tree(tmp_path: pathlib.Path) -> dict:
    """Two classes of good digit PNGs plus three bad files: text named .png, a truncated PNG
    and an empty .jpg."""
    images, targets = _digit_images()
    for digit in (3, 4):
        for i, image in enumerate(images[targets == digit][:4]):
            _save(tmp_path / str(digit) / f"{i}.png", image)
    (tmp_path / "3" / "notes.png").write_text("this is not an image")
    good = (tmp_path / "4" / "0.png").read_bytes()
    (tmp_path / "4" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "4" / "empty.jpg").write_bytes(b"")
    bad = sorted(str(tmp_path / p) for p in ("3/notes.png", "4/truncated.png", "4/empty.jpg"))
    return {"root": str(tmp_path), "bad": bad, "good": 8}


@pytest.fixture
def no_fashion_mnist(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points the Fashion-MNIST directory at an empty one; returns an empty TFDS data_dir."""
    empty = tmp_path / "no_idx_files"
    empty.mkdir()
    monkeypatch.setenv("NLIGHTEN_TF_FASHION_MNIST_DIR", str(empty))
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    return str(data_dir)

