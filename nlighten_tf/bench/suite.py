"""`tools/benchmark.py`'s engine: size, init, interleaved latency, peak RSS and deployed
accuracy of several `.tflite` files on the host and on (emulated) devices, with ratios against
the first file, and the agreement between runtime paths, as JSON + markdown + PNG.

Runtime paths compared on the same inputs (the evaluation images with --data, else a fixed
set of random inputs): `host-xnnpack` (the host interpreter with XNNPACK), `host-builtin`
(the same interpreter with its builtin kernels only), every device asked for (its own
interpreter, e.g. tflite-runtime 2.14 on aarch64 for `rpi-aarch64`) and, optionally, `keras`
(the Keras model the files came from). No two paths are guaranteed to compute the same bits
(different kernels, different rounding); top-1 agreement and the largest output difference
say how far apart they are.
"""

from __future__ import annotations

import gzip
import itertools
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlighten_tf import io as atomic
from nlighten_tf import render
from nlighten_tf.bench import accuracy as accuracy_lib
from nlighten_tf.bench import devices as devices_lib
from nlighten_tf.bench import latency
from nlighten_tf.litert import flatbuffer
from nlighten_tf.litert import runtime as runtime_lib

# Every row of `result["rows"]` has these keys (None where not measured).
ROW_FIELDS = (
    "name", "model", "device", "threads", "size_bytes", "gzip_bytes", "size_vs_first", "gzip_vs_first", "init_ms",
    "min_ms", "median_ms", "p90_ms", "mean_ms", "runs", "speedup_vs_first", "peak_rss_mb", "model_rss_mb",
    "top1", "top5", "runtime", "xnnpack", "fallback", "latency_note",
)  # fmt: skip
TABLE_COLUMNS = (
    "name", "threads", "size_bytes", "gzip_bytes", "gzip_vs_first", "init_ms", "min_ms", "median_ms", "p90_ms",
    "speedup_vs_first", "peak_rss_mb", "top1 %", "top5 %", "device", "runtime",
)  # fmt: skip
HOST_XNNPACK, HOST_BUILTIN, KERAS = "host-xnnpack", "host-builtin", "keras"
RANDOM_EXAMPLES = 16  # inputs the paths are compared on when no --data is given


def gzip_size(raw: bytes) -> int:
    return len(gzip.compress(raw, compresslevel=9, mtime=0))


def percent(value: float | None) -> str | None:
    """0.8909 -> "89.09%": accuracies are compared to the hundredth of a point."""
    return None if value is None else f"{100.0 * value:.2f}%"


def _inputs(model: str, data: str | None, split: str, limit: int | None, shape: Sequence[int]) -> dict[str, Any]:
    """Float model-domain inputs every path runs: the evaluation images (the file's declared
    normalisation, nlighten_tf.data's evaluation transform) or fixed random inputs."""
    if not data:
        rng = np.random.default_rng(0)
        images = rng.uniform(-1.0, 1.0, (RANDOM_EXAMPLES, *[int(s) for s in shape[1:]])).astype(np.float32)
        return {"images": images, "labels": None, "preprocessing": None, "note": "random inputs (no --data)", "split": None}
    from nlighten_tf import data as data_lib

    scheme = accuracy_lib.declared_preprocessing(model)
    note = None
    if scheme is None:
        scheme = data_lib.DEFAULT_SCHEME
        note = f"the file declares no normalisation; assumed {scheme!r}"
    dataset, info = data_lib.load(data, split, image_size=int(shape[1]), batch_size=64, preprocessing=scheme, limit=limit)
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy().astype(np.int64))
    return {
        "images": np.concatenate(images).astype(np.float32), "labels": np.concatenate(labels),
        "preprocessing": scheme, "note": note, "split": info.split, "num_classes": info.num_classes,
    }  # fmt: skip


def _scores(outputs: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    if labels is None:
        return {"top1": None, "top5": None, "examples": int(len(outputs))}
    return {
        "top1": accuracy_lib.top_k_correct(outputs, labels, 1) / max(len(labels), 1),
        "top5": accuracy_lib.top_k_correct(outputs, labels, 5) / max(len(labels), 1), "examples": int(len(labels)),
    }  # fmt: skip


def agreement(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Every pair of paths: share of examples with the same top-1 and the largest |difference|
    between their (dequantized) outputs."""
    pairs = []
    for a, b in itertools.combinations(outputs, 2):
        x, y = outputs[a].reshape(len(outputs[a]), -1), outputs[b].reshape(len(outputs[b]), -1)
        pairs.append({
            "a": a, "b": b, "examples": int(len(x)),
            "top1_agreement": float(np.mean(np.argmax(x, -1) == np.argmax(y, -1))) if len(x) else None,
            "max_abs_diff": float(np.max(np.abs(x - y))) if len(x) else None,
            "bit_exact": bool(np.array_equal(x, y)),
        })  # fmt: skip
    return pairs


def _keras_outputs(keras_model: str | os.PathLike[str], images: np.ndarray) -> np.ndarray:
    import tf_keras

    try:
        model = tf_keras.models.load_model(keras_model, compile=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"--keras_model {keras_model}: cannot load: {' '.join(str(error).split())[:200]}") from None
    return np.asarray(model.predict(images, batch_size=64, verbose=0), dtype=np.float32)


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
    devices: Sequence[str] = (devices_lib.HOST,),
    device_runs: int = 5,
    device_warmup: int = 1,
    paths: bool = True,
    keras_model: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Benchmarks `models` (the first is the baseline of every ratio) on each of `devices`;
    see ROW_FIELDS. Emulated devices time `device_runs` interleaved rounds (emulation is ~100x
    slower than the host; their absolute times mean nothing, ratios within a run do).
    `paths`: compare host-xnnpack, host-builtin, the devices (and `keras_model`) on the same
    inputs (result["paths"])."""
    if not models:
        raise ValueError("no models to benchmark")
    device_names = devices_lib.check_names(devices)
    for name in device_names:
        if name != devices_lib.HOST:
            devices_lib.require(name)  # says why it is missing and how to build it, before any work
    if device_runs < 1 or device_warmup < 0:
        raise ValueError(f"device_runs must be >= 1 and device_warmup >= 0, got {device_runs}, {device_warmup}")
    names = _unique_names(models)
    sizes, sparse_files = {}, []
    for model, name in zip(models, names, strict=True):
        raw = flatbuffer.read_bytes(model)
        graph = flatbuffer.parse(raw, os.fspath(model))  # a clear error for a corrupt file before timing anything
        sizes[os.fspath(model)] = (len(raw), gzip_size(raw))
        if "DENSIFY" in graph.op_types:  # sparse-stored weights
            sparse_files.append(name)

    # Outputs of every runtime path on the same inputs: accuracy per path and agreement.
    compare = paths or bool(data) or any(d != devices_lib.HOST for d in device_names)
    inputs: dict[str, dict[str, Any]] = {}
    class_warnings: list[str] = []  # also in "notes"; tools/benchmark.py prints them to stderr
    outputs: dict[str, dict[str, np.ndarray]] = {}
    descriptions: dict[str, dict[str, str]] = {}
    if compare:
        for model in models:
            key = os.fspath(model)
            host = runtime_lib.load(model, runtime=runtime, xnnpack=True, threads=max(threads))
            inputs[key] = _inputs(key, data, split, limit, host.input_details["shape"])
            if inputs[key].get("num_classes", 0) > int(host.output_details["shape"][-1]):
                raise ValueError(f"{data} has {inputs[key]['num_classes']} classes but {model} outputs "
                                 f"{int(host.output_details['shape'][-1])}")  # fmt: skip
            if data and inputs[key]["num_classes"] < int(host.output_details["shape"][-1]):
                # Runs, but top-1 then scores a model made for other labels: most likely the wrong file.
                class_warnings.append(
                    f"{model} outputs {int(host.output_details['shape'][-1])} classes but {data} has "
                    f"{inputs[key]['num_classes']}: its accuracy is measured on labels it may not have been trained for"
                )
            images = inputs[key]["images"]
            builtin = runtime_lib.load(model, runtime=runtime, xnnpack=False, threads=max(threads))
            outputs[key] = {HOST_XNNPACK: host.predict(images), HOST_BUILTIN: builtin.predict(images)}
            descriptions[key] = {HOST_XNNPACK: runtime_lib.describe(host), HOST_BUILTIN: runtime_lib.describe(builtin)}
            if host.fallback:
                descriptions[key][HOST_XNNPACK] += f" (fallback: {host.fallback})"
            if keras_model:
                outputs[key][KERAS] = _keras_outputs(keras_model, images)
                descriptions[key][KERAS] = f"Keras model {keras_model}"

    rows: list[dict[str, Any]] = []
    device_versions: dict[str, dict[str, str]] = {}
    for device in device_names:
        for count, thread_count in enumerate(threads):
            if device == devices_lib.HOST:
                measured = [r.as_dict() for r in latency.measure_interleaved(models, thread_count, runs, warmup, runtime, xnnpack)]
            else:
                done = devices_lib.run_models(
                    device, models, inputs={k: v["images"] for k, v in inputs.items()} if count == 0 else None,
                    threads=thread_count, runs=device_runs, warmup=device_warmup, xnnpack=xnnpack,
                )  # fmt: skip
                device_versions[device] = done.versions
                measured = []
                for model, m in zip(models, done.models, strict=True):
                    key = os.fspath(model)
                    if m["outputs"] is not None:
                        outputs[key][device] = m["outputs"]
                        descriptions[key][device] = (
                            f"{done.versions['runtime']}{' + XNNPACK' if m['xnnpack'] else ' (XNNPACK off)'} on "
                            f"{device} (python {done.versions['python']}, {done.versions['machine']}, emulated)"
                        )  # fmt: skip
                    measured.append({
                        "model": key, "threads": thread_count, "runtime": f"{done.versions['runtime']} ({device})",
                        "xnnpack": m["xnnpack"], "fallback": m["fallback"], "init_ms": m["init_ms"],
                        "runs": device_runs, **latency.summarize(np.asarray(m["times_ms"]) / 1e3),
                    })  # fmt: skip
            base = measured[0]["median_ms"]
            first_size, first_gz = sizes[os.fspath(models[0])]
            for name, result in zip(names, measured, strict=True):
                size, gz = sizes[result["model"]]
                row = dict.fromkeys(ROW_FIELDS)
                row.update(result)
                row.update(
                    name=name, device=device, size_bytes=size, gzip_bytes=gz, size_vs_first=size / first_size,
                    gzip_vs_first=gz / first_gz, speedup_vs_first=base / result["median_ms"],
                    latency_note=None if device == devices_lib.HOST else devices_lib.EMULATED_NOTE,
                )  # fmt: skip
                if rss and device == devices_lib.HOST:
                    row.update(latency.peak_rss(result["model"], result["runtime"], result["xnnpack"], thread_count))
                rows.append(row)

    accuracy: dict[str, dict[str, Any]] = {}
    path_results: list[dict[str, Any]] = []
    for model, name in zip(models, names, strict=True):
        key = os.fspath(model)
        if key not in outputs:
            continue
        given = inputs[key]
        per_path = {path: {**_scores(out, given["labels"]), "runtime": descriptions[key][path]}
                    for path, out in outputs[key].items()}  # fmt: skip
        host_path = HOST_XNNPACK if xnnpack else HOST_BUILTIN
        if data:
            accuracy[key] = {
                **{k: per_path[host_path][k] for k in ("top1", "top5", "examples")}, "data": data,
                "split": given["split"], "preprocessing": given["preprocessing"], "runtime": per_path[host_path]["runtime"],
                "note": given["note"],
            }  # fmt: skip
        path_results.append({
            "name": name, "model": key, "inputs": f"{data} {given['split']}" if data else given["note"],
            "accuracy": per_path, "agreement": agreement(outputs[key]),
        })  # fmt: skip
        for row in rows:
            if row["model"] == key and data:
                own = per_path.get(host_path if row["device"] == devices_lib.HOST else row["device"])
                if own:
                    row.update(top1=own["top1"], top5=own["top5"])

    fallbacks = sorted({f"{r['name']} ({r['device']}): {r['fallback']}" for r in rows if r["fallback"]})
    host_cpu = devices_lib.host_cpu()
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "host_cpu": host_cpu},  # fmt: skip
        "settings": {
            "threads": list(threads), "runs": runs, "warmup": warmup, "runtime": runtime, "xnnpack": xnnpack,
            "data": data, "split": split, "limit": limit, "interleaved": True, "devices": device_names,
            "device_runs": device_runs, "device_warmup": device_warmup, "keras_model": os.fspath(keras_model) if keras_model else None,
        },  # fmt: skip
        "runtimes": runtime_lib.available_runtimes(),
        "devices": device_versions,
        "models": [{"name": n, "model": os.fspath(m)} for n, m in zip(names, models, strict=True)],
        "accuracy": accuracy,
        "paths": path_results,
        "rows": rows,
        "fallbacks": fallbacks,
        "warnings": class_warnings,
        "notes": class_warnings + _notes(host_cpu, sparse_files, device_names),
    }


def _notes(host_cpu: dict[str, Any], sparse_files: list[str], device_names: list[str]) -> list[str]:
    notes = []
    if sparse_files and not host_cpu["sparse_kernels"]:
        notes.append(f"{', '.join(sparse_files)}: sparse weights; {host_cpu['note']}.")
    for device in device_names:
        if device != devices_lib.HOST:
            notes.append(f"{device}: {devices_lib.DEVICES[device].description}; latency {devices_lib.EMULATED_NOTE} "
                         "(ratios between files within one interleaved run; absolute times mean nothing).")  # fmt: skip
    return notes


def _unique_names(models: Sequence[str | os.PathLike[str]]) -> list[str]:
    names = [Path(m).stem for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"{Path(m).parent.name}/{Path(m).stem}" for m in models]


def display_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with accuracy as "89.09%" and the emulation label on emulated latencies."""
    out = []
    for r in rows:
        shown = {**r, "top1 %": percent(r.get("top1")), "top5 %": percent(r.get("top5"))}
        if r.get("latency_note"):
            shown["device"] = f"{r['device']} ({r['latency_note']})"
        out.append(shown)
    return out


def paths_markdown(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for entry in result.get("paths", []):
        lines += ["", f"`{entry['name']}` on {entry['inputs']}:", ""]
        lines.append(render.markdown_table(
            [{"path": p, "top1 %": percent(a["top1"]), "top5 %": percent(a["top5"]), "examples": a["examples"],
              "runtime": a["runtime"]} for p, a in entry["accuracy"].items()],
        ))  # fmt: skip
        lines += ["", render.markdown_table([
            {"paths": f"{p['a']} vs {p['b']}", "top-1 agreement %": percent(p["top1_agreement"]),
             "max abs output diff": p["max_abs_diff"], "bit-exact": "yes" if p["bit_exact"] else "no"}
            for p in entry["agreement"]
        ])]  # fmt: skip
    if lines:
        lines = ["", "## Runtime paths: accuracy and agreement on the same inputs", *lines]
    return lines


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    emulated = [d for d in settings.get("devices", []) if d != devices_lib.HOST]
    lines = [
        f"Interleaved runs: {settings['runs']} per model and thread count after {settings['warmup']} warm-up on the host"
        + (f", {settings['device_runs']} after {settings['device_warmup']} on {', '.join(emulated)}" if emulated else "")
        + f"; XNNPACK {'on' if settings['xnnpack'] else 'off'}; ratios against `{result['models'][0]['name']}` "
        "within each device. Latency in ms, sizes in bytes, RSS in MB"
        + (f"; accuracy on {settings['data']} {settings['split']}." if settings["data"] else "."),
        "",
        render.markdown_table(display_rows(result["rows"]), TABLE_COLUMNS),
    ]
    lines += paths_markdown(result)
    if result.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in result["notes"]]
    if result["fallbacks"]:
        lines += ["", "Runtime fallbacks:"] + [f"- {f}" for f in result["fallbacks"]]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Writes benchmark.json, benchmark.md, latency.png (host), latency_<device>.png per emulated
    device and (with accuracy) accuracy_vs_size.png with one point per file and device."""
    out = Path(output_dir)
    written = {
        "json": str(atomic.write_json(out / "benchmark.json", result)),
        "markdown": str(atomic.write_text(out / "benchmark.md", markdown(result))),
    }
    for device in result["settings"].get("devices", [devices_lib.HOST]):
        device_rows = [r for r in result["rows"] if r.get("device", devices_lib.HOST) == device]
        host = device == devices_lib.HOST
        png = render.plot_latency_bars(
            device_rows, str(out / ("latency.png" if host else f"latency_{device}.png")),
            title="Latency per inference" + ("" if host else f" on {device} ({devices_lib.EMULATED_NOTE})"),
        )  # fmt: skip
        if png:
            written["latency_plot" if host else f"latency_plot_{device}"] = png
    first_threads = [r for r in result["rows"] if r["threads"] == result["settings"]["threads"][0]]
    if len({r.get("device") for r in first_threads}) > 1:
        first_threads = [{**r, "name": f"{r['name']} ({r['device']})"} for r in first_threads]
    accuracy_png = render.plot_accuracy_vs_size(first_threads, str(out / "accuracy_vs_size.png"))
    if accuracy_png:
        written["accuracy_plot"] = accuracy_png
    return written
