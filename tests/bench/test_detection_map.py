"""COCO mAP plumbing (bench.detection) with an oracle detector whose outputs are the encoded
ground truth: exact boxes score 1.0; boxes moved by a quarter of their height (IoU 0.6) score
1.0 at IoU 0.5 and 0.0 at IoU 0.75."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from nlighten_tf import data
from nlighten_tf.bench import detection as bench_detection
from nlighten_tf.models import detection

SIZE, N = 64, 6


class Oracle(tf_keras.Model):
    """Outputs fixed (class logits, box deltas) for the first images of a batch."""

    def __init__(self, logits, deltas):
        super().__init__()
        self.logits, self.deltas = tf.constant(logits, tf.float32), tf.constant(deltas, tf.float32)

    def call(self, images, training=False):
        n = tf.shape(images)[0]
        return self.logits[:n], self.deltas[:n]


@pytest.fixture(scope="module")
def shapes_eval():
    dataset, info = data.load("shapes", split=f"test[:{N}]", image_size=SIZE, batch_size=N)
    anchors = detection.generate_anchors((SIZE, SIZE))
    _, truth = next(iter(dataset))
    labels = detection.encode_targets(truth, anchors, (SIZE, SIZE), info.box_format).numpy()
    positive = labels[..., 4] >= 0
    logits = np.where(
        np.eye(3)[np.maximum(labels[..., 4], 0).astype(int)] * positive[..., None] > 0, 8.0, -8.0
    )
    return dataset, info, anchors, logits, labels[..., :4]


def test_exact_boxes_score_one(shapes_eval):
    dataset, info, anchors, logits, deltas = shapes_eval
    result = bench_detection.evaluate_map(Oracle(logits, deltas), dataset, anchors, info.box_format)
    assert result["num_images"] == N
    assert result["map"] > 0.99 and result["map_50"] > 0.99, result
    assert set(bench_detection.METRIC_NAMES.values()) <= set(result)


def test_iou_thresholds_are_honoured(shapes_eval):
    dataset, info, anchors, logits, deltas = shapes_eval
    moved = deltas.copy()
    moved[..., 0] += 0.25 * np.exp(deltas[..., 2])  # centre down by a quarter of the box height
    result = bench_detection.evaluate_keras(Oracle(logits, moved), dataset, anchors, info.box_format)
    assert result["map_50"] > 0.99 and result["map_75"] < 0.01, result
    # Wrong classes find nothing.
    wrong = np.roll(logits, 1, axis=-1)
    assert bench_detection.evaluate_keras(Oracle(wrong, deltas), dataset, anchors)["map_50"] < 0.01


def test_classification_data_is_refused(shapes_eval):
    _, _, anchors, logits, deltas = shapes_eval
    digits, _ = data.load("digits", split="test[:4]", image_size=32, batch_size=4)
    with pytest.raises(ValueError, match=r"\(images, \{'boxes', 'classes'\}\)"):
        bench_detection.evaluate_keras(Oracle(logits, deltas), digits, anchors)
