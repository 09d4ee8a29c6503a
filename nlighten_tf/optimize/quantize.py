"""Quantization-aware training wrappers.

TFMOT's default 8-bit registry has no QuantizeConfig for `Multiply`, the squeeze-excite gate
of the EfficientNet-B models, so `tfmot.quantization.keras.quantize_model` refuses them. We
give `Multiply` the treatment TFMOT gives `Add`: quantize its output only (TFLite's int8 MUL
takes quantized inputs, which the producers already emit).

Detectors (EfficientDet) need two more rules, both the same output-only config:

* A BatchNormalization after a convolution that is shared (called more than once, like the
  EfficientDet class/box-net convs run on all five pyramid levels) or whose output has several
  consumers. TFMOT folds Conv+BatchNorm only when the conv has a single consumer; these
  BatchNorms are left alone and TFMOT has no config for a lone BatchNorm. They stay separate
  ops (a per-channel MUL + ADD after conversion) with a quantized output.
* `FastNormalizedFusion` (EfficientDet-D BiFPN): a weighted sum of already quantized inputs,
  so quantizing its output is what TFMOT does for `Add`. Its fusion weights stay float in
  training; the converter folds them into the ops' scales.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import calls_in, node_in_model
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
_CONV_LAYERS = (layers.Conv2D, layers.DepthwiseConv2D)


def _custom_quantize_configs(model: tf_keras.Model) -> dict[str, type[_quantize.QuantizeConfig]]:
    """Layer name -> config class for every layer the default 8-bit registry cannot handle."""
    from nlighten_tf.models.efficientdet import FastNormalizedFusion

    found = {}
    for layer in model.layers:
        config_class = EXTRA_QUANTIZE_CONFIGS.get(type(layer))
        if config_class is None and isinstance(layer, FastNormalizedFusion):
            config_class = OutputQuantizeConfig
        if config_class is None and isinstance(layer, layers.BatchNormalization) and _after_unfoldable_conv(model, layer):
            config_class = OutputQuantizeConfig
        if config_class is not None:
            found[layer.name] = config_class
    return found


def _after_unfoldable_conv(model: tf_keras.Model, batch_norm: layers.Layer) -> bool:
    """True when `batch_norm` follows a conv TFMOT's Conv+BatchNorm fold skips: one that `model`
    calls more than once (shared across pyramid levels) or that feeds more than one layer in it.
    Only `model`'s own nodes count: layers reused by copies of the model carry theirs too."""
    for index in calls_in(model, batch_norm):
        inbound = batch_norm._inbound_nodes[index].inbound_layers
        for producer in inbound if isinstance(inbound, list) else [inbound]:
            if not isinstance(producer, _CONV_LAYERS):
                continue
            consumers = [n for n in producer._outbound_nodes if node_in_model(model, n)]
            if len(calls_in(model, producer)) > 1 or len(consumers) > 1:
                return True
    return False


def quantize_scope():
    """Scope under which models annotated by `annotate` can be cloned, saved and loaded."""
    return _quantize.quantize_scope({cls.__name__: cls for cls in EXTRA_QUANTIZE_CONFIGS.values()})


def annotate(model: tf_keras.Model) -> tf_keras.Model:
    """Returns a copy of `model` with every layer annotated for quantization."""

    custom = _custom_quantize_configs(model)

    def annotate_layer(layer: layers.Layer) -> layers.Layer:
        config_class = custom.get(layer.name)
        if config_class is not None:
            return _quantize.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), config_class())
        return _quantize.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()))

    if not custom:
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


def quantize_model(model: tf_keras.Model, scheme=None, keep_output_names: bool = False) -> tf_keras.Model:
    """Like `tfmot.quantization.keras.quantize_model`, also for models with `Multiply` layers
    and for detectors (BatchNorms after shared convs, `FastNormalizedFusion`; module doc).

    `scheme` is a TFMOT QuantizeScheme (default 8-bit when None). TFMOT renames every wrapped
    layer ``quant_<name>``, outputs included; `keep_output_names` gives the output layers their
    original names back, so that losses keyed by output name (``detection.compile_losses()``,
    ``detection.training_targets``) still match.
    """
    annotated = annotate(model)
    with quantize_scope():
        if scheme is None:
            quantized = _quantize.quantize_apply(annotated)
        else:
            quantized = _quantize.quantize_apply(annotated, scheme)
    if not keep_output_names or quantized.output_names == model.output_names:
        return quantized
    for tensor, name in zip(quantized.outputs, model.output_names, strict=True):
        tensor._keras_history.layer._name = name
    return tf_keras.Model(quantized.inputs, quantized.outputs, name=quantized.name)


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
    compile_options: Mapping[str, Any] | None = None,
) -> QATResult:
    """Quantization-aware fine-tuning with the scheme that preserves what `model` carries.

    By default `model` is a classifier compiled by `training.fit` (cross-entropy on integer or
    one-hot labels). For other tasks pass `compile_options`, the keyword arguments of
    ``model.compile`` besides the optimizer, e.g. ``detection.compile_losses()`` for a detector
    trained on ``(images, detection.training_targets(labels))``; the optimizer and its schedule
    still come from `train_config`.
    """
    chosen = choose_scheme(model, scheme)

    def prepare(m):
        return quantize_model(m, make_scheme(chosen), keep_output_names=compile_options is not None)

    trained, history = training.fit(
        model, train, train_config, validation=validation, callbacks=callbacks, strategy=strategy,
        prepare=prepare, compile_options=compile_options,
    )  # fmt: skip
    return QATResult(trained, chosen, history)
