"""Detector -> .tflite with TFLite_Detection_PostProcess, run in the real interpreter and
compared with the Keras model + detection.decode_detections."""

import json

import numpy as np
import pytest
import tf_keras

from nlighten_tf import models
from nlighten_tf.export import detection as export_detection
from nlighten_tf.export.tflite import ExportError
from nlighten_tf.litert import flatbuffer, runtime
from nlighten_tf.models import detection, efficientdet
from tests.models.detectors import NUM_CLASSES, SIZE, TINY

SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS = 0.5, 0.5, 10


def images(n=4, seed=0):
    """Noise with a few bright rectangles: inputs in the model's [-1, 1] domain."""
    rng = np.random.RandomState(seed)
    out = rng.uniform(-0.3, 0.3, (n, SIZE, SIZE, 3)).astype(np.float32)
    for image in out:
        for _ in range(2):
            h, w = rng.randint(20, 60, 2)
            y, x = rng.randint(0, SIZE - h), rng.randint(0, SIZE - w)
            image[y : y + h, x : x + w, rng.randint(3)] = 1.0
    return out


def detector():
    """A tiny Lite0 whose class scores depend strongly on the image: the untrained head's
    logits all sit near the 0.01 prior; a larger predict kernel spreads them so that NMS has
    clear winners (otherwise int8 rounding alone would reorder near-ties)."""
    tf_keras.utils.set_random_seed(0)
    model = models.build("efficientdet_lite0", **TINY)
    predict = model.get_layer("class_net_predict_pw")
    kernel, bias = predict.get_weights()
    predict.set_weights([kernel * 40.0, np.full_like(bias, -1.0)])
    return model


def keras_detections(model, batch, anchors, use_regular_nms, clip=True):
    """Keras model + `detection.decode_detections` (boxes clipped to the image before NMS), or
    with ``clip=False`` the same decoding and keras-cv NMS on unclipped boxes, as the TFLite op
    does."""
    class_logits, box_regression = model(batch, training=False)
    if not use_regular_nms:  # TFLite's fast NMS: one class per anchor, class-agnostic NMS
        keep = np.eye(NUM_CLASSES)[np.argmax(class_logits, -1)] > 0
        class_logits = np.where(keep, class_logits, -1e9)
    options = dict(
        iou_threshold=IOU_THRESHOLD, confidence_threshold=SCORE_THRESHOLD, max_detections=MAX_DETECTIONS,
        max_detections_per_class=MAX_DETECTIONS,
    )  # fmt: skip
    if clip:
        return detection.decode_detections(
            class_logits, box_regression, anchors, (SIZE, SIZE), "rel_yxyx", **options
        )
    import keras_cv

    boxes = detection.decode_boxes(box_regression, anchors) / SIZE
    nms = keras_cv.layers.MultiClassNonMaxSuppression(bounding_box_format="yxyx", from_logits=True, **options)
    return nms(boxes, np.asarray(class_logits, np.float32))


def iou(a, b):
    y0, x0 = np.maximum(a[0], b[0]), np.maximum(a[1], b[1])
    y1, x1 = np.minimum(a[2], b[2]), np.minimum(a[3], b[3])
    inter = max(y1 - y0, 0) * max(x1 - x0, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def agreement(model, path, batch, anchors, use_regular_nms, clip=True):
    """Matched fraction of Keras detections (same class, IoU >= 0.5 with an interpreter
    detection), of interpreter detections, and the mean |score difference| of matches."""
    loaded = runtime.load(path, xnnpack=False)
    reference = keras_detections(model, batch, anchors, use_regular_nms, clip)
    found_keras = found_tflite = total_keras = total_tflite = 0
    score_errors = []
    for i, image in enumerate(batch):
        out = export_detection.run_detector(loaded.interpreter, image)
        count = out["count"]
        boxes = out["boxes"][:count]
        boxes = np.clip(boxes, 0.0, 1.0) if clip else boxes  # decode_detections clips, the op does not
        classes, scores = out["classes"][:count].astype(int), out["scores"][:count]
        n = int(reference["num_detections"][i])
        ref_boxes = reference["boxes"][i, :n].numpy()
        ref_classes = reference["classes"][i, :n].numpy().astype(int)
        ref_scores = reference["confidence"][i, :n].numpy()
        total_keras, total_tflite = total_keras + n, total_tflite + count
        for box, cls, score in zip(ref_boxes, ref_classes, ref_scores, strict=True):
            matches = [j for j in range(count) if classes[j] == cls and iou(box, boxes[j]) >= 0.5]
            if matches:
                found_keras += 1
                score_errors.append(min(abs(scores[j] - score) for j in matches))
        for box, cls in zip(boxes, classes, strict=True):
            found_tflite += any(
                c == cls and iou(box, b) >= 0.5 for b, c in zip(ref_boxes, ref_classes, strict=True)
            )
    return {
        "keras_detections": total_keras,
        "tflite_detections": total_tflite,
        "keras_matched": found_keras / max(total_keras, 1),
        "tflite_matched": found_tflite / max(total_tflite, 1),
        "mean_abs_score_error": float(np.mean(score_errors)) if score_errors else None,
    }


def calibration():
    data = images(8, seed=1)
    return lambda: ([image[None]] for image in data)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    model = detector()
    path = tmp_path_factory.mktemp("det") / "lite0_int8.tflite"
    result = export_detection.export_detector(
        model, path, efficientdet.anchors(SIZE, "efficientdet_lite0"), calibration(),
        max_detections=MAX_DETECTIONS, score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD,
        use_regular_nms=True, labels=["a", "b", "c"],
    )  # fmt: skip
    return model, result


def test_int8_export_has_the_postprocess_op_and_standard_outputs(int8_export):
    _, result = int8_export
    graph = flatbuffer.parse(result.path.read_bytes())
    assert "TFLite_Detection_PostProcess" in str(graph.op_types)
    assert "CONV_2D" in graph.op_types
    loaded = runtime.load(result.path, xnnpack=False)
    inputs = loaded.interpreter.get_input_details()
    assert len(inputs) == 1 and list(inputs[0]["shape"]) == [1, SIZE, SIZE, 3]
    assert inputs[0]["dtype"] == np.float32
    shapes = [list(d["shape"]) for d in export_detection.output_details(loaded.interpreter)]
    assert shapes == [[1, MAX_DETECTIONS, 4], [1, MAX_DETECTIONS], [1, MAX_DETECTIONS], [1]]
    # Position order is boxes, classes, scores, count and the signature names say the same.
    runner = loaded.interpreter.get_signature_runner()
    named = runner.get_output_details()
    positions = [d["index"] for d in loaded.interpreter.get_output_details()]
    assert [named[name]["index"] for name in export_detection.OUTPUTS] == positions
    sidecar = json.loads(result.sidecar.read_text())
    assert sidecar["task"] == "detection" and sidecar["labels"] == ["a", "b", "c"]
    assert sidecar["postprocess"]["max_detections"] == MAX_DETECTIONS


def test_int8_interpreter_detections_agree_with_keras(int8_export):
    model, result = int8_export
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    batch = images(4)
    # Against decode_detections as it is (it clips boxes to the image before NMS, the op
    # cannot), and against the same decoding without clipping (the op's semantics exactly: a
    # float32 export matches it 100%, test_other_settings_agree_with_keras).
    clipped = agreement(model, result.path, batch, anchors, use_regular_nms=True, clip=True)
    unclipped = agreement(model, result.path, batch, anchors, use_regular_nms=True, clip=False)
    print("int8 vs keras: decode_detections", clipped, "unclipped", unclipped)
    for measured in (clipped, unclipped):
        assert measured["keras_detections"] >= 4, measured  # the comparison is not vacuous
        assert measured["keras_matched"] >= 0.7 and measured["tflite_matched"] >= 0.7, measured
        assert measured["mean_abs_score_error"] < 0.05, measured
    assert unclipped["keras_matched"] >= 0.85 and unclipped["tflite_matched"] >= 0.85, unclipped


def test_edge_tpu_analysis_maps_the_network_and_leaves_the_postprocess_on_the_cpu(int8_export):
    """The trailing TFLite_Detection_PostProcess (and the DEQUANTIZEs feeding it) is float by
    design: CPU after the Edge TPU part, not a split in the middle, not a reason to refuse."""
    from nlighten_tf.edgetpu import compat

    _, result = int8_export
    report = compat.analyse(result.path)
    tail = [row for row in report.ops if row.postprocess]
    assert [row.op for row in tail if row.op != "DEQUANTIZE"] == ["TFLite_Detection_PostProcess"]
    assert {row.op for row in tail} == {"TFLite_Detection_PostProcess", "DEQUANTIZE"}
    assert all(not row.mapped and "by design" in row.reason for row in tail)
    assert report.ops[-1].postprocess  # it is the last op
    assert report.problems == [] and report.first_unsupported is None, (report.problems, report.verdict)
    assert report.status == "mapped" and "post-process" in report.verdict and "CPU by design" in report.verdict
    # Everything else (backbone, BiFPN, heads) maps: convs, depthwise convs, adds, pools, resizes.
    compute = report.compute_ops
    assert compute and all(row.mapped for row in compute), [(r.op, r.reason) for r in compute if not r.mapped][:3]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "LOGISTIC"} <= {row.op for row in compute}
    assert report.madds_mapped == 1.0
    text = compat.format_report(report)
    assert "CPU (post-process)" in text and "float input/output" in text  # the float image input is still noted
    graph = flatbuffer.parse(result.path.read_bytes())
    assert compat.postprocess_tail(graph) == {row.index for row in tail}


def test_without_the_tail_rule_the_detector_would_be_refused(int8_export, monkeypatch):
    """What the rule changes: the same file with the tail treated as ordinary ops."""
    from nlighten_tf.edgetpu import compat

    monkeypatch.setattr(compat, "postprocess_tail", lambda graph: set())
    report = compat.analyse(int8_export[1].path)
    assert report.status == "refused" and "float tensors" in report.verdict
    assert report.ops[report.first_unsupported].op in ("DEQUANTIZE", "TFLite_Detection_PostProcess")


def test_wrong_anchors_and_missing_calibration_are_refused(tmp_path):
    model = detector()
    with pytest.raises(ExportError, match="anchors for a model with"):
        export_detection.convert_detector(model, np.zeros((10, 4), np.float32), calibration())
    with pytest.raises(ExportError, match="needs calibration data"):
        export_detection.convert_detector(model, efficientdet.anchors(SIZE, "efficientdet_lite0"))


@pytest.mark.slow
@pytest.mark.parametrize("quantization, use_regular_nms", [("float32", True), ("int8", False)])
def test_other_settings_agree_with_keras(tmp_path, quantization, use_regular_nms):
    model = detector()
    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    path = tmp_path / "det.tflite"
    export_detection.export_detector(
        model, path, anchors, calibration(), max_detections=MAX_DETECTIONS, score_threshold=SCORE_THRESHOLD,
        iou_threshold=IOU_THRESHOLD, use_regular_nms=use_regular_nms, quantization=quantization, sidecar=False,
    )  # fmt: skip
    batch = images(4)
    clipped = agreement(model, path, batch, anchors, use_regular_nms, clip=True)
    unclipped = agreement(model, path, batch, anchors, use_regular_nms, clip=False)
    print(
        f"{quantization} regular_nms={use_regular_nms} vs keras: decode_detections {clipped}; unclipped {unclipped}"
    )
    assert unclipped["keras_detections"] >= 4, unclipped
    floor = 0.99 if quantization == "float32" else 0.7
    assert unclipped["keras_matched"] >= floor and unclipped["tflite_matched"] >= floor, unclipped
    if quantization == "float32":
        assert unclipped["mean_abs_score_error"] < 1e-4, unclipped


@pytest.mark.slow
def test_untrained_qat_detector_is_refused_with_the_reason():
    from nlighten_tf.optimize import quantize

    anchors = efficientdet.anchors(SIZE, "efficientdet_lite0")
    untrained = quantize.quantize_model(models.build("efficientdet_lite0", **TINY), keep_output_names=True)
    with pytest.raises(ExportError, match="needs calibration data.*QAT model or not"):
        export_detection.convert_detector(untrained, anchors)
    # QAT ranges (the input quantizer's first of all) are only set by training steps: an
    # untrained QAT model converts to near-zero scales, which would crash the interpreter.
    with pytest.raises(ExportError, match="degenerate quantization range"):
        export_detection.convert_detector(untrained, anchors, calibration())

    # A trained QAT detector converting with calibration data, int8 convolutions, the post-process
    # op and a real interpreter run: tests/tools/test_detection_recipe.py (train -> prune -> PQAT
    # -> int8 export through tools/optimize.py) checks that file, so it is not converted twice.


def test_detector_metadata_is_what_object_detector_reads(int8_export):
    """Labels on the category output, [top, left, bottom, right] ratio boxes, the outputs named
    as the Task Library's ObjectDetector expects; the file still runs and detects the same."""
    from nlighten_tf.export import metadata

    model, result = int8_export
    raw = result.path.read_bytes()
    info = metadata.from_scheme(["a", "b", "c"], "lite", (SIZE, SIZE), kind=metadata.DetectorMetadata)
    tagged = metadata.embed(raw, info)
    read = metadata.read(tagged)
    assert read["name"] == "ObjectDetector" and read["labels"] == ["a", "b", "c"]
    assert read["outputs"] == [name for name, _ in metadata.DETECTOR_OUTPUTS]
    assert read["bounding_box"] == {"index": [1, 0, 3, 2], "type": 1, "coordinate_type": 0}  # BOUNDARIES, RATIO
    assert {"name": "labels.txt", "type": 3} in read["associated_files"]  # TENSOR_VALUE_LABELS
    assert read["mean"] == [127.0] * 3 and read["std"] == [128.0] * 3
    assert metadata.postprocess_num_classes(flatbuffer.parse(tagged)) == NUM_CLASSES
    image = images(1, seed=3)[0]
    before = export_detection.run_detector(runtime.load(result.path, xnnpack=False).interpreter, image)
    path = result.path.with_name("tagged.tflite")
    path.write_bytes(tagged)
    after = export_detection.run_detector(runtime.load(path, xnnpack=False).interpreter, image)
    assert before["count"] == after["count"]
    np.testing.assert_array_equal(before["boxes"], after["boxes"])


def test_detector_metadata_refuses_a_wrong_label_count_or_a_classifier(int8_export, tmp_path):
    from nlighten_tf.export import metadata, tflite
    from tests.export import artifacts

    raw = int8_export[1].path.read_bytes()
    with pytest.raises(ValueError, match="3 classes but 2 labels"):
        metadata.embed(raw, metadata.from_scheme(["a", "b"], "lite", (SIZE, SIZE), kind=metadata.DetectorMetadata))
    classifier, _ = tflite.convert(artifacts.mini_cnn(), "fp32")
    with pytest.raises(ValueError, match="TFLite_Detection_PostProcess"):
        metadata.embed(classifier, metadata.from_scheme(["a"], "lite", (SIZE, SIZE), kind=metadata.DetectorMetadata))
