"""Saving and loading Keras models, TFMOT wrappers included, for the runner, the tools and the
benchmarks.

HDF5 (`.h5`) is the one format TFMOT's pruning, clustering and quantization wrappers load
back from, so models are saved as HDF5 and loaded under the three TFMOT scopes. Importing this
module loads no TensorFlow; `optimize.quantize` (for its quantize scope) loads with the first call.
Nothing in `optimize/` or below imports this module, so it stays outside every import cycle.
"""

from __future__ import annotations

import os
import warnings


def load_keras(path: str | os.PathLike[str]):
    """A saved plain or pruning/clustering/quantization-wrapped Keras model, uncompiled."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from nlighten_tf.optimize import quantize

    with (
        tfmot.sparsity.keras.prune_scope(),
        tfmot.clustering.keras.cluster_scope(),
        quantize.quantize_scope(),
    ):
        return tf_keras.models.load_model(path, compile=False)


def load_keras_flag(path: str, flag: str = "--keras_model"):
    """`load_keras` for a tool's flag: ValueError naming the flag and file if it is not a model."""
    try:
        return load_keras(path)
    except (OSError, ValueError, TypeError) as error:  # not HDF5/SavedModel, truncated, unknown layer
        raise ValueError(f"{flag} {path}: not a loadable tf_keras model ({' '.join(str(error).split())[:300]})") from None


def save_model(model, path: str | os.PathLike[str], qat: bool) -> None:
    """`model` as HDF5 without its optimizer; `qat`: under the quantize scope (a QAT model)."""
    from nlighten_tf.optimize import quantize

    with warnings.catch_warnings():  # "HDF5 is legacy": it is the one format TFMOT wrappers load from
        warnings.simplefilter("ignore")
        if qat:
            with quantize.quantize_scope():
                model.save(path, include_optimizer=False)
        else:
            model.save(path, include_optimizer=False)
