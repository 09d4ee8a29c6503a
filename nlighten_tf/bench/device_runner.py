"""Device-side half of `nlighten_tf.bench.devices`: runs `.tflite` files with the device's
own interpreter. Imports only numpy and tflite_runtime (what a Raspberry Pi image has), never
TensorFlow or nlighten_tf, so it runs unchanged on a real Pi.

  python3 device_runner.py spec.json result.json

spec.json: {"threads": 1, "runs": 3, "warmup": 1, "xnnpack": true,
            "models": [{"model": "/abs/a.tflite", "inputs": "in0.npy", "outputs": "out0.npy"}, ...]}
For each model with "inputs" (float32 model-domain batch, N x H x W x C) it writes the float32
outputs (dequantized with the file's own parameters), one invoke per example. Then, with runs > 0,
it times `runs` interleaved rounds (one invoke of each model in turn) after `warmup` invokes each.
result.json: {"versions": {...}, "models": [{"model", "runtime", "xnnpack", "fallback", "init_ms",
"times_ms"}, ...]}.
"""

import json
import platform
import sys
import time

import numpy as np


def _interpreter_module():
    try:
        from tflite_runtime import interpreter
    except ImportError:  # a Pi with ai-edge-litert instead (Python 3.10/3.12/3.13 images)
        from ai_edge_litert import interpreter
    return interpreter


def load(module, path, threads, xnnpack):
    """(interpreter, used_xnnpack, fallback, init_ms); falls back to the builtin kernels when
    XNNPACK cannot prepare the model, as the host side does."""
    attempts = [True, False] if xnnpack else [False]
    failure = None
    for use_xnnpack in attempts:
        resolver = module.OpResolverType.AUTO if use_xnnpack else module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        start = time.perf_counter()
        try:
            interpreter = module.Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
            init_ms = (time.perf_counter() - start) * 1e3
            detail = interpreter.get_input_details()[0]
            interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
            interpreter.invoke()  # some delegate failures only surface at the first invoke
        except (RuntimeError, ValueError) as error:
            failure = f"{'XNNPACK' if use_xnnpack else 'builtin kernels'} failed: {' '.join(str(error).split())}"
            continue
        fallback = f"{failure}; ran with XNNPACK off" if failure else None
        return interpreter, use_xnnpack, fallback, init_ms
    raise RuntimeError(f"{path}: {failure}")


def quantize(x, detail):
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(y, detail):
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return y.astype(np.float32)
    return (y.astype(np.float32) - zero_point) * scale


def random_input(detail, seed):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, detail["shape"]).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, detail["shape"], endpoint=True).astype(dtype)


def main(spec_path, result_path):
    with open(spec_path) as f:
        spec = json.load(f)
    module = _interpreter_module()
    threads, runs, warmup = int(spec["threads"]), int(spec["runs"]), int(spec["warmup"])
    loaded, results = [], []
    for entry in spec["models"]:
        interpreter, used_xnnpack, fallback, init_ms = load(module, entry["model"], threads, bool(spec["xnnpack"]))
        loaded.append(interpreter)
        results.append({
            "model": entry["model"], "runtime": module.__name__.split(".")[0], "xnnpack": used_xnnpack,
            "fallback": fallback, "init_ms": init_ms, "times_ms": [],
        })
        if "inputs" in entry:
            inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
            rows = []
            for image in np.load(entry["inputs"]).astype(np.float32):
                interpreter.set_tensor(inp["index"], quantize(image[np.newaxis], inp))
                interpreter.invoke()
                rows.append(dequantize(interpreter.get_tensor(out["index"]), out)[0])
            np.save(entry["outputs"], np.stack(rows) if rows else np.zeros((0,), np.float32))
    if runs > 0:
        for seed, interpreter in enumerate(loaded):
            detail = interpreter.get_input_details()[0]
            interpreter.set_tensor(detail["index"], random_input(detail, seed))
            for _ in range(warmup):
                interpreter.invoke()
        for _ in range(runs):
            for interpreter, result in zip(loaded, results, strict=True):
                start = time.perf_counter()
                interpreter.invoke()
                result["times_ms"].append((time.perf_counter() - start) * 1e3)
    runtime = sys.modules[module.__name__.split(".")[0]]
    versions = {
        "python": platform.python_version(), "machine": platform.machine(), "numpy": np.__version__,
        "runtime": f"{module.__name__.split('.')[0]} {getattr(runtime, '__version__', '?')}",
    }
    with open(result_path, "w") as f:
        json.dump({"versions": versions, "models": results}, f)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: device_runner.py spec.json result.json", file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1], sys.argv[2])
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
