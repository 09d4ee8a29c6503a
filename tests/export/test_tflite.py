"""Every export target converts with the real converter, runs in a real interpreter and agrees
with the Keras model it came from."""

import json
import os

import numpy as np
import pytest

from nlighten_tf.export import TARGETS, get_target, tflite
from nlighten_tf.litert import runtime
from tests.export import artifacts

FLOAT_EXACT = ("fp32", "fp32_sparse")
INT8_LIKE = ("dynamic_int8", "int8", "int8_float_io", "int8_sparse", "edgetpu")


@pytest.fixture(scope="module")
def keras_logits(digits_keras, digits_test_arrays):
    images, _ = digits_test_arrays
    return digits_keras.predict(images, batch_size=128, verbose=0)


@pytest.mark.parametrize("target", list(TARGETS))
def test_target_runs_and_agrees_with_keras(target, export_target, digits_test_arrays, keras_logits):
    path = export_target(target)
    images, labels = digits_test_arrays
    loaded = runtime.load(path)
    logits = loaded.predict(images)
    details = loaded.input_details
    expected_io = {"int8": np.int8, "int8_sparse": np.int8, "edgetpu": np.uint8}.get(target, np.float32)
    assert details["dtype"] == expected_io
    if target in FLOAT_EXACT:
        np.testing.assert_allclose(logits, keras_logits, atol=1e-4, rtol=1e-4)
    elif target == "float16":
        np.testing.assert_allclose(logits, keras_logits, atol=2e-2 * np.abs(keras_logits).max())
    else:
        agreement = np.mean(logits.argmax(1) == keras_logits.argmax(1))
        # 4-bit weights cost this tiny model more: 84% agreement measured.
        assert agreement >= (0.75 if target == "int4_weights" else 0.95), f"{target}: top-1 agreement {agreement:.3f}"
    # The deployed model is still a good classifier (Keras reaches ~94% here).
    assert np.mean(logits.argmax(1) == labels) > (0.7 if target == "int4_weights" else 0.85)


def test_sparse_targets_store_weights_sparse(export_target):
    from nlighten_tf.bench import tflite_inspection

    for target in ("fp32_sparse", "int8_sparse"):
        report = tflite_inspection.inspect_file(export_target(target))
        assert report.op_histogram.get("DENSIFY", 0) > 0
        assert report.sparse_weights > 0
    dense = tflite_inspection.inspect_file(export_target("edgetpu"))
    assert "DENSIFY" not in dense.op_histogram  # the Edge TPU compiler rejects sparse tensors
    assert all(t["dtype"] == "uint8" for t in dense.inputs + dense.outputs)


def test_sidecar_describes_the_file(export_target):
    path = export_target("int8")
    sidecar = tflite.read_sidecar(path)
    assert sidecar["target"]["name"] == "int8"
    assert sidecar["size_bytes"] == path.stat().st_size
    assert sidecar["classifier"]["preprocessing"] == "lite"
    assert sidecar["classifier"]["mean"] == [127.0] * 3 and sidecar["classifier"]["std"] == [128.0] * 3
    assert sidecar["input"]["dtype"] == "int8" and sidecar["input"]["shape"] == [1, 32, 32, 3]
    assert sidecar["input"]["scale"] > 0
    json.dumps(sidecar)


def test_signature_summary_names_inputs_and_outputs(export_target):
    summary = runtime.signature_summary(export_target("int8_float_io"))
    assert "signature 'serving_default'" in summary
    assert "input serving_default_image:0: float32 [1, 32, 32, 3]" in summary
    assert "output" in summary and "[1, 10]" in summary


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown export target 'int4'.*fp32, fp32_sparse"):
        get_target("int4")


def test_full_integer_without_calibration_says_what_to_pass():
    with pytest.raises(tflite.ExportError, match="needs calibration data"):
        tflite.convert(artifacts.mini_cnn(), "int8")


def test_pruning_wrappers_are_stripped_before_export(tmp_path):
    import tensorflow_model_optimization as tfmot

    wrapped = tfmot.sparsity.keras.prune_low_magnitude(artifacts.mini_cnn())
    result = tflite.export(wrapped, tmp_path / "wrapped.tflite", "fp32", sidecar=False)
    assert any("strip_pruning" in note for note in result.notes)
    assert runtime.load(result.path).output_details["shape"][-1] == 10


def test_qat_model_refuses_float_targets_and_explains():
    from nlighten_tf.optimize import quantize

    qat = quantize.quantize_model(artifacts.mini_cnn())
    with pytest.raises(tflite.ExportError, match="QAT quantize wrappers.*full-integer"):
        tflite.convert(qat, "fp32")


def test_export_is_atomic_on_failure(tmp_path, monkeypatch):
    """A failure in the middle of writing (after the converted bytes went into the temporary
    file, before it is synced and renamed) leaves neither a temporary file nor a half-written
    model, and an earlier file at the same path keeps its content."""
    from nlighten_tf import io as atomic

    target = tmp_path / "m.tflite"
    target.write_bytes(b"the previous model")
    written = []

    def disk_full(fd):
        written.append(os.fstat(fd).st_size)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        tflite.export(artifacts.mini_cnn(), target, "fp32")
    assert written and written[0] > 1000  # the failure came mid-write, with the model's bytes out
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]
    assert target.read_bytes() == b"the previous model"


def test_clustering_wrappers_are_stripped_before_export(tmp_path):
    import tensorflow_model_optimization as tfmot

    clustered = tfmot.clustering.keras.cluster_weights(
        artifacts.mini_cnn(), number_of_clusters=3,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR,
    )  # fmt: skip
    result = tflite.export(clustered, tmp_path / "clustered.tflite", "fp32", sidecar=False)
    assert any("strip_clustering" in note for note in result.notes)
    model, _, is_qat = tflite.prepare_for_export(clustered)
    assert not is_qat
    assert not [layer for layer in model.layers if "Cluster" in type(layer).__name__]
    assert runtime.load(result.path).output_details["shape"][-1] == 10


def test_int8_conversion_matches_the_keras_model_converter(digits_keras, digits_test_arrays):
    """`convert` hands the converter a serving function and the variables, not the Keras model
    (export.tflite.function_converter): the file must compute what `from_keras_model` gives."""
    import tensorflow as tf

    images, _ = digits_test_arrays
    calibration = lambda: ([images[i : i + 1]] for i in range(32))  # noqa: E731
    ours, _ = tflite.convert(digits_keras, "int8", representative_dataset=calibration)
    converter = tf.lite.TFLiteConverter.from_keras_model(digits_keras)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    reference = converter.convert()
    np.testing.assert_array_equal(runtime.load(ours).predict(images), runtime.load(reference).predict(images))
    assert runtime.signature_summary(ours).splitlines()[0] == runtime.signature_summary(reference).splitlines()[0]
