"""Interpreter selection, XNNPACK on/off, and the ai-edge-litert sparse int8 FC fault."""

import numpy as np
import pytest

from nlighten_tf.litert import flatbuffer, runtime


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


# --- corrupt files must not kill the process (issue 17, item 1) ---------------------------------

_BARE_INTERPRETER = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
interpreter = Interpreter(model_content=sys.stdin.buffer.read(),
                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
interpreter.invoke()
"""
_LOAD = """
import sys
from nlighten_tf.litert import flatbuffer, runtime
try:
    runtime.load(sys.argv[1], runtime="ai_edge_litert", xnnpack=False, fallback=False)
    print("loaded")
except flatbuffer.TFLiteFileError as error:
    print(f"TFLiteFileError: {error}")
"""


def _bare_interpreter_dies(raw: bytes) -> bool:
    """What runtime.load did before validation and the probe: hand the bytes to the interpreter."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", _BARE_INTERPRETER], input=raw, capture_output=True, timeout=120)
    return child.returncode < 0


def _load_in_child(path):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, timeout=300)


def test_segfaulting_file_is_refused_by_validation(export_target, tmp_path):
    """The issue's kind of file: a range zeroed inside the tensor tables. Zeroing 256 bytes
    around a tensor's quantization table segfaults the bare interpreter (before: runtime.load
    checked only the TFL3 identifier); now validation rejects it and nothing crashes."""
    raw = export_target("int8_sparse").read_bytes()
    subgraph = flatbuffer.schema().Model.GetRootAs(raw, 0).Subgraphs(0)
    for k in range(subgraph.TensorsLength()):
        quantization = subgraph.Tensors(k).Quantization()
        if quantization is None:
            continue
        start = quantization._tab.Pos - 159  # the layout of the crash found by fuzzing
        mutant = raw[:start] + bytes(256) + raw[start + 256 :]
        if _bare_interpreter_dies(mutant):
            break
    else:
        pytest.fail("no zeroed range around a quantization table crashed the bare interpreter")
    path = tmp_path / "segfaults.tflite"
    path.write_bytes(mutant)
    with pytest.raises(flatbuffer.TFLiteFileError, match=rf"^{path}: tensor \d+ '.*': quantization"):
        flatbuffer.validate(mutant, str(path))
    result = _load_in_child(path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"TFLiteFileError: {path}: tensor "), result.stdout


def test_file_that_passes_validation_but_kills_the_interpreter_is_probed(export_target, tmp_path):
    """An int8 activation whose scales and zero points are emptied is structurally sound but
    aborts the interpreter (SIGABRT): the probe process dies instead of this one."""
    import flatbuffers

    raw = export_target("int8_sparse").read_bytes()
    graph = flatbuffer.parse(raw)
    candidates = [
        k for k, t in enumerate(graph.tensors)
        if flatbuffer.dtype_name(t.type) == "int8" and not graph.is_constant(k) and t.quantization is not None
    ]  # fmt: skip
    for k in candidates:
        model = flatbuffer.parse(raw).model
        model.subgraphs[0].tensors[k].quantization.scale = []
        model.subgraphs[0].tensors[k].quantization.zeroPoint = []
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=flatbuffer.TFLITE_IDENTIFIER)
        mutant = bytes(builder.Output())
        flatbuffer.validate(mutant, "mutant")  # passes: only the interpreter can tell
        if _bare_interpreter_dies(mutant):
            break
    else:
        pytest.fail("no int8 activation without quantization killed the bare interpreter")
    path = tmp_path / "aborts.tflite"
    path.write_bytes(mutant)
    result = _load_in_child(path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"TFLiteFileError: {path}: the ai_edge_litert interpreter crashed (SIG"), result.stdout
    # In-process: the probe's verdict is cached by content, so the second load costs nothing.
    for _ in range(2):
        with pytest.raises(flatbuffer.TFLiteFileError, match="interpreter crashed"):
            runtime.load(mutant, runtime="ai_edge_litert", xnnpack=False, fallback=False)


def test_probe_runs_once_per_content(export_target, monkeypatch):
    raw = export_target("int8").read_bytes() + b"\0" * 3  # a content no other test probed
    calls = []
    real = runtime._run_probe
    monkeypatch.setattr(runtime, "_run_probe", lambda *args: calls.append(args) or real(*args))
    for _ in range(3):
        runtime.load(raw, runtime="ai_edge_litert", xnnpack=False, fallback=False)
    assert len(calls) == 1
