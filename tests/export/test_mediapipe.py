"""MediaPipe Tasks, the client an Android app uses, on our exports: it must load every file
docs/deployment.md says it loads, read labels and normalisation from our metadata, and compute
what our own interpreter (`litert.runtime.load`, XNNPACK as MediaPipe's CPU path) computes on the
same pixels. Real images: scikit-learn's handwritten digits (the classifier's domain) and
scikit-image's photos (resize/crop behaviour, detector).

Skipped with the reason where `mediapipe` is not installed (it is not in setup.cfg: see
docs/deployment.md, "Android apps: MediaPipe Tasks").
"""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from nlighten_tf.bench import clients
from nlighten_tf.export import metadata, targets
from nlighten_tf.litert import runtime
from nlighten_tf.recipes import loader
from tests.tools_runner import REPO, run_tool

mp = pytest.importorskip(
    "mediapipe",
    reason="mediapipe is not installed: `make mediapipe-packages` or `pip install mediapipe==1.2.2` "
    "(kept out of setup.cfg: its absl-py~=2.3 pin conflicts with tensorflow-model-optimization's absl-py~=1.2)",
)
from mediapipe.tasks.python import BaseOptions, vision  # noqa: E402
from mediapipe.tasks.python.components.containers import rect as mp_rect  # noqa: E402

# Every target docs/deployment.md says MediaPipe loads, and the two it says it refuses.
LOADS = ("fp32", "fp32_sparse", "float16", "dynamic_int8", "int8_float_io", "int8_sparse_float_io", "edgetpu")
REFUSED = ("int8", "int8_sparse")
SIZE = 32  # the digits model's input (tests/export/artifacts.py)
DIGITS = 40


def rgb(image: np.ndarray) -> "mp.Image":
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image, np.uint8))


@contextlib.contextmanager
def classifier(path: Path):
    # A context manager: without close(), ImageClassifier.__del__ prints a TypeError at exit.
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    with vision.ImageClassifier.create_from_options(options) as task:
        yield task


def mp_scores(result) -> tuple[np.ndarray, list[str]]:
    """MediaPipe's scores in class-index order, and its category names in the same order."""
    categories = sorted(result.classifications[0].categories, key=lambda c: c.index)
    return np.array([c.score for c in categories]), [c.category_name for c in categories]


# A task that failed to start, once garbage-collected, can deadlock the process in its __del__ ->
# close() (measured: pytest hung in a later test). Failures are therefore provoked in a child.
_FAILURE_PROBE = r"""
import json, os, sys
import numpy as np
import mediapipe as mp
from mediapipe.tasks.python import BaseOptions, vision
error = None
try:
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=sys.argv[1]))
    task = vision.ImageClassifier.create_from_options(options)
    if len(sys.argv) > 2:  # a grayscale image to classify
        task.classify(mp.Image(image_format=mp.ImageFormat.GRAY8, data=np.ascontiguousarray(np.load(sys.argv[2]))))
except Exception as exception:
    error = f"{type(exception).__name__}: {' '.join(str(exception).split())}"
print(json.dumps({"error": error}), flush=True)
os._exit(0)
"""


def mediapipe_failure(path: Path, gray: Path | None = None) -> str | None:
    """The error MediaPipe's ImageClassifier raises creating a task for `path` (and classifying
    the grayscale image saved in `gray`), or None, from a child process."""
    args = [sys.executable, "-c", _FAILURE_PROBE, str(path)] + ([str(gray)] if gray else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["error"]


class Ours:
    """Our interpreter run of a file on [0, 255] pixels, normalised with the file's metadata."""

    def __init__(self, path: Path):
        info = metadata.read(path.read_bytes())
        self.mean, self.std, self.labels = np.array(info["mean"]), np.array(info["std"]), info["labels"]
        self.loaded = runtime.load(path, xnnpack=True)

    def scores(self, pixels: np.ndarray) -> np.ndarray:
        return self.loaded.predict(((np.asarray(pixels, np.float32) - self.mean) / self.std)[None])[0]


def mediapipe_resize(image: np.ndarray, size: int) -> np.ndarray:
    """What MediaPipe 1.2.2's CPU path makes of an image of another size, measured with an
    identity model (its scores are the pixels it was fed): the whole image squashed with
    bilinear sampling at top-left-aligned coordinates (TF1's `resize_bilinear` without half-pixel
    centres, no antialiasing), rounded to integers."""
    resized = tf.compat.v1.image.resize_bilinear(
        np.asarray(image, np.float32)[None], (size, size), half_pixel_centers=False
    )
    return np.floor(resized[0].numpy() + 0.5)


@pytest.fixture(scope="module")
def digits():
    """The first test digits as the uint8 RGB pixels an app would hand over, and their labels."""
    from tests.export import artifacts

    images, labels = artifacts.digits_arrays("test", limit=DIGITS)
    pixels = np.clip(np.round(images * 128.0 + 127.0), 0, 255).astype(np.uint8)  # undo the lite scheme
    return pixels, labels


@pytest.mark.parametrize("target", LOADS)
def test_mediapipe_classifies_like_our_interpreter(export_target, digits, target):
    path = export_target(target)
    verdict = clients.mediapipe(path)
    assert verdict.loads and verdict.task == "ImageClassifier", verdict
    assert targets.mediapipe_loads(target)
    pixels, labels = digits
    ours = Ours(path)
    agree, correct, worst = 0, 0, 0.0
    with classifier(path) as task:
        for image, label in zip(pixels, labels, strict=True):
            theirs, names = mp_scores(task.classify(rgb(image)))
            assert names == ours.labels  # category names are our packed labels.txt, in order
            mine = ours.scores(image)
            agree += int(np.argmax(theirs) == np.argmax(mine))
            correct += int(np.argmax(theirs) == label)
            worst = max(worst, float(np.max(np.abs(theirs - mine))))
    print(f"{target}: top-1 agreement {agree}/{len(labels)}, MediaPipe accuracy {correct}/{len(labels)}, "
          f"max |score difference| {worst:.2e}")  # fmt: skip
    # Same pixels, same normalisation (from our metadata), same XNNPACK kernels: same numbers.
    assert agree == len(labels) and worst <= 1e-4
    assert correct >= 0.8 * len(labels)  # a real digit classifier, not noise


@pytest.mark.parametrize("target", REFUSED)
def test_int8_input_is_refused_as_the_verdict_says(export_target, target):
    path = export_target(target)
    verdict = clients.mediapipe(path)
    assert not verdict.loads and "int8 input" in verdict.reason and "_float_io" in verdict.reason
    assert not targets.mediapipe_loads(target)
    error = mediapipe_failure(path)
    assert error.startswith("ValueError: Type mismatch for input tensor serving_default_image:0. "
                            "Requested one of these types: uint8/float32, got INT8"), error  # fmt: skip


def test_float_input_without_metadata_is_refused_as_the_verdict_says(digits_keras, tmp_path):
    from nlighten_tf.export import tflite

    path = tmp_path / "bare.tflite"
    path.write_bytes(tflite.convert(digits_keras, "fp32")[0])
    verdict = clients.mediapipe(path)
    assert not verdict.loads and "NormalizationOptions" in verdict.reason
    error = mediapipe_failure(path)
    assert error.startswith("FileNotFoundError: Input tensor has type float32: it requires specifying "
                            "NormalizationOptions metadata"), error  # (1.2.2 raises it as FileNotFoundError)


def test_sparse_int8_fully_connected_is_refused_as_the_verdict_says(digits_keras, tmp_path, monkeypatch):
    """Without `densify_int8_fully_connected` the float-I/O sparse file keeps its Dense weights
    sparse, and MediaPipe (XNNPACK, no fallback) cannot load it: why the export stores them dense."""
    from nlighten_tf import data
    from nlighten_tf.export import tflite

    monkeypatch.setattr(tflite, "densify_int8_fully_connected", lambda flatbuffer: (flatbuffer, []))
    calibration = data.representative_dataset("digits", 32, image_size=SIZE, preprocessing="lite")
    path = tmp_path / "sparse_fc.tflite"
    tflite.export(digits_keras, path, "int8_sparse_float_io", calibration,
                  classifier=metadata.from_scheme([str(d) for d in range(10)], "lite", (SIZE, SIZE)))  # fmt: skip
    verdict = clients.mediapipe(path)
    assert not verdict.loads and "FULLY_CONNECTED" in verdict.reason
    error = mediapipe_failure(path)
    assert error is not None and "interpreter->AllocateTensors() == kTfLiteOk" in error, error


PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")  # 451x300, 400x600, 427x640, 512x512


def test_mediapipe_squashes_the_whole_photo_and_an_app_crop_gives_our_numbers(export_target):
    """Photos at another size: MediaPipe resizes the whole image (no centre crop), exactly as
    `mediapipe_resize` says; a region of interest is the app's crop; an image the app already
    brought to the input size (our evaluation transform) reaches the model untouched."""
    from nlighten_tf.data.preprocessing import center_crop_and_resize

    path = export_target("fp32")
    ours = Ours(path)
    worst = {"whole": 0.0, "roi": 0.0, "app crop": 0.0}
    with classifier(path) as task:
        for name in PHOTOS:
            photo = getattr(skdata, name)()[..., :3]
            height, width = photo.shape[:2]
            squashed = mediapipe_resize(photo, SIZE)
            theirs, _ = mp_scores(task.classify(rgb(photo)))
            mine = ours.scores(squashed)
            assert np.argmax(theirs) == np.argmax(mine), name
            worst["whole"] = max(worst["whole"], float(np.max(np.abs(theirs - mine))))

            side = min(height, width)
            top, left = (height - side) // 2, (width - side) // 2
            roi = mp_rect.RectF(left=left / width, top=top / height, right=(left + side) / width,
                                bottom=(top + side) / height)  # fmt: skip
            cropped, _ = mp_scores(task.classify(rgb(photo), vision.ImageProcessingOptions(region_of_interest=roi)))
            mine = ours.scores(mediapipe_resize(photo[top : top + side, left : left + side], SIZE))
            assert np.argmax(cropped) == np.argmax(mine), name
            worst["roi"] = max(worst["roi"], float(np.max(np.abs(cropped - mine))))

            app = np.round(center_crop_and_resize(photo, SIZE).numpy()).astype(np.uint8)
            theirs, _ = mp_scores(task.classify(rgb(app)))
            mine = ours.scores(app)
            assert np.argmax(theirs) == np.argmax(mine), name
            worst["app crop"] = max(worst["app crop"], float(np.max(np.abs(theirs - mine))))
            if width != height:  # the squashed image is not what the evaluation transform feeds
                assert np.abs(squashed - app).mean() > 5.0, name
    print("max |score difference| per path:", worst)
    assert max(worst.values()) <= 1e-4, worst


def test_grayscale_input_fails_and_rgb_works(export_target, tmp_path):
    path = export_target("fp32")
    gray = np.round(tf.image.resize(skdata.camera()[..., None].astype(np.float32), (SIZE, SIZE)).numpy())
    gray = gray.astype(np.uint8)
    np.save(tmp_path / "gray.npy", gray[..., 0])
    error = mediapipe_failure(path, tmp_path / "gray.npy")
    # MediaPipe builds a 1-channel tensor for the 3-channel model input.
    assert error is not None and "TfLiteTensor and Tensor sizes do not match" in error, error
    assert "MP Tensor dims: [1, 32, 32, 1]" in error, error
    with classifier(path) as task:
        theirs, _ = mp_scores(task.classify(rgb(np.repeat(gray, 3, axis=-1))))
    assert np.argmax(theirs) == np.argmax(Ours(path).scores(np.repeat(gray, 3, axis=-1)))


# --- Detector -------------------------------------------------------------------------------

DETECTOR_LABELS = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    """The tiny EfficientDet-Lite0 of the detection tests, untrained but with its class scores
    spread (so NMS has clear winners), exported fp32 and int8 with ObjectDetector metadata.

    Untrained on purpose: what is compared is the runtime path (MediaPipe vs our interpreter
    on one file and one image), for which arbitrary but deterministic boxes over real photos are
    as good a probe as trained ones and take no training time."""
    import tf_keras

    from nlighten_tf.export import detection as export_detection
    from nlighten_tf.models import efficientdet
    from tests.models.detectors import SIZE as DET_SIZE
    from tests.models.detectors import tiny

    tf_keras.utils.set_random_seed(0)
    model = tiny()
    predict = model.get_layer("class_net_predict_pw")
    kernel, bias = predict.get_weights()
    predict.set_weights([kernel * 40.0, np.full_like(bias, -1.0)])
    photos = detector_photos(DET_SIZE)
    info = metadata.from_scheme(DETECTOR_LABELS, "lite", (DET_SIZE, DET_SIZE), kind=metadata.DetectorMetadata)
    directory = tmp_path_factory.mktemp("mediapipe_detector")
    paths = {}
    for quantization in ("float32", "int8"):
        paths[quantization] = directory / f"detector_{quantization}.tflite"
        export_detection.export_detector(
            model, paths[quantization], efficientdet.anchors(DET_SIZE, "efficientdet_lite0"),
            lambda: ([(photo[None].astype(np.float32) - 127.0) / 128.0] for photo in photos),
            max_detections=10, score_threshold=0.3, quantization=quantization, detector_metadata=info,
        )  # fmt: skip
    return paths, photos


def detector_photos(size: int) -> list[np.ndarray]:
    """Photos brought to the detector's input size by the app (MediaPipe then feeds them as is)."""
    return [
        np.round(tf.image.resize(getattr(skdata, name)()[..., :3].astype(np.float32), (size, size)).numpy()).astype(
            np.uint8
        )
        for name in PHOTOS
    ]


@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_object_detector_reads_our_labels_and_detects_like_our_interpreter(detector_files, quantization):
    from nlighten_tf.export import detection as export_detection

    paths, photos = detector_files
    path = paths[quantization]
    verdict = clients.mediapipe(path)
    assert verdict.loads and verdict.task == "ObjectDetector", verdict
    loaded = runtime.load(path, xnnpack=True)
    size = photos[0].shape[0]
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(path)), score_threshold=0.0, max_results=-1
    )  # every detection the post-process op kept (its own threshold 0.3)
    matched = total = 0
    worst_score = worst_box = 0.0
    with vision.ObjectDetector.create_from_options(options) as task:
        for photo in photos:
            found = task.detect(rgb(photo)).detections
            ours = export_detection.run_detector(loaded.interpreter, (photo.astype(np.float32) - 127.0) / 128.0)
            assert len(found) == ours["count"] > 0
            for detection, box, cls, score in zip(found, ours["boxes"], ours["classes"], ours["scores"], strict=True):
                category = detection.categories[0]
                total += 1
                assert category.category_name == DETECTOR_LABELS[int(cls)]  # names from our metadata
                worst_score = max(worst_score, abs(category.score - float(score)))
                ymin, xmin, ymax, xmax = box * size
                # MediaPipe's pixel box: the origin clamped into the image, the width/height of
                # the unclipped box (capped at the image size), truncated to integers.
                expected = (max(xmin, 0), max(ymin, 0), min(xmax - xmin, size), min(ymax - ymin, size))
                rect = detection.bounding_box
                error = np.abs(np.subtract((rect.origin_x, rect.origin_y, rect.width, rect.height), expected)).max()
                worst_box = max(worst_box, float(error))
                matched += int(error < 1.01)  # truncation to integer pixels
    print(f"{quantization}: {matched}/{total} detections matched (same label and order, box within 1 px), "
          f"max |score difference| {worst_score:.2e}, max box difference {worst_box:.2f} px")  # fmt: skip
    assert matched == total and worst_score <= 1e-4


# --- Recipes --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_export_stage_makes_a_file_mediapipe_loads(path):
    from nlighten_tf.models import registry

    recipe = loader.load(path)
    detector = registry.info(recipe.model.name).task == "detection"
    for stage in recipe.stages:
        if stage.type == "export" and not detector:  # detector exports are float32 I/O whatever the target
            loadable = [t for t in stage.config.targets if targets.mediapipe_loads(t, stage.config.io_type)]
            assert loadable, f"{path.name}: {stage.label} exports nothing MediaPipe Tasks loads"


@pytest.mark.slow
def test_recipe_report_names_the_files_an_android_app_can_use(tmp_path):
    """A two-stage recipe on digits exporting int8 sparse with both I/O types: the report says
    which file MediaPipe loads, and that file does load and classify like our interpreter."""
    recipe = tmp_path / "android.yaml"
    recipe.write_text(
        "name: android\nseed: 3\nmodel:\n  name: efficientnet_lite0\n"
        "  options: {width_coefficient: 0.5, depth_coefficient: 0.34, head_filters: 128, dropout_rate: 0.0}\n"
        "data: {spec: digits, image_size: 32, batch_size: 64, eval_limit: 60}\n"
        "stages:\n  - train: {epochs: 1, learning_rate: 2e-3}\n"
        "  - export: {targets: [int8_sparse, int8_sparse_float_io], calibration_samples: 32}\n"
    )
    result = run_tool("tools/optimize.py", f"--recipe={recipe}", f"--output_dir={tmp_path / 'runs'}")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "android"
    report = (run / "report.md").read_text()
    assert "## Android apps (MediaPipe Tasks)" in report
    assert "Files an app can use: `02-export/int8_sparse_float_io.tflite`." in report
    assert "- `02-export/int8_sparse.tflite`: no (ImageClassifier): int8 input" in report
    exports = json.loads((run / "summary.json").read_text())["exports"]
    usable = [e["file"] for e in exports if e["mediapipe"]["loads"]]
    assert usable == ["02-export/int8_sparse_float_io.tflite"]
    path = run / usable[0]
    pixels = (np.arange(SIZE * SIZE * 3) % 251).reshape(SIZE, SIZE, 3).astype(np.uint8)
    from tests.export import artifacts

    digits, _ = artifacts.digits_arrays("test", limit=8)
    ours = Ours(path)
    assert ours.labels == [str(d) for d in range(10)]
    with classifier(path) as task:
        for image in [pixels, *np.clip(np.round(digits * 128.0 + 127.0), 0, 255).astype(np.uint8)]:
            theirs, names = mp_scores(task.classify(rgb(image)))
            assert names == ours.labels
            assert np.argmax(theirs) == np.argmax(ours.scores(image))
            np.testing.assert_allclose(theirs, ours.scores(image), atol=1e-4)


# --- ImageNet EfficientNet-Lite0 ----------------------------------------------------------

IMAGENET_PHOTOS = {"chelsea": range(281, 286), "coffee": (967, 968)}  # tabby..Egyptian cat; espresso, cup


@pytest.mark.slow
def test_imagenet_lite0_fp32_and_int8_float_io_in_mediapipe(tmp_path, monkeypatch):
    """The published Lite0 (ImageNet weights) exported at 224 px: MediaPipe names the cat and
    the espresso as our interpreter does, from the app-cropped photo and from the whole photo."""
    from nlighten_tf import models
    from nlighten_tf.data.preprocessing import center_crop_and_resize
    from nlighten_tf.export import tflite
    from nlighten_tf.models import checkpoint_import, weights
    from tests.models.checkpoints import require_checkpoint

    require_checkpoint("efficientnet_lite0")
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path / "home"))  # never the user's cache
    checkpoint_import.convert("efficientnet_lite0")
    model = models.build("efficientnet_lite0", weights="imagenet")
    size = 224
    photos = {name: getattr(skdata, name)() for name in IMAGENET_PHOTOS}
    crops = {name: np.round(center_crop_and_resize(p, size).numpy()).astype(np.uint8) for name, p in photos.items()}
    calibration = [(c[None].astype(np.float32) - 127.0) / 128.0 for c in crops.values()]
    labels = [f"imagenet_{i}" for i in range(1000)]
    for target in ("fp32", "int8_float_io"):
        path = tmp_path / f"lite0_{target}.tflite"
        tflite.export(model, path, target, representative_dataset=lambda: ([c] for c in calibration * 4),
                      classifier=metadata.from_scheme(labels, "lite", (size, size)))  # fmt: skip
        assert clients.mediapipe(path).loads
        ours = Ours(path)
        with classifier(path) as task:
            for name, expected in IMAGENET_PHOTOS.items():
                theirs, names = mp_scores(task.classify(rgb(crops[name])))
                assert names == labels
                mine = ours.scores(crops[name])
                assert np.argmax(theirs) == np.argmax(mine) and np.argmax(mine) in expected, (target, name)
                whole, _ = mp_scores(task.classify(rgb(photos[name])))
                assert np.argmax(whole) == np.argmax(ours.scores(mediapipe_resize(photos[name], size))), (target, name)
                print(f"{target} {name}: app crop top-1 {np.argmax(theirs)} (ours {np.argmax(mine)}, max |diff| "
                      f"{np.max(np.abs(theirs - mine)):.1e}); whole photo top-1 {np.argmax(whole)}")  # fmt: skip
