"""Choosing and running a TFLite interpreter the way a device would.

Order: `ai_edge_litert` (the current LiteRT wheel), `tflite_runtime` (what older Raspberry Pi
images ship), `tensorflow` (`tf.lite.Interpreter`, last: it drags in all of TensorFlow).
XNNPACK is the default delegate of all three; "off" uses the builtin kernels only.

Known fault handled here (docs/facts.md, "Measured on this project's machines"): ai-edge-litert 2.3's XNNPACK cannot prepare an int8
FULLY_CONNECTED with sparse weights ("failed to delegate FULLY_CONNECTED node"). `load` does
not crash on it: it retries with the next interpreter, then without XNNPACK, and records why
in `Loaded.fallback`. This module imports no TensorFlow unless that runtime is used.

Corrupt files: the interpreter's Python wrapper builds its model without FlatBuffers' verifier,
and its kernels trust the file, so a corrupt `.tflite` could kill the whole process (SIGSEGV,
SIGABRT). `load` therefore validates the bytes first (`flatbuffer.validate`), then, the first
time this process sees a given content (sha256), loads and runs it once in a child process
(`probe`); a child killed by a signal becomes a TFLiteFileError naming the file. Only then does
an interpreter in this process see the bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np

from nlighten_tf.errors import NlightenError
from nlighten_tf.litert import flatbuffer

RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")


class RuntimeUnavailable(NlightenError, RuntimeError):
    """No requested interpreter could be imported or could run the model."""


def _interpreter_module(runtime: str) -> Any:
    """The module holding `Interpreter` and `OpResolverType` for a runtime name."""
    if runtime == "ai_edge_litert":
        return importlib.import_module("ai_edge_litert.interpreter")
    if runtime == "tflite_runtime":
        return importlib.import_module("tflite_runtime.interpreter")
    if runtime == "tensorflow":
        import nlighten_tf  # noqa: F401  (legacy Keras before TensorFlow loads)

        tf = importlib.import_module("tensorflow")
        return _TFLiteShim(tf)
    raise ValueError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)} or auto")


class _TFLiteShim:
    """Gives tf.lite the same module shape as the standalone runtimes."""

    def __init__(self, tf: Any) -> None:
        self.Interpreter = tf.lite.Interpreter
        self.OpResolverType = tf.lite.experimental.OpResolverType


def available_runtimes() -> dict[str, str]:
    """{runtime: "ok" or why it cannot be used} for every runtime, in preference order."""
    status = {}
    for runtime in RUNTIMES:
        try:
            _interpreter_module(runtime)
            status[runtime] = "ok"
        except Exception as error:  # ImportError, or tflite_runtime failing under NumPy 2
            status[runtime] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return status


@dataclasses.dataclass
class Loaded:
    """An allocated interpreter and how it was obtained."""

    interpreter: Any
    runtime: str
    xnnpack: bool
    threads: int
    init_seconds: float  # construct + allocate_tensors (+ delegate preparation)
    fallback: str | None = None  # why the requested runtime/XNNPACK setting was not used
    attempts: list[str] = dataclasses.field(default_factory=list)

    @property
    def input_details(self) -> dict[str, Any]:
        return self.interpreter.get_input_details()[0]

    @property
    def output_details(self) -> dict[str, Any]:
        return self.interpreter.get_output_details()[0]

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input_details["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_details["index"])

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Float model-domain inputs (N, H, W, C) -> float outputs (N, classes), one invoke per
        image; quantizes int8/uint8 inputs and dequantizes outputs with the file's parameters."""
        rows = []
        for image in np.asarray(images, dtype=np.float32):
            raw = self.invoke_raw(quantize(image[np.newaxis], self.input_details))
            rows.append(dequantize(raw, self.output_details)[0])
        return np.stack(rows)


def quantize(x: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    dtype = details["dtype"]
    if dtype in (np.float32, np.float16):
        return x.astype(dtype)
    scale, zero_point = details["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    scale, zero_point = details["quantization"]
    if details["dtype"] in (np.float32, np.float16) or not scale:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale


def _source(model: str | os.PathLike[str] | bytes) -> tuple[dict[str, Any], bytes, str]:
    if isinstance(model, bytes | bytearray):
        raw = bytes(model)
        return {"model_content": raw}, raw, "model bytes"
    raw = flatbuffer.read_bytes(model)
    return {"model_path": os.fspath(model)}, raw, os.fspath(model)


PROBE_TIMEOUT = 300  # seconds for the child to load and run the model once
_PROBED: dict[str, str | None] = {}  # "sha256:runtime" -> None (survived) or the error message
# The child imports only numpy and the interpreter (no TensorFlow unless that is the runtime),
# loads the model from stdin with XNNPACK, then with the builtin kernels, and runs it once on
# zeros. Python exceptions are not its business (load reports them with the fallbacks): only a
# death by signal is.
_PROBE_CHILD = """
import sys
import numpy as np
runtime = sys.argv[1]
if runtime == "ai_edge_litert":
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
elif runtime == "tflite_runtime":
    from tflite_runtime.interpreter import Interpreter, OpResolverType
else:
    import tensorflow as tf
    Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
raw = sys.stdin.buffer.read()
for resolver in (OpResolverType.AUTO, OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES):
    try:
        interpreter = Interpreter(model_content=raw, experimental_op_resolver_type=resolver)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
        interpreter.invoke()
    except Exception:
        pass
"""


def _installed(runtime: str) -> bool:
    """Whether a runtime is installed, found without importing it (a probe imports it in a child)."""
    module = "tensorflow" if runtime == "tensorflow" else f"{runtime}.interpreter"
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def probe(raw: bytes, where: str, runtime: str = RUNTIMES[0]) -> None:
    """Loads and runs `raw` once with `runtime` (XNNPACK, then builtin kernels) in a child
    process; TFLiteFileError when the interpreter dies there (killed by a signal) or hangs.
    Cached per (content, runtime) within this process; a runtime that is not installed is skipped."""
    key = f"{hashlib.sha256(raw).hexdigest()}:{runtime}"
    if key not in _PROBED:
        _PROBED[key] = _run_probe(raw, runtime) if _installed(runtime) else None
    if _PROBED[key] is not None:
        raise flatbuffer.TFLiteFileError(f"{where}: {_PROBED[key]}")


def _run_probe(raw: bytes, runtime: str) -> str | None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        child = subprocess.run(
            [sys.executable, "-c", _PROBE_CHILD, runtime], input=raw, capture_output=True, timeout=PROBE_TIMEOUT,
            env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"the {runtime} interpreter did not load and run it within {PROBE_TIMEOUT} s (corrupt file?)"
    if child.returncode >= 0:
        return None
    try:
        name = signal.Signals(-child.returncode).name
    except ValueError:
        name = f"signal {-child.returncode}"
    said = [
        line.strip() for line in child.stderr.decode("utf-8", "replace").splitlines()
        if line.strip() and not line.startswith("INFO:")
    ]  # fmt: skip
    last = f"; its last message: {said[-1][:200]}" if said else ""
    return (
        f"the {runtime} interpreter crashed ({name}, signal {-child.returncode}) loading it in a probe process: "
        f"the file passes validation but is corrupt or hits an interpreter fault{last}"
    )


def _try_load(runtime: str, source: dict[str, Any], raw: bytes, xnnpack: bool, threads: int) -> Loaded:
    module = _interpreter_module(runtime)
    resolver = (
        module.OpResolverType.AUTO if xnnpack else module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    start = time.perf_counter()
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice: we chose it knowingly
        warnings.simplefilter("ignore")
        interpreter = module.Interpreter(**source, num_threads=threads, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    init = time.perf_counter() - start
    loaded = Loaded(interpreter, runtime, xnnpack, threads, init)
    # Some delegate failures only surface at the first invoke: run one before handing it out.
    details = loaded.input_details
    loaded.invoke_raw(np.zeros(details["shape"], dtype=details["dtype"]))
    return loaded


def load(
    model: str | os.PathLike[str] | bytes,
    runtime: str = "auto",
    xnnpack: bool = True,
    threads: int = 1,
    fallback: bool = True,
) -> Loaded:
    """An allocated interpreter that has run once.

    runtime: "auto" (first importable of RUNTIMES) or one name. With `fallback`, a model the
    chosen runtime cannot prepare is retried with the later runtimes (same XNNPACK setting), then
    without XNNPACK, and `Loaded.fallback` says what failed. Raises
    flatbuffer.TFLiteFileError for a missing/corrupt file, RuntimeUnavailable when nothing runs it.
    """
    source, raw, where = _source(model)
    if runtime == "auto":
        order = list(RUNTIMES)
    elif runtime in RUNTIMES:
        order = [runtime] + ([r for r in RUNTIMES if r != runtime] if fallback else [])
    else:
        raise ValueError(f"unknown runtime {runtime!r}; valid: auto, {', '.join(RUNTIMES)}")
    flatbuffer.validate(raw, where)  # before any interpreter sees the bytes
    load_order = [(r, xnnpack) for r in order]
    if xnnpack and fallback:
        load_order += [(r, False) for r in order]
    attempts: list[str] = []
    first_failure: str | None = None
    for name, use_xnnpack in load_order:
        probe(raw, where, name)  # a crash in a child process, not in this one (cached)
        try:
            loaded = _try_load(name, source, raw, use_xnnpack, threads)
        except ImportError as error:
            attempts.append(f"{name}: not importable ({error})")
            continue
        except (RuntimeError, ValueError) as error:
            message = " ".join(str(error).split())
            if "identifier" in message or "Could not open" in message:
                raise flatbuffer.TFLiteFileError(f"{source.get('model_path', 'model bytes')}: {message}") from None
            attempts.append(f"{name}{'+XNNPACK' if use_xnnpack else ' (XNNPACK off)'} failed: {message}")
            first_failure = first_failure or attempts[-1]
            continue
        except Exception as error:  # tflite_runtime under NumPy 2 fails in odd ways
            attempts.append(f"{name}: {type(error).__name__}: {error}")
            continue
        loaded.attempts = attempts
        if first_failure is not None:
            loaded.fallback = f"{first_failure}; ran with {describe(loaded)}"
        return loaded
    raise RuntimeUnavailable(f"{where}: no TFLite interpreter could run the model: " + " | ".join(attempts))


def describe(loaded: Loaded) -> str:
    return f"{loaded.runtime}{' + XNNPACK' if loaded.xnnpack else ' (XNNPACK off)'}, {loaded.threads} thread(s)"


def signature_summary(model: str | os.PathLike[str] | bytes, runtime: str = "auto") -> str:
    """Signature names and input/output details, for printing after export."""
    loaded = load(model, runtime=runtime, xnnpack=False, threads=1)
    interpreter = loaded.interpreter
    lines = []
    signatures = interpreter.get_signature_list()
    for key, io in signatures.items():
        lines.append(f"signature {key!r}: inputs {list(io.get('inputs', []))} -> outputs {list(io.get('outputs', []))}")
    for kind, details in (("input", interpreter.get_input_details()), ("output", interpreter.get_output_details())):
        for d in details:
            scale, zero = d["quantization"]
            quant = f", scale={scale:.6g} zero_point={zero}" if scale else ""
            lines.append(f"{kind} {d['name']}: {np.dtype(d['dtype']).name} {[int(v) for v in d['shape']]}{quant}")
    return "\n".join(lines)
