"""Weight clustering on the LR-ASPP segmenter: clustered, stripped, exported to int8 and run in
the interpreter (the tiny set-up of tests/models/test_heads.py)."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from nlighten_tf import models
from nlighten_tf.data import shapes
from nlighten_tf.export import tflite
from nlighten_tf.litert import runtime
from nlighten_tf.models import heads
from nlighten_tf.optimize import cluster, training
from tests.models.test_heads import NUM_CLASSES, SEG_CONFIG, SIZE, TINY, normalise, representative

CLUSTERS = 8


@pytest.mark.slow
def test_clustered_segmenter_keeps_few_values_and_its_int8_file_agrees(tmp_path):
    batch = shapes.generate_dense(48, seed=0, config=SEG_CONFIG)
    tf_keras.utils.set_random_seed(0)
    model = models.build("lraspp_lite0", input_shape=(SIZE, SIZE, 3), num_classes=NUM_CLASSES, head_filters=32,
                         backbone_options=TINY)  # fmt: skip
    masks = batch.masks.astype(np.int32)
    train = tf.data.Dataset.from_tensor_slices((normalise(batch.images), masks)).batch(16)
    config = cluster.ClusterConfig(number_of_clusters=CLUSTERS, centroid_init="linear")
    # Three eager steps: tracing the wrapped train function costs more than running it.
    tf.config.run_functions_eagerly(True)
    try:
        result = cluster.cluster(
            model, train, config,
            training.TrainConfig(epochs=1, learning_rate=1e-3, lr_schedule="constant", verbose=0),
            compile_options=heads.segmentation_compile_options(NUM_CLASSES),
        )  # fmt: skip
    finally:
        tf.config.run_functions_eagerly(False)
    clustered = result.model
    assert not any("cluster" in type(layer).__name__.lower() for layer in clustered.layers)  # stripped
    kernels = {
        layer.name: layer.kernel.numpy()
        for layer in clustered.layers
        if type(layer) is tf_keras.layers.Conv2D  # TFMOT leaves depthwise kernels alone
    }
    assert len(kernels) > 20 and "seg_high_logits" in kernels and "seg_gate_conv" in kernels
    counts = {name: np.unique(kernel).size for name, kernel in kernels.items()}
    assert max(counts.values()) <= CLUSTERS, counts
    assert result.report["unique_values"] == counts  # the report reads the same weights
    training.recalibrate_batch_norm(clustered, train, 3)  # few steps leave BN statistics at init
    path = tmp_path / "lraspp_clustered.tflite"
    tflite.export(clustered, path, "int8", representative(batch.images))
    images = normalise(batch.images[:16])
    int8 = runtime.load(path, xnnpack=False).predict(images)
    keras = clustered.predict(images, verbose=0)
    agreement = float((int8.argmax(-1) == keras.argmax(-1)).mean())
    assert agreement >= 0.9, agreement
