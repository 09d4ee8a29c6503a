"""Parameter and multiply-add counts read off a built Keras graph.

MAdds count the multiply-accumulates of convolutions and fully-connected layers from each
layer's real input/output shapes (the convention of the EfficientNet and MobileNet papers);
element-wise ops, BatchNorm and pooling are not counted.
"""

from __future__ import annotations

import numpy as np
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import calls_in, unwrap


def count_params(model: tf_keras.Model, trainable_only: bool = True) -> int:
    """Trainable parameters by default: the papers' figures exclude BatchNorm moving statistics."""
    weights = model.trainable_weights if trainable_only else model.weights
    return int(sum(np.prod(w.shape) for w in weights))


def layer_madds(layer: layers.Layer, output_shape) -> int:
    """Multiply-adds of one layer given its (batch, ...) output shape; 0 for layers not counted."""
    inner = unwrap(layer)
    if isinstance(inner, layers.DepthwiseConv2D):
        kh, kw = inner.kernel_size
        _, oh, ow, channels = output_shape
        return int(oh * ow * channels * kh * kw)
    if isinstance(inner, layers.Conv2D):
        kh, kw = inner.kernel_size
        _, oh, ow, out_channels = output_shape
        in_channels = inner.kernel.shape[2]  # already divided by groups
        return int(oh * ow * kh * kw * in_channels * out_channels)
    if isinstance(inner, layers.Dense):
        in_features, out_features = inner.kernel.shape
        positions = int(np.prod(output_shape[1:-1])) if len(output_shape) > 2 else 1
        return int(positions * in_features * out_features)
    return 0


def per_layer_madds(model: tf_keras.Model) -> dict[str, int]:
    """MAdds per layer name (nested models are flattened with 'outer/inner' names)."""
    counts: dict[str, int] = {}
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            for name, value in per_layer_madds(layer).items():
                counts[f"{layer.name}/{name}"] = value
            continue
        value = sum(layer_madds(layer, _single(layer.get_output_shape_at(i))) for i in calls_in(model, layer))
        if value:
            counts[layer.name] = value
    return counts


def _single(shape):
    return shape[0] if isinstance(shape, list) else shape


def count_madds(model: tf_keras.Model) -> int:
    return int(sum(per_layer_madds(model).values()))
