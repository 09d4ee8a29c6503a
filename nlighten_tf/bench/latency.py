"""Latency of `.tflite` models measured interleaved (A B A B ...), so that ratios between
models hold on a noisy, shared machine: a slow spell hits every model alike."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from nlighten_tf.litert import runtime as runtime_lib


@dataclasses.dataclass
class Latency:
    model: str
    threads: int
    runtime: str
    xnnpack: bool
    fallback: str | None
    init_ms: float  # interpreter construction + allocate_tensors (delegate preparation)
    runs: int
    min_ms: float
    median_ms: float
    p90_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def random_input(details: dict[str, Any], seed: int = 0) -> np.ndarray:
    """A fixed pseudo-random input of the model's dtype (latency does not depend on values
    for these graphs, but all-zero inputs could hit shortcuts)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(details["dtype"])
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, details["shape"]).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, details["shape"], endpoint=True).astype(dtype)


def summarize(times_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    return {
        "min_ms": float(ms.min()), "median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
    }  # fmt: skip


def measure_interleaved(
    models: Sequence[str | os.PathLike[str]],
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    runtime: str = "auto",
    xnnpack: bool = True,
) -> list[Latency]:
    """Loads every model, warms each up, then times `runs` rounds of one invoke per model in turn."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    loaded = [runtime_lib.load(m, runtime=runtime, xnnpack=xnnpack, threads=threads) for m in models]
    for seed, model in enumerate(loaded):
        model.interpreter.set_tensor(model.input_details["index"], random_input(model.input_details, seed))
        for _ in range(warmup):
            model.interpreter.invoke()
    times: list[list[float]] = [[] for _ in loaded]
    for _ in range(runs):
        for i, model in enumerate(loaded):
            start = time.perf_counter()
            model.interpreter.invoke()
            times[i].append(time.perf_counter() - start)
    return [
        Latency(
            model=os.fspath(path), threads=threads, runtime=m.runtime, xnnpack=m.xnnpack, fallback=m.fallback,
            init_ms=m.init_seconds * 1e3, runs=runs, **summarize(t),
        )  # fmt: skip
        for path, m, t in zip(models, loaded, times, strict=True)
    ]


def peak_rss(
    model: str | os.PathLike[str], runtime: str, xnnpack: bool, threads: int, runs: int = 5, timeout: float = 300
) -> dict[str, float]:
    """Peak resident memory of a fresh process that loads the model and runs it `runs` times.

    A fresh process because the peak RSS of this one only ever grows. Returns {"peak_rss_mb",
    "model_rss_mb"}: the whole process, and its growth after the runtime was imported (what the
    model itself costs)."""
    command = [
        sys.executable, "-m", "nlighten_tf.bench.rss", os.fspath(model), runtime, "1" if xnnpack else "0",
        str(threads), str(runs),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"peak-RSS probe failed for {model}: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
