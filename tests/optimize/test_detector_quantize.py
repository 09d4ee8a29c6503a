"""QAT for EfficientDet: BatchNorms after the shared head convs and FastNormalizedFusion get an
output-only quantize config, and `qat` trains a detector with the detection losses."""

import numpy as np
import pytest
import tf_keras

from nlighten_tf import models
from nlighten_tf.models import detection, efficientdet
from nlighten_tf.optimize import quantize, training
from tests.models.detectors import NUM_CLASSES, SIZE, TINY, shapes_batch


def tiny_training_data():
    """(images, anchors, dataset of (images, per-anchor targets) in batches of 2) for TINY."""
    import tensorflow as tf

    images, annotations = shapes_batch()
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    labels = detection.encode_targets(annotations, anchors, (SIZE, SIZE), "xyxy", num_classes=NUM_CLASSES)
    return images, anchors, tf.data.Dataset.from_tensor_slices((images, detection.training_targets(labels))).batch(2)


def test_only_unfoldable_batchnorms_and_fusion_get_output_configs():
    lite = models.build("efficientdet_lite0", **TINY)
    custom = quantize._custom_quantize_configs(lite)
    # The per-level BatchNorms after the shared head convs, nothing in backbone or BiFPN.
    expected = {f"{net}_conv0_bn_p{level}" for net in ("class_net", "box_net") for level in range(3, 8)}
    assert set(custom) == expected
    d0 = models.build("efficientdet_d0", **TINY)
    fusions = {layer.name for layer in d0.layers if isinstance(layer, efficientdet.FastNormalizedFusion)}
    assert fusions <= set(quantize._custom_quantize_configs(d0))


def test_a_classifier_reused_by_other_models_keeps_its_batchnorms_foldable():
    """Layer objects keep the nodes of every model they were called in (copies, rebuilt graphs):
    only the model's own graph decides whether a conv is shared, or QAT would stop folding the
    classifier's BatchNorms once any copy of it existed."""
    from nlighten_tf.optimize import graph

    classifier = models.build("efficientnet_lite0", input_shape=(32, 32, 3), num_classes=10,
                              width_coefficient=0.5, depth_coefficient=0.34, head_filters=128)  # fmt: skip
    graph.rebuild(classifier, {})  # calls every layer of `classifier` once more, in another model
    assert quantize._custom_quantize_configs(classifier) == {}
    detector = models.build("efficientdet_lite0", **TINY)
    head_batchnorms = [layer.name for layer in detector.layers if layer.name.startswith("class_net_conv0_bn_p")]
    assert set(head_batchnorms) <= set(quantize._custom_quantize_configs(detector))


def test_tiny_lite0_qat_trains_with_the_detection_loss():
    tf_keras.utils.set_random_seed(0)
    model = models.build("efficientdet_lite0", **TINY)
    images, anchors, train = tiny_training_data()
    config = training.TrainConfig(epochs=1.5, learning_rate=1e-3, verbose=0)  # 3 steps
    result = quantize.qat(model, train, config, scheme="default", compile_options=detection.compile_losses())
    assert result.scheme == "default"
    assert any("Quantize" in type(layer).__name__ for layer in result.model.layers)
    losses = result.history["loss"]
    assert len(losses) == 2 and np.isfinite(losses).all(), losses
    class_logits, box_regression = result.model(images[:1], training=False)
    assert class_logits.shape == (1, len(anchors), NUM_CLASSES) and np.isfinite(class_logits).all()


def test_compile_options_may_not_set_the_optimizer():
    model = models.build("efficientdet_lite0", **TINY)
    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices(
        (np.zeros((1, SIZE, SIZE, 3), np.float32), np.zeros((1,)))
    ).batch(1)
    with pytest.raises(ValueError, match="must not set the optimizer"):
        quantize.qat(model, train, training.TrainConfig(verbose=0), compile_options={"optimizer": "sgd"})


def test_clustering_a_detector_with_shared_head_convs():
    """The cluster stage is allowed on detectors: the class/box nets' separable convs are
    shared across five levels, and clustering must still leave <= N values per kernel."""
    import tensorflow as tf

    from nlighten_tf.optimize import cluster, weight_stats

    tf_keras.utils.set_random_seed(0)
    model = models.build("efficientdet_lite0", **TINY)
    images, _, train = tiny_training_data()
    clusters = 8
    tf.config.run_functions_eagerly(True)  # two steps: tracing would cost more than running
    try:
        result = cluster.cluster(
            model, train, cluster.ClusterConfig(number_of_clusters=clusters),
            training.TrainConfig(epochs=1, learning_rate=1e-4, verbose=0), compile_options=detection.compile_losses(),
        )  # fmt: skip
    finally:
        tf.config.run_functions_eagerly(False)
    kernels = weight_stats.kernels(result.model)
    shared = [name for name in kernels if name.startswith(("class_net", "box_net"))]
    assert shared, sorted(kernels)[:10]
    assert result.report["unique_values"]
    for name, count in result.report["unique_values"].items():
        assert count <= clusters, (name, count)
    assert set(shared) & set(result.report["unique_values"]), "the shared head convs were not clustered"
    outputs = result.model(images[:1], training=False)
    assert all(np.isfinite(output).all() for output in outputs)
