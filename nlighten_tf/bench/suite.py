"""`tools/benchmark.py`'s engine: size, init, interleaved latency, peak RSS and deployed
accuracy of several `.tflite` files, with ratios against the first, as JSON + markdown + PNG."""

from __future__ import annotations

import gzip
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlighten_tf.bench import accuracy as accuracy_lib
from nlighten_tf.bench import flatbuffer, latency, report
from nlighten_tf.bench import runtime as runtime_lib
from nlighten_tf.export import atomic

# Every row of `result["rows"]` has these keys (None where not measured).
ROW_FIELDS = (
    "name", "model", "threads", "size_bytes", "gzip_bytes", "size_vs_first", "gzip_vs_first", "init_ms",
    "min_ms", "median_ms", "p90_ms", "mean_ms", "runs", "speedup_vs_first", "peak_rss_mb", "model_rss_mb",
    "top1", "top5", "runtime", "xnnpack", "fallback",
)  # fmt: skip
TABLE_COLUMNS = (
    "name", "threads", "size_bytes", "gzip_bytes", "gzip_vs_first", "init_ms", "min_ms", "median_ms", "p90_ms",
    "speedup_vs_first", "peak_rss_mb", "top1", "top5", "runtime",
)  # fmt: skip


def gzip_size(raw: bytes) -> int:
    return len(gzip.compress(raw, compresslevel=9, mtime=0))


def run(
    models: Sequence[str | os.PathLike[str]],
    threads: Sequence[int] = (1,),
    runs: int = 50,
    warmup: int = 5,
    runtime: str = "auto",
    xnnpack: bool = True,
    data: str | None = None,
    split: str = "test",
    limit: int | None = None,
    rss: bool = True,
) -> dict[str, Any]:
    """Benchmarks `models` (the first is the baseline of every ratio); see ROW_FIELDS."""
    if not models:
        raise ValueError("no models to benchmark")
    names = _unique_names(models)
    sizes = {}
    for model in models:
        raw = flatbuffer.read_bytes(model)
        flatbuffer.parse(raw, os.fspath(model))  # a clear error for a corrupt file before timing anything
        sizes[os.fspath(model)] = (len(raw), gzip_size(raw))
    accuracy: dict[str, dict[str, Any]] = {}
    if data:
        for model in models:
            accuracy[os.fspath(model)] = accuracy_lib.evaluate(
                model, data, split, limit=limit, runtime=runtime, xnnpack=xnnpack, threads=max(threads)
            )
    rows: list[dict[str, Any]] = []
    for thread_count in threads:
        measured = latency.measure_interleaved(models, thread_count, runs, warmup, runtime, xnnpack)
        base = measured[0].median_ms
        for name, result in zip(names, measured, strict=True):
            size, gz = sizes[result.model]
            first_size, first_gz = sizes[os.fspath(models[0])]
            row = dict.fromkeys(ROW_FIELDS)
            row.update(result.as_dict())
            row.update(
                name=name, size_bytes=size, gzip_bytes=gz, size_vs_first=size / first_size, gzip_vs_first=gz / first_gz,
                speedup_vs_first=base / result.median_ms,
            )  # fmt: skip
            if rss:
                row.update(latency.peak_rss(result.model, result.runtime, result.xnnpack, thread_count))
            acc = accuracy.get(result.model)
            if acc:
                row.update(top1=acc["top1"], top5=acc["top5"])
            rows.append(row)
    fallbacks = sorted({f"{r['name']}: {r['fallback']}" for r in rows if r["fallback"]})
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "settings": {
            "threads": list(threads), "runs": runs, "warmup": warmup, "runtime": runtime, "xnnpack": xnnpack,
            "data": data, "split": split, "limit": limit, "interleaved": True,
        },  # fmt: skip
        "runtimes": runtime_lib.available_runtimes(),
        "models": [{"name": n, "model": os.fspath(m)} for n, m in zip(names, models, strict=True)],
        "accuracy": accuracy,
        "rows": rows,
        "fallbacks": fallbacks,
    }


def _unique_names(models: Sequence[str | os.PathLike[str]]) -> list[str]:
    names = [Path(m).stem for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(m).parent.name}/{Path(m).stem}" for m in models]


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [
        f"Interleaved runs: {settings['runs']} per model and thread count after {settings['warmup']} warm-up; "
        f"XNNPACK {'on' if settings['xnnpack'] else 'off'}; ratios against `{result['models'][0]['name']}`. "
        "Latency in ms, sizes in bytes, RSS in MB"
        + (f"; accuracy on {settings['data']} {settings['split']}." if settings["data"] else "."),
        "",
        report.markdown_table(result["rows"], TABLE_COLUMNS),
    ]
    if result["fallbacks"]:
        lines += ["", "Runtime fallbacks:"] + [f"- {f}" for f in result["fallbacks"]]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Writes benchmark.json, benchmark.md, latency.png and (with accuracy) accuracy_vs_size.png."""
    out = Path(output_dir)
    written = {
        "json": str(atomic.write_json(out / "benchmark.json", result)),
        "markdown": str(atomic.write_text(out / "benchmark.md", markdown(result))),
    }
    latency_png = report.plot_latency_bars(result["rows"], str(out / "latency.png"))
    if latency_png:
        written["latency_plot"] = latency_png
    first_threads = [r for r in result["rows"] if r["threads"] == result["settings"]["threads"][0]]
    accuracy_png = report.plot_accuracy_vs_size(first_threads, str(out / "accuracy_vs_size.png"))
    if accuracy_png:
        written["accuracy_plot"] = accuracy_png
    return written
