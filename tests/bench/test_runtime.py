"""Interpreter selection, XNNPACK on/off, and the ai-edge-litert sparse int8 FC fault."""

import numpy as np
import pytest

from nlighten_tf.bench import flatbuffer, runtime


def test_litert_is_preferred_and_reported():
    status = runtime.available_runtimes()
    assert list(status) == list(runtime.RUNTIMES)
    assert status["ai_edge_litert"] == "ok"


def test_xnnpack_on_and_off_agree(export_target, digits_test_arrays):
    images = digits_test_arrays[0][:16]
    on = runtime.load(export_target("fp32"), xnnpack=True, threads=2)
    off = runtime.load(export_target("fp32"), xnnpack=False)
    assert (on.runtime, on.xnnpack, on.threads, on.fallback) == ("ai_edge_litert", True, 2, None)
    assert not off.xnnpack
    np.testing.assert_allclose(on.predict(images), off.predict(images), atol=1e-4)


def test_litert_sparse_int8_fully_connected_fault_falls_back(export_target):
    """Real reproduction: ai-edge-litert 2.3 + XNNPACK cannot prepare the pruned int8 Dense."""
    path = export_target("int8_sparse")
    with pytest.raises(runtime.RuntimeUnavailable, match="failed to delegate FULLY_CONNECTED"):
        runtime.load(path, runtime="ai_edge_litert", fallback=False)
    loaded = runtime.load(path, runtime="ai_edge_litert")
    assert loaded.fallback.startswith("ai_edge_litert+XNNPACK failed: failed to delegate FULLY_CONNECTED")
    assert "ran with tensorflow + XNNPACK" in loaded.fallback
    off = runtime.load(path, runtime="ai_edge_litert", xnnpack=False, fallback=False)
    assert off.fallback is None and off.runtime == "ai_edge_litert"


def test_bad_files_raise_tflite_file_error(tmp_path):
    with pytest.raises(flatbuffer.TFLiteFileError, match="no such file"):
        runtime.load(tmp_path / "missing.tflite")
    (tmp_path / "x.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(flatbuffer.TFLiteFileError, match="not a TFLite flatbuffer"):
        runtime.load(tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="unknown runtime"):
        runtime.load(b"\x10\x00\x00\x00TFL3" + b"\x00" * 64, runtime="onnx")


def test_quantize_round_trip():
    details = {"dtype": np.int8, "quantization": (0.5, -3)}
    x = np.array([[-10.0, 0.0, 1.0, 100.0]], np.float32)
    q = runtime.quantize(x, details)
    assert q.tolist() == [[-23, -3, -1, 127]]
    assert runtime.dequantize(q, details).tolist() == [[-10.0, 0.0, 1.0, 65.0]]
