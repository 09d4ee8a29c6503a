"""EfficientDet-D/Lite: published parameter counts, anchors, targets, losses, decoding, TFMOT."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from nlighten_tf import models
from nlighten_tf.models import complexity, detection, efficientdet
from nlighten_tf.optimize import quantize
from tests.models.detectors import NUM_CLASSES, SIZE, TINY, shapes_batch, tiny

# ---------------------------------------------------------------------------------------------
# Architecture


# Published: EfficientDet paper Table 2 (D0..D2) and the automl EfficientDet-Lite README, with
# automl's 90 COCO classes. Counts do not depend on the image size, so build small.
@pytest.mark.parametrize("name", models.names(task="detection"))
def test_parameter_count_matches_published(name):
    info = models.info(name)
    model = models.build(name, input_shape=(SIZE, SIZE, 3), num_classes=info.published.classes)
    params = models.count_params(model)
    assert abs(params / info.published.params - 1) <= 0.02, (
        f"{name}: {params:,} vs {info.published.params:,.0f}"
    )
    if name == "efficientdet_d0":
        # automl's TF D0 has exactly this many (rwightman/efficientdet-pytorch README: 3,880,067
        # with the redundant conv biases before BatchNorm, which we keep as automl does).
        assert params == 3_880_067


def test_d0_madds_match_published():
    # Paper Table 2: 2.5B FLOPs (multiply-adds) at 512. The shared head convs run once per
    # pyramid level: count_madds counts every call.
    model = models.build("efficientdet_d0")
    madds = complexity.count_madds(model)
    assert abs(madds / 2.5e9 - 1) <= 0.03, f"{madds / 1e9:.3f}B"
    head = complexity.per_layer_madds(model)
    conv = model.get_layer("class_net_conv0_pw")
    single_call = complexity.layer_madds(conv, conv.get_output_shape_at(0))
    assert head["class_net_conv0_pw"] > 5 * single_call / 4  # P3..P7, not P3 alone


def test_backbone_weights_load_into_the_backbone(tmp_path):
    backbone_options = TINY["backbone_options"]
    classifier = models.build(
        "efficientnet_lite0", input_shape=(SIZE, SIZE, 3), num_classes=5, **backbone_options
    )
    path = tmp_path / "lite0.h5"
    classifier.save_weights(str(path))
    detector = tiny(backbone_weights=str(path))
    for name in ("stem_conv", "block6a_project_conv", "block7a_project_bn"):
        for ours, theirs in zip(
            detector.get_layer(name).weights, classifier.get_layer(name).weights, strict=True
        ):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_registry_lists_detectors_separately():
    assert models.names(task="detection") == [
        "efficientdet_d0",
        "efficientdet_d1",
        "efficientdet_d2",
        "efficientdet_lite0",
        "efficientdet_lite1",
        "efficientdet_lite2",
        "efficientdet_lite3",
        "efficientdet_lite4",
    ]
    assert not set(models.names()) & set(models.names(task="detection"))  # names() = classifiers
    assert len(models.names("efficientdet_lite")) == 5
    info = models.info("efficientdet_lite0")
    assert (info.default_resolution, info.default_num_classes, info.preprocessing, info.task) == (
        320,
        90,
        "lite",
        "detection",
    )
    assert models.info("efficientdet_d2").default_resolution == 768
    assert "backbone_weights" in info.options


def test_unknown_variant_and_bad_options_are_refused():
    with pytest.raises(
        ValueError, match="unknown EfficientDet variant 'efficientdet_lite9'.*efficientdet_lite0"
    ):
        efficientdet.build_efficientdet("efficientdet_lite9")
    with pytest.raises(ValueError, match="unknown model 'efficientdet_lite9'"):
        models.build("efficientdet_lite9")
    with pytest.raises(ValueError, match="backbone_options may not set input_shape"):
        models.build("efficientdet_lite0", backbone_options={"input_shape": (64, 64, 3)})
    with pytest.raises(ValueError, match="fpn_weight_method must be one of"):
        efficientdet.EfficientDetConfig("x", "efficientnet_lite0", 128, 16, 1, 1, "relu6", "attention")


def test_outputs_cover_every_anchor_at_non_power_of_two_sizes():
    # 160 = 1.25 * 128: P5..P7 are 5x5, 3x3, 2x2, the upsampled maps are cropped back.
    model = tiny(input_shape=(160, 96, 3))
    n = len(efficientdet.anchors((160, 96), "efficientdet_lite0"))
    assert n == 9 * (20 * 12 + 10 * 6 + 5 * 3 + 3 * 2 + 2 * 1)
    assert model.output_shape == [(None, n, NUM_CLASSES), (None, n, 4)]
    assert model.output_names == [detection.CLASS_OUTPUT, detection.BOX_OUTPUT]


def test_heads_share_convolutions_across_levels_with_batchnorm_per_level():
    model = tiny()
    shared = model.get_layer("class_net_conv0_pw")
    assert len(shared._inbound_nodes) == 5
    assert all(
        len(model.get_layer(f"class_net_conv0_bn_p{level}")._inbound_nodes) == 1 for level in range(3, 8)
    )
    # Initial class probability is the 0.01 prior.
    logits = model(np.zeros((1, SIZE, SIZE, 3), np.float32))[0]
    assert np.allclose(tf.sigmoid(model.get_layer("class_net_predict_pw").bias).numpy(), 0.01)
    assert logits.shape == (1, len(efficientdet.anchors(SIZE, "efficientdet_lite0")), NUM_CLASSES)


def test_lite_uses_plain_sum_and_d_uses_fast_normalized_fusion():
    lite, d0 = tiny("efficientdet_lite0"), tiny("efficientdet_d0")
    assert not any(isinstance(layer, efficientdet.FastNormalizedFusion) for layer in lite.layers)
    assert {type(layer).__name__ for layer in lite.layers} >= {"Add", "ReLU"}
    fusions = [layer for layer in d0.layers if isinstance(layer, efficientdet.FastNormalizedFusion)]
    assert len(fusions) == 8  # 4 top-down + 4 bottom-up nodes per cell


def test_fast_normalized_fusion_weights_inputs_by_normalised_relu():
    layer = efficientdet.FastNormalizedFusion(name="fusion")
    a, b = tf.fill((1, 2, 2, 1), 1.0), tf.fill((1, 2, 2, 1), 3.0)
    assert np.allclose(layer([a, b]).numpy(), 2.0, atol=1e-3)  # initial weights 1: the mean
    layer.fusion_weights.assign([3.0, -1.0])  # relu: only the first input counts
    assert np.allclose(layer([a, b]).numpy(), 3.0 / (3.0 + 1e-4))
    assert efficientdet.FastNormalizedFusion.from_config(layer.get_config()).epsilon == layer.epsilon


# ---------------------------------------------------------------------------------------------
# Anchors and box coding


def test_anchors_follow_automl_layout():
    anchors = efficientdet.anchors(512, "efficientdet_d0")
    assert anchors.shape == (9 * sum((512 // 2**level) ** 2 for level in range(3, 8)), 4)
    # First location of P3: stride 8, centre (4, 4), base size anchor_scale 4 * 8 = 32.
    np.testing.assert_allclose(anchors[0], [-12, -12, 20, 20])
    np.testing.assert_allclose(
        anchors[1], [4 - 11.2, 4 - 22.4, 4 + 11.2, 4 + 22.4], rtol=1e-6
    )  # (w, h) = (1.4, 0.7)
    np.testing.assert_allclose(anchors[3, 2] - anchors[3, 0], 32 * 2 ** (1 / 3), rtol=1e-6)  # second octave
    np.testing.assert_allclose(anchors[9], [-12, -4, 20, 28])  # next column
    # Last anchor: P7 (4x4, stride 128), bottom-right cell, last octave, (w, h) = (0.7, 1.4).
    centre, half_w, half_h = 448, 512 * 2 ** (2 / 3) * 0.7 / 2, 512 * 2 ** (2 / 3) * 1.4 / 2
    np.testing.assert_allclose(
        anchors[-1], [centre - half_h, centre - half_w, centre + half_h, centre + half_w], rtol=1e-6
    )
    # Lite0's 320 px does not divide by 128: P7 is 3x3 with stride 320 / 3 (automl).
    lite = efficientdet.anchors(320, "efficientdet_lite0")
    np.testing.assert_allclose(lite[-9, :2] + lite[-9, 2:], 2 * (320 - 320 / 6), rtol=1e-6)


def test_box_encoding_round_trips():
    anchors = tf.constant([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 25.0, 15.0]])
    boxes = tf.constant([[1.0, 2.0, 9.0, 30.0], [0.0, 0.0, 40.0, 10.0]])
    deltas = detection.encode_boxes(boxes, anchors)
    np.testing.assert_allclose(deltas[0], [0.0, 0.3, np.log(0.8), np.log(1.4)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(detection.decode_boxes(deltas, anchors), boxes, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Targets and annotation checks


def test_targets_positive_ignored_and_background():
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    index = int(np.flatnonzero((anchors[:, :2] >= 0).all(-1) & (anchors[:, 2:] <= SIZE).all(-1))[50])
    exact = anchors[index]  # a box equal to one anchor inside the image
    boxes = {
        "boxes": np.array([[exact, [-1, -1, -1, -1]]], np.float32),
        "classes": np.array([[2, -1]], np.float32),
    }
    labels = detection.encode_targets(boxes, anchors, (SIZE, SIZE), "yxyx").numpy()[0]
    assert labels.shape == (len(anchors), 5)
    assert labels[index, 4] == 2 and np.allclose(labels[index, :4], 0, atol=1e-5)
    iou = detection_iou(anchors, exact)
    classes = labels[:, 4]
    assert (classes[iou >= 0.5] == 2).all()
    assert (classes[iou < 0.4] == detection.BACKGROUND).all()
    assert (classes[(iou >= 0.4) & (iou < 0.5)] == detection.IGNORE).all()
    assert np.allclose(labels[classes < 0, :4], 0)


def test_small_box_is_force_matched_to_its_best_anchor():
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    box = np.array([60, 60, 63, 63], np.float32)  # far below IoU 0.5 with any anchor
    labels = detection.encode_targets(
        {"boxes": box[None, None], "classes": np.array([[1.0]])}, anchors, (SIZE, SIZE), "yxyx"
    ).numpy()[0]
    assert (labels[:, 4] == 1).sum() == 1
    assert np.argmax(labels[:, 4]) == np.argmax(detection_iou(anchors, box))


def detection_iou(anchors, box):
    y0, x0 = np.maximum(anchors[:, 0], box[0]), np.maximum(anchors[:, 1], box[1])
    y1, x1 = np.minimum(anchors[:, 2], box[2]), np.minimum(anchors[:, 3], box[3])
    inter = np.clip(y1 - y0, 0, None) * np.clip(x1 - x0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(anchors) + area(box) - inter)


def test_empty_annotations_are_refused_unless_allowed():
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    ragged = {
        "boxes": tf.ragged.constant([[[10.0, 10.0, 50.0, 50.0]], []], ragged_rank=1, inner_shape=(4,)),
        "classes": tf.ragged.constant([[0.0], []]),
    }
    with pytest.raises(
        detection.AnnotationError, match=r"image 1 has no boxes \(empty annotations\).*allow_empty=True"
    ):
        detection.encode_targets(ragged, anchors, (SIZE, SIZE), "xyxy")
    labels = detection.encode_targets(ragged, anchors, (SIZE, SIZE), "xyxy", allow_empty=True).numpy()
    assert (labels[1, :, 4] == detection.BACKGROUND).all()
    assert (labels[0, :, 4] == 0).any()


@pytest.mark.parametrize(
    "box, fmt, message",
    [
        ([10, 10, 140, 50], "xyxy", r"image 1 box 0 .*outside the 128x128 image"),
        ([-20, 10, 30, 50], "xyxy", r"image 1 box 0 .*outside the 128x128 image"),
        ([0.5, 0.5, 1.2, 0.9], "rel_xyxy", r"image 1 box 0 .*outside the 128x128 image"),
        ([50, 60, 40, 90], "yxyx", r"image 1 box 0 .*ymin >= ymax"),
        ([10, 10, 0, 20], "xywh", r"image 1 box 0 .*ymin >= ymax or xmin >= xmax"),
        ([10, np.nan, 20, 20], "xyxy", r"image 1 box 0: non-finite"),
    ],
)
def test_bad_boxes_get_clear_errors(box, fmt, message):
    good = [1, 1, 20, 20] if not fmt.startswith("rel") else [0.1, 0.1, 0.2, 0.2]
    annotations = {"boxes": np.array([[good], [box]], np.float32), "classes": np.array([[0.0], [1.0]])}
    with pytest.raises(detection.AnnotationError, match=message):
        detection.validate_annotations(annotations, (SIZE, SIZE), fmt)


def test_bad_class_ids_and_malformed_annotations_get_clear_errors():
    boxes = np.array([[[1, 1, 20, 20], [5, 5, 30, 30]]], np.float32)
    with pytest.raises(detection.AnnotationError, match=r"image 0 box 1: class 3 is not in \[0, 3\)"):
        detection.validate_annotations(
            {"boxes": boxes, "classes": np.array([[0.0, 3.0]])}, (SIZE, SIZE), "xyxy", 3
        )
    with pytest.raises(detection.AnnotationError, match="keras-cv bounding-box dict"):
        detection.validate_annotations({"bboxes": boxes}, (SIZE, SIZE), "xyxy")
    with pytest.raises(detection.AnnotationError, match="boxes for 1 images but classes for 2"):
        detection.validate_annotations({"boxes": boxes, "classes": np.zeros((2, 2))}, (SIZE, SIZE), "xyxy")


def test_bad_boxes_fail_inside_tf_data_too():
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    annotations = {
        "boxes": np.array([[[10, 10, 140, 50]]], np.float32),
        "classes": np.array([[0.0]], np.float32),
    }
    encode = tf.function(lambda a: detection.encode_targets(a, anchors, (SIZE, SIZE), "xyxy"))
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="outside the 128x128 image.*validate_annotations"
    ):
        encode(annotations)


# ---------------------------------------------------------------------------------------------
# Training and decoding


@pytest.mark.slow
def test_tiny_lite0_trains_and_its_losses_fall():
    tf_keras.utils.set_random_seed(0)
    model = tiny()
    images, annotations = shapes_batch()
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    labels = detection.encode_targets(annotations, anchors, (SIZE, SIZE), "xyxy", num_classes=NUM_CLASSES)
    model.compile(tf_keras.optimizers.Adam(1e-2), **detection.compile_losses())
    history = model.fit(images, detection.training_targets(labels), batch_size=4, epochs=8, verbose=0).history
    for key in ("loss", "class_logits_loss", "box_regression_loss"):
        assert history[key][-1] < 0.85 * history[key][0], (key, history[key])
    # The custom-loop form gives the same total as compile/fit.
    outputs = model(images, training=False)
    losses = detection.detection_loss(labels, *outputs)
    expected = model.evaluate(images, detection.training_targets(labels), batch_size=4, verbose=0)[0]
    assert np.isclose(float(losses["loss"]), expected, rtol=1e-4)


@pytest.mark.slow
def test_d0_fusion_weights_train():
    tf_keras.utils.set_random_seed(0)
    model = tiny("efficientdet_d0")
    images, annotations = shapes_batch(2)
    labels = detection.encode_targets(
        annotations, efficientdet.anchors(SIZE, "efficientdet_d0"), (SIZE, SIZE), "xyxy"
    )
    model.compile(tf_keras.optimizers.Adam(1e-2), **detection.compile_losses())
    model.fit(images, detection.training_targets(labels), epochs=2, verbose=0)
    fusion = model.get_layer("fpn_cell0_out_p4_fusion").fusion_weights.numpy()
    assert fusion.shape == (3,) and not np.allclose(fusion, 1.0)


def test_perfect_predictions_decode_to_the_ground_truth():
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    annotations = {
        "boxes": np.array([[[10, 20, 50, 90], [60, 64, 120, 100]]], np.float32),
        "classes": np.array([[2.0, 0.0]]),
    }
    labels = detection.encode_targets(annotations, anchors, (SIZE, SIZE), "xyxy").numpy()
    classes = labels[..., 4].astype(int)
    logits = np.where(np.eye(NUM_CLASSES)[np.maximum(classes, 0)] * (classes >= 0)[..., None] > 0, 8.0, -8.0)
    detections = detection.decode_detections(
        logits, labels[..., :4], anchors, (SIZE, SIZE), "xyxy", confidence_threshold=0.5
    )
    count = int(detections["num_detections"][0])
    assert count == 2
    classes, boxes = detections["classes"][0, :count].numpy(), detections["boxes"][0, :count].numpy()
    found = sorted(zip(classes.tolist(), boxes.tolist(), strict=True))
    np.testing.assert_allclose(found[0][1], [60, 64, 120, 100], atol=1e-3)
    np.testing.assert_allclose(found[1][1], [10, 20, 50, 90], atol=1e-3)
    assert [c for c, _ in found] == [0, 2]
    assert (detections["boxes"][0, count:].numpy() == -1).all()


# ---------------------------------------------------------------------------------------------
# TFMOT


def run(model):
    return model(np.random.RandomState(0).uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32))


@pytest.mark.parametrize("name", ["efficientdet_lite0", "efficientdet_d0"])
def test_prune_and_cluster_wrap_whole_detectors(name):
    model = tiny(name)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    assert sum(isinstance(layer, PruneLowMagnitude) for layer in pruned.layers) == len(model.layers) - 1
    assert len(pruned.get_layer("prune_low_magnitude_class_net_conv0_pw")._inbound_nodes) == 5  # still shared
    assert [o.shape for o in run(pruned)] == [o.shape for o in run(model)]
    clustered = tfmot.clustering.keras.cluster_weights(
        model,
        number_of_clusters=8,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR,
    )
    stripped = tfmot.clustering.keras.strip_clustering(clustered)
    assert len(np.unique(stripped.get_layer("class_net_conv0_pw").kernel.numpy())) <= 8


def needs_output_config(layer):
    """Layers TFMOT's default 8-bit scheme has no config for in our detectors."""
    shared_head_bn = isinstance(layer, tf_keras.layers.BatchNormalization) and "_bn_p" in layer.name
    return shared_head_bn or isinstance(layer, efficientdet.FastNormalizedFusion | tf_keras.layers.Multiply)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, first_refused",
    [
        ("efficientdet_lite0", "class_net_conv0_bn_p3.*BatchNormalization"),
        ("efficientdet_d0", "block1a_se_excite"),
    ],
)
def test_quantize_needs_output_configs_for_head_batchnorms_and_fusion(name, first_refused):
    # TFMOT's default 8-bit scheme folds Conv+BatchNorm only when the conv has one consumer; the
    # heads' per-level BatchNorms follow a conv shared by five levels, and a lone BatchNorm has
    # no QuantizeConfig; neither have FastNormalizedFusion (D) and Multiply (SE in B backbones).
    # If this starts passing, nlighten_tf.optimize.quantize needs no extra rule.
    with pytest.raises(RuntimeError, match=f"{first_refused}.*is not supported"):
        tfmot.quantization.keras.quantize_model(tiny(name))
    # An output-only config (what TFMOT does for Add) for those layers is all it takes.

    def annotate(layer):
        clone = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, tf_keras.layers.InputLayer):
            return clone
        if needs_output_config(layer):
            return tfmot.quantization.keras.quantize_annotate_layer(clone, quantize.OutputQuantizeConfig())
        return tfmot.quantization.keras.quantize_annotate_layer(clone)

    model = tiny(name)
    with quantize.quantize_scope():
        annotated = tf_keras.models.clone_model(model, clone_function=annotate)
        quantized = tfmot.quantization.keras.quantize_apply(annotated)
    assert [o.shape for o in run(quantized)] == [o.shape for o in run(model)]
