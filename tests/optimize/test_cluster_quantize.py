"""The collaborative-optimization chain: prune -> sparsity-preserving clustering -> PCQAT -> int8,
checking that each stage keeps what the previous one achieved, down to the .tflite kernels."""

import numpy as np
import pytest

from nlighten_tf.export import tflite
from nlighten_tf.litert import runtime
from nlighten_tf.optimize import cluster, prune, quantize, weight_stats
from nlighten_tf.optimize.selection import LayerSelection
from tests.optimize.conftest import IMAGE_SIZE, quick

SPARSITY = 0.6
CLUSTERS = 8


@pytest.fixture(scope="module")
def pruned(trained_lite, train_ds):
    return prune.prune(trained_lite, train_ds, prune.PruneConfig(target_sparsity=SPARSITY), quick(epochs=1)).model


@pytest.fixture(scope="module")
def clustered(pruned, train_ds):
    config = cluster.ClusterConfig(number_of_clusters=CLUSTERS, centroid_init="kmeans_plus_plus")
    return cluster.cluster(pruned, train_ds, config, quick(epochs=0.5, learning_rate=1e-4))


def test_sparsity_preserving_clustering_keeps_zeros_and_cluster_count(pruned, clustered):
    before = weight_stats.kernels(pruned)
    after = weight_stats.kernels(clustered.model)
    assert clustered.report["unique_values"]
    for name, count in clustered.report["unique_values"].items():
        assert count <= CLUSTERS, (name, count)
        assert (after[name][before[name] == 0] == 0).all(), f"{name}: a pruned weight regrew"
    assert clustered.report["sparsity"]["global_sparsity"] >= SPARSITY - 0.01


def test_auto_scheme_follows_what_the_model_carries(trained_lite, pruned, clustered):
    assert quantize.choose_scheme(trained_lite) == "default"
    assert quantize.choose_scheme(pruned) == "pqat"
    assert quantize.choose_scheme(clustered.model) == "pcqat"
    with pytest.raises(ValueError, match="unknown QAT scheme"):
        quantize.choose_scheme(pruned, "int4")


@pytest.fixture(scope="module")
def int8_kernels(clustered, train_ds):
    result = quantize.qat(clustered.model, train_ds, quick(epochs=0.3, learning_rate=1e-5))
    assert result.scheme == "pcqat"
    images = next(iter(train_ds))[0].numpy()
    calibration = lambda: ([images[i : i + 1]] for i in range(len(images)))  # noqa: E731
    flatbuffer, _ = tflite.convert(result.model, "int8", representative_dataset=calibration)
    interpreter = runtime.load(flatbuffer, xnnpack=False).interpreter
    kernels = []
    for detail in interpreter.get_tensor_details():
        # CONV_2D (out, kh, kw, in) and FULLY_CONNECTED (out, in) kernels; depthwise kernels
        # (1, kh, kw, C) are not pruned by TFMOT.
        if detail["dtype"] == np.int8 and len(detail["shape"]) in (2, 4) and detail["shape"][0] > 1:
            try:
                kernels.append(interpreter.get_tensor(detail["index"]))
            except ValueError:  # activations have no data before invoke
                continue
    return kernels


def test_int8_kernels_keep_sparsity_and_clusters_per_channel(int8_kernels):
    weights = [k for k in int8_kernels if k.size >= 64]
    assert len(weights) > 20, "expected the conv/dense kernels in the flatbuffer"
    zeros = sum(np.count_nonzero(k == 0) for k in weights)
    total = sum(k.size for k in weights)
    assert zeros / total >= SPARSITY - 0.01
    for kernel in weights:
        per_output_channel = kernel.reshape(kernel.shape[0], -1)
        assert max(np.unique(channel).size for channel in per_output_channel) <= CLUSTERS


@pytest.mark.parametrize(
    "kwargs, message",
    [({"number_of_clusters": 1}, "clusters must be an integer >= 2"), ({"centroid_init": "median"}, "centroid_init")],
)
def test_bad_cluster_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cluster.ClusterConfig(**kwargs)


def test_clustering_selected_layers_only(trained_lite, train_ds):
    config = cluster.ClusterConfig(number_of_clusters=4, selection=LayerSelection(include="^predictions$"))
    result = cluster.cluster(trained_lite, train_ds, config, quick(epochs=0.2))
    assert result.report["unique_values"] == {"predictions": 4}
    assert weight_stats.unique_values_report(result.model, {"top_conv"})["top_conv"] > 1000
    assert result.model.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 3)
