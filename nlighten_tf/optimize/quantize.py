"""Quantization-aware training wrappers.

TFMOT's default 8-bit registry has no QuantizeConfig for `Multiply`, the squeeze-excite gate
of the EfficientNet-B models, so `tfmot.quantization.keras.quantize_model` refuses them. We
give `Multiply` the treatment TFMOT gives `Add`: quantize its output only (TFLite's int8 MUL
takes quantized inputs, which the producers already emit).
"""

from __future__ import annotations

import tensorflow_model_optimization as tfmot
import tf_keras
from tf_keras import layers

_quantize = tfmot.quantization.keras


class OutputQuantizeConfig(_quantize.QuantizeConfig):
    """No weights; the output gets an 8-bit moving-average quantizer (TFMOT's Add config)."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [
            _quantize.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False
            )
        ]

    def get_config(self):
        return {}


# Standard Keras layers TFMOT's default registry does not cover, and the config that makes
# them quantizable.
EXTRA_QUANTIZE_CONFIGS: dict[type, type[_quantize.QuantizeConfig]] = {layers.Multiply: OutputQuantizeConfig}


def quantize_scope():
    """Scope under which models annotated by `annotate` can be cloned, saved and loaded."""
    return _quantize.quantize_scope({cls.__name__: cls for cls in EXTRA_QUANTIZE_CONFIGS.values()})


def annotate(model: tf_keras.Model) -> tf_keras.Model:
    """Returns a copy of `model` with every layer annotated for quantization."""

    def annotate_layer(layer: layers.Layer) -> layers.Layer:
        config_class = EXTRA_QUANTIZE_CONFIGS.get(type(layer))
        if config_class is not None:
            return _quantize.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), config_class())
        return _quantize.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()))

    if not any(type(layer) in EXTRA_QUANTIZE_CONFIGS for layer in model.layers):
        return _quantize.quantize_annotate_model(model)
    with quantize_scope():
        annotated = tf_keras.models.clone_model(model, clone_function=_keep_inputs(annotate_layer))
    annotated.set_weights(model.get_weights())
    return annotated


def _keep_inputs(clone):
    def clone_function(layer):
        if isinstance(layer, layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        return clone(layer)

    return clone_function


def quantize_model(model: tf_keras.Model, scheme=None) -> tf_keras.Model:
    """Like `tfmot.quantization.keras.quantize_model`, also for models with `Multiply` layers.

    `scheme` is a TFMOT QuantizeScheme (default 8-bit when None).
    """
    annotated = annotate(model)
    with quantize_scope():
        if scheme is None:
            return _quantize.quantize_apply(annotated)
        return _quantize.quantize_apply(annotated, scheme)
