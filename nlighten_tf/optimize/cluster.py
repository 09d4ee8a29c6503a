"""Weight clustering (weight sharing) with TFMOT, sparsity-preserving when the model is sparse."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras

from nlighten_tf.keras_utils import unwrap
from nlighten_tf.optimize import training, weight_stats
from nlighten_tf.optimize.fields import documented
from nlighten_tf.optimize.selection import LayerSelection, wrap_selected

_clustering = tfmot.clustering.keras
CENTROID_INITS = {
    "linear": _clustering.CentroidInitialization.LINEAR,
    "random": _clustering.CentroidInitialization.RANDOM,
    "density_based": _clustering.CentroidInitialization.DENSITY_BASED,
    "kmeans_plus_plus": _clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
}


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """number_of_clusters per kernel (per-layer overrides through selection.per_layer); conv and
    dense kernels only (TFMOT does not cluster depthwise kernels);
    preserve_sparsity None = on when the model is sparse (zeros stay zero; the zero centroid
    is one of the clusters)."""

    number_of_clusters: int = documented(16, "distinct weight values per kernel (>= 2)")
    centroid_init: str = documented("kmeans_plus_plus", "how the centroids start", choices=CENTROID_INITS)
    preserve_sparsity: bool | None = documented(None, "keep zeros zero (null: on when the model is sparse)")
    selection: LayerSelection = dataclasses.field(default_factory=LayerSelection)

    def __post_init__(self):
        for what, value in [("number_of_clusters", self.number_of_clusters), *self.selection.per_layer.items()]:
            if int(value) != value or value < 2:
                raise ValueError(f"{what}: clusters must be an integer >= 2, got {value}")
        if self.centroid_init not in CENTROID_INITS:
            raise ValueError(
                f"unknown centroid_init {self.centroid_init!r}; valid: {', '.join(CENTROID_INITS)}"
            )


def apply_clustering(model: tf_keras.Model, config: ClusterConfig) -> tf_keras.Model:
    config.selection.validate_model(model)
    names = {unwrap(layer).name for layer in config.selection.selected_layers(model, depthwise=False)}
    preserve = weight_stats.is_sparse(model) if config.preserve_sparsity is None else config.preserve_sparsity

    def wrap(layer):
        return _clustering.cluster_weights(
            layer,
            number_of_clusters=int(config.selection.target_for(layer, config.number_of_clusters)),
            cluster_centroids_init=CENTROID_INITS[config.centroid_init],
            preserve_sparsity=preserve,
        )

    return wrap_selected(model, names, wrap, "clustered", "")


def strip(model: tf_keras.Model) -> tf_keras.Model:
    return _clustering.strip_clustering(model)


@dataclasses.dataclass
class ClusterResult:
    model: tf_keras.Model
    report: dict
    history: dict


def cluster(
    model: tf_keras.Model,
    train: tf.data.Dataset,
    config: ClusterConfig,
    train_config: training.TrainConfig,
    validation: tf.data.Dataset | None = None,
    strategy=None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
    compile_options: Mapping[str, Any] | None = None,
) -> ClusterResult:
    """Fine-tunes with clustering; returns the stripped model and unique values per kernel
    (plus sparsity, which sparsity-preserving clustering keeps)."""
    names = {unwrap(layer).name for layer in config.selection.selected_layers(model, depthwise=False)}
    clustered, history = training.fit(
        model, train, train_config, validation=validation, callbacks=callbacks, strategy=strategy,
        prepare=lambda m: apply_clustering(m, config), compile_options=compile_options,
    )
    stripped = strip(clustered)
    report = {
        "unique_values": weight_stats.unique_values_report(stripped, names),
        "sparsity": weight_stats.sparsity_report(stripped, names),
    }
    return ClusterResult(stripped, report, history)
