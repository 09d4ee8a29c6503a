"""The `int8_sparse_float_io` target: the int8 sparse graph with float32 input/output, its
FULLY_CONNECTED weights stored dense so that XNNPACK (MediaPipe Tasks' CPU path, which has no
fallback) can prepare it. Runs without MediaPipe (tests/export/test_mediapipe.py loads it there)."""

import numpy as np

from nlighten_tf import data
from nlighten_tf.bench import tflite_inspection
from nlighten_tf.export import targets, tflite
from nlighten_tf.litert import flatbuffer, runtime
from tests.export import artifacts


def test_fully_connected_weights_are_dense_and_the_outputs_unchanged(digits_keras, monkeypatch):
    calibration = data.representative_dataset("digits", 32, image_size=artifacts.IMAGE_SIZE, preprocessing="lite")
    assert targets.get_target("int8_sparse_float_io").sparse and targets.mediapipe_loads("int8_sparse_float_io")
    densified, notes = tflite.convert(digits_keras, "int8_sparse_float_io", calibration)
    assert any("FULLY_CONNECTED weights stored dense" in note for note in notes)
    with monkeypatch.context() as patch:  # the same conversion, weights left as the converter stored them
        patch.setattr(tflite, "densify_int8_fully_connected", lambda flatbuffer: (flatbuffer, []))
        sparse, _ = tflite.convert(digits_keras, "int8_sparse_float_io", calibration)
    before, after = flatbuffer.parse(sparse), flatbuffer.parse(densified)
    assert tflite_inspection.known_runtime_faults(before) and not tflite_inspection.known_runtime_faults(after)
    # Only the Dense layer's DENSIFY goes: the pruned 1x1 convolutions stay sparse.
    assert after.op_types.count("DENSIFY") == before.op_types.count("DENSIFY") - 1 > 0
    details = runtime.load(densified, xnnpack=False).interpreter.get_input_details()[0]
    assert np.dtype(details["dtype"]) == np.float32
    images, _ = artifacts.digits_arrays("test", limit=32)
    expected = runtime.load(sparse, xnnpack=False).predict(images)  # builtin kernels read both
    np.testing.assert_array_equal(runtime.load(densified, xnnpack=False).predict(images), expected)
    xnnpack = runtime.load(densified, xnnpack=True)
    assert xnnpack.fallback is None and xnnpack.xnnpack  # prepares under XNNPACK without a retry
    assert len(densified) - len(sparse) < 1024  # the 64x10 Dense kernel dense instead of 75% sparse
