"""What a model's kernels carry: sparsity and clusters (unique values), per layer and global.

Used to report each stage, to check invariants, and to pick the QAT scheme that preserves
what earlier stages achieved.
"""

from __future__ import annotations

import numpy as np
import tf_keras

from nlighten_tf.keras_utils import kernel_of, unwrap

# A model "is sparse" when at least this fraction of its kernel weights are exactly zero;
# freshly initialised or trained dense weights have essentially none.
SPARSE_THRESHOLD = 0.1
# A kernel "is clustered" when it has at most this many distinct values (an int8 tensor
# can hold 256) while being large enough that a dense kernel never would.
CLUSTERED_MAX_UNIQUE = 256
CLUSTER_CHECK_MIN_SIZE = 2048


def kernels(model: tf_keras.Model, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Name -> kernel values for every conv / depthwise / dense layer (optionally only `names`)."""
    found = {}
    for layer in model.layers:
        kernel = kernel_of(layer)
        name = unwrap(layer).name
        if kernel is not None and (names is None or name in names):
            value = _value(layer, kernel)
            if value is not None:
                found[name] = value
    return found


def _value(layer, kernel) -> np.ndarray | None:
    if hasattr(kernel, "numpy"):
        return np.asarray(kernel.numpy())
    try:
        return np.asarray(kernel)
    except (NotImplementedError, TypeError):
        # A QAT wrapper replaces the layer's kernel attribute with its fake-quantized symbolic
        # tensor: read the float variable the wrapper holds (zeros and clusters live there).
        suffix = "/" + kernel_variable_name(unwrap(layer))
        for weight in layer.weights:
            if weight.name.endswith(suffix) and not weight.name.startswith("quant_"):
                return np.asarray(weight.numpy())
    return None


def kernel_variable_name(layer) -> str:
    from tf_keras import layers

    return "depthwise_kernel:0" if isinstance(layer, layers.DepthwiseConv2D) else "kernel:0"


def sparsity_report(model: tf_keras.Model, names: set[str] | None = None) -> dict:
    """{'layers': {name: {'sparsity', 'zeros', 'size'}}, 'global_sparsity', 'zeros', 'size'}."""
    layers = {}
    zeros = size = 0
    for name, values in kernels(model, names).items():
        layer_zeros = int(np.count_nonzero(values == 0))
        layers[name] = {"sparsity": layer_zeros / values.size, "zeros": layer_zeros, "size": int(values.size)}
        zeros += layer_zeros
        size += values.size
    return {"layers": layers, "zeros": zeros, "size": int(size), "global_sparsity": zeros / size if size else 0.0}


def unique_values_report(model: tf_keras.Model, names: set[str] | None = None) -> dict[str, int]:
    return {name: int(np.unique(values).size) for name, values in kernels(model, names).items()}


def is_sparse(model: tf_keras.Model) -> bool:
    return sparsity_report(model)["global_sparsity"] >= SPARSE_THRESHOLD


def is_clustered(model: tf_keras.Model) -> bool:
    large = [v for v in kernels(model).values() if v.size >= CLUSTER_CHECK_MIN_SIZE]
    clustered = [v for v in large if np.unique(v).size <= CLUSTERED_MAX_UNIQUE]
    # Clustering usually leaves some layers (e.g. depthwise) alone: most large kernels suffice.
    return bool(large) and len(clustered) >= 0.5 * len(large)
