"""Quantization-aware training wrappers.

TFMOT's default 8-bit registry has no QuantizeConfig for `Multiply`, the squeeze-excite gate
of the EfficientNet-B models, so `tfmot.quantization.keras.quantize_model` refuses them. We
give `Multiply` the treatment TFMOT gives `Add`: quantize its output only (TFLite's int8 MUL
takes quantized inputs, which the producers already emit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tf_keras import layers

from nlighten_tf.optimize import training, weight_stats

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


# --- Quantization-aware training -------------------------------------------------------

SCHEMES = ("auto", "default", "pqat", "cqat", "pcqat")


def make_scheme(name: str):
    """TFMOT scheme for a name: default 8-bit, or one preserving sparsity (PQAT), clusters
    (CQAT) or both (PCQAT) so QAT does not undo the earlier stages."""
    combine = tfmot.experimental.combine
    if name == "default":
        return None  # quantize_apply's own default 8-bit scheme
    if name == "pqat":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    if name == "cqat":
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False)
    if name == "pcqat":
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)
    raise ValueError(f"unknown QAT scheme {name!r}; valid: {', '.join(SCHEMES)}")


def choose_scheme(model: tf_keras.Model, requested: str = "auto") -> str:
    """'auto' picks from what the model carries: sparse and clustered -> pcqat, ..."""
    if requested not in SCHEMES:
        raise ValueError(f"unknown QAT scheme {requested!r}; valid: {', '.join(SCHEMES)}")
    if requested != "auto":
        return requested
    sparse, clustered = weight_stats.is_sparse(model), weight_stats.is_clustered(model)
    if sparse and clustered:
        return "pcqat"
    if clustered:
        return "cqat"
    if sparse:
        return "pqat"
    return "default"


@dataclasses.dataclass
class QATResult:
    model: tf_keras.Model  # still quantize-wrapped: the TFLite converter reads its quantizers
    scheme: str
    history: dict


def qat(
    model: tf_keras.Model,
    train: tf.data.Dataset,
    train_config: training.TrainConfig,
    scheme: str = "auto",
    validation: tf.data.Dataset | None = None,
    strategy=None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
) -> QATResult:
    """Quantization-aware fine-tuning with the scheme that preserves what `model` carries."""
    chosen = choose_scheme(model, scheme)
    trained, history = training.fit(
        model, train, train_config, validation=validation, callbacks=callbacks, strategy=strategy,
        prepare=lambda m: quantize_model(m, make_scheme(chosen)),
    )
    return QATResult(trained, chosen, history)
