"""The two quantization backends side by side: the TF converter's int8 against LiteRT
Quantizer's int8, int16x8, int4 weights and `mixed` (per-op precision by measured sensitivity).

- ImageNet EfficientNet-Lite0 (weights=imagenet, 224 px), no ImageNet labels: fidelity to its
  own float32 file (top-1 agreement, logit SNR) on the project's reference images (scikit-image
  photo crops). Calibration (and the mixed sensitivity scan) uses crops 0, 4, 8, ...; mixed
  checks its target on crops 2, 6, 10, ...; every figure in the table is measured on the odd
  crops, used for nothing else. (`--lite0_calibration_source=upscaled` calibrates on upscaled
  digits + Fashion-MNIST instead: measured, it leaves int8 at ~81% agreement on the photos.)
- The quickstart network (Fashion-MNIST, 32 px, recipes/quickstart.yaml's train stage):
  calibration on the first training images, mixed's target checked on the validation images
  (the last 5% of the training split), accuracy reported once on the test split.

Latency: one thread, interleaved invokes on this host, through XNNPACK and through the builtin
kernels (`--runs` rounds). Every mixed step (1, 2, 4, ... ops promoted) is measured too: the
cost in bytes and ms of each promotion.

  python benchmarks/quantizers.py --quickstart_model=runs/quickstart/01-train/model.h5 \
      [--cases=lite0,quickstart] [--output_dir=benchmarks/results]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from absl import app, flags, logging

# The repository instead of benchmarks/ first on the path: scikit-image's tifffile (reference
# images) imports a module named `compression`, which benchmarks/compression.py would shadow.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf import data, fidelity, models, render  # noqa: E402
from nlighten_tf.bench import latency  # noqa: E402
from nlighten_tf.data import reference_images  # noqa: E402
from nlighten_tf.export import litert_backend, tflite  # noqa: E402
from nlighten_tf.export.targets import get_target  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("cases", ["quickstart", "lite0"], "What to measure: quickstart, lite0, quickstart_float and "
                  "lite0_float (mixed promoting to float).")  # fmt: skip
flags.DEFINE_string("quickstart_model", "runs/quickstart/01-train/model.h5", "The quickstart recipe's trained float model.")
flags.DEFINE_integer("calibration", 200, "Calibration examples (both backends, the same ones).")
flags.DEFINE_integer("select", 300, "Held-out examples mixed checks its target on (quickstart: validation images).")
flags.DEFINE_integer("test", 5000, "Quickstart test images the accuracies are measured on.")
flags.DEFINE_integer("lite0_select", 126, "Lite0: photo crops mixed checks its target on.")
flags.DEFINE_integer("lite0_eval", 252, "Lite0: odd-numbered photo crops the figures are measured on.")
flags.DEFINE_integer("lite0_calibration", 100, "Lite0: calibration images.")
flags.DEFINE_enum("lite0_calibration_source", "photos", ["photos", "upscaled"],
                  "Lite0 calibration: every fourth photo crop, or upscaled digits + Fashion-MNIST.")  # fmt: skip
flags.DEFINE_integer("lite0_scan_examples", 8, "Lite0: calibration images each op's sensitivity is measured on.")
flags.DEFINE_float("lite0_min_agreement", 0.995, "Lite0 mixed target: top-1 agreement on the selection photos.")
flags.DEFINE_float("quickstart_min_agreement", 0.998, "Quickstart mixed target: agreement on validation images.")
flags.DEFINE_float("quickstart_min_snr_db", 31.0, "Quickstart mixed target: logit SNR on validation images.")
flags.DEFINE_integer("runs", 10, "Interleaved latency rounds per runtime path.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where quantizers.json / .md / .png go.")

_VARIANTS = (("converter", "int8"), ("litert", "int8"), ("litert", "int16x8"), ("litert", "int4_weights"))


def _dataset(x: np.ndarray):
    return lambda: ([x[i : i + 1]] for i in range(len(x)))


def _fashion(split: str, skip: int, count: int, size: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    from nlighten_tf.data.preprocessing import preprocess_for_eval

    raw, _ = data.load_raw("fashion_mnist", split)
    images, labels = [], []
    for image, label in raw.skip(skip).take(count):
        images.append(preprocess_for_eval(image.numpy(), size, scheme))
        labels.append(int(label))
    return np.stack(images).astype(np.float32), np.array(labels)


def _inputs(case: str) -> dict[str, Any]:
    if case in ("quickstart", "quickstart_float"):
        from nlighten_tf.keras_io import load_keras

        model, scheme = load_keras(FLAGS.quickstart_model), data.resolve_scheme(None, "efficientnet_lite0")
        size = tflite.input_size(model)[0]
        calibration, _ = _fashion("train", 0, FLAGS.calibration, size, scheme)
        select, _ = _fashion("train", 57000, FLAGS.select, size, scheme)  # the recipe's validation: last 5%
        test, labels = _fashion("test", 0, FLAGS.test, size, scheme)
        # quickstart_float: the same, mixed promoting its ops to float instead of int16.
        target = litert_backend.MixedConfig(min_agreement=FLAGS.quickstart_min_agreement, min_snr_db=FLAGS.quickstart_min_snr_db,
                                            promote_to="float" if case == "quickstart_float" else "int16")  # fmt: skip
        what = (f"Fashion-MNIST: calibration {len(calibration)} training images, mixed target on {len(select)} "
                f"validation images, accuracy on {len(test)} test images")  # fmt: skip
        return {"model": model, "calibration": calibration, "select": select, "eval": test, "labels": labels,
                "mixed": target, "what": what}  # fmt: skip
    model = models.build("efficientnet_lite0", input_shape=(224, 224, 3), weights="imagenet")
    scheme = data.resolve_scheme(None, "efficientnet_lite0")
    photos = reference_images.load(("photos",)).preprocessed(224, scheme)
    evaluate = photos[1::2][: FLAGS.lite0_eval]
    if FLAGS.lite0_calibration_source == "photos":
        # Every fourth crop calibrates, the crops between them check mixed's target.
        calibration, select = photos[0::4][: FLAGS.lite0_calibration], photos[2::4][: FLAGS.lite0_select]
        source = "photo crops 0, 4, 8, ..."
        select_what = "photo crops 2, 6, 10, ..."
    else:
        per_set = max(FLAGS.lite0_calibration // 2, 1)
        calibration = reference_images.load(("digits", "fashion_mnist"), per_set=per_set).preprocessed(224, scheme)
        select, source = photos[0::2][: FLAGS.lite0_select], "upscaled digits + Fashion-MNIST"
        select_what = "even photo crops"
    what = (f"ImageNet Lite0 on reference images: calibration {len(calibration)} {source}, mixed target on "
            f"{len(select)} {select_what}, figures on {len(evaluate)} odd photo crops (used for nothing else)")  # fmt: skip
    config = litert_backend.MixedConfig(min_agreement=FLAGS.lite0_min_agreement, scan_examples=FLAGS.lite0_scan_examples,
                                        promote_to="float" if case == "lite0_float" else "int16")  # fmt: skip
    return {"model": model, "calibration": calibration, "select": select, "eval": evaluate, "labels": None,
            "mixed": config, "what": what}  # fmt: skip


def _score(row: dict[str, Any], reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None) -> None:
    row.update({k: v for k, v in fidelity.compare(reference, outputs).items()
                if k in ("top1_agreement", "snr_db", "top1_agreement_confident", "confident_examples")})
    if labels is not None:
        row["accuracy"] = float(np.mean(np.argmax(outputs, -1) == labels))


def run_case(case: str, workdir: Path) -> dict[str, Any]:
    start = time.time()
    inputs = _inputs(case)
    model, calibration = inputs["model"], _dataset(inputs["calibration"])
    print(f"[{case}] {inputs['what']}", flush=True)
    files: dict[str, Path] = {}

    def save(name: str, flatbuffer: bytes) -> Path:
        files[name] = workdir / f"{case}_{name}.tflite"
        files[name].write_bytes(flatbuffer)
        return files[name]

    save("fp32", tflite.convert(model, "fp32")[0])
    times = {}
    for backend, target in _VARIANTS:
        t = time.time()
        save(f"{backend} {target}", tflite.convert(model, target, calibration, quantizer=backend)[0])
        times[f"{backend} {target}"] = time.time() - t
        print(f"[{case}] {backend} {target}: {files[f'{backend} {target}'].stat().st_size:,} bytes ({times[f'{backend} {target}']:.0f} s)", flush=True)
    t = time.time()
    mixed = tflite.convert_with_litert(model, get_target("mixed"), calibration, mixed=inputs["mixed"],
                                     held_out=inputs["select"], log=lambda m: print(f"[{case}]{m}", flush=True))  # fmt: skip
    times["litert mixed"] = time.time() - t
    report = mixed.report
    step_names = []
    for step, flatbuffer in zip(report["steps"], mixed.step_files, strict=True):
        step_names.append(f"mixed step {step['promoted']} ops")
        save(step_names[-1], flatbuffer)
    chosen = f"mixed step {report['promoted']} ops"
    reference = fidelity.tflite_outputs(files["fp32"], inputs["eval"])
    rows = []
    for name, path in files.items():
        print(f"[{case}] scoring {name} on {len(inputs['eval'])} examples ...", flush=True)
        row = {"name": name + (" (mixed's choice)" if name == chosen else ""), "size_bytes": path.stat().st_size,
               "seconds_to_quantize": times.get(name, times["litert mixed"] if name == chosen else None)}  # fmt: skip
        _score(row, reference, fidelity.tflite_outputs(path, inputs["eval"]), inputs["labels"])
        rows.append(row)
    for xnnpack in (True, False):
        print(f"[{case}] latency ({'XNNPACK' if xnnpack else 'builtin kernels'}) ...", flush=True)
        measured = latency.measure_interleaved(list(files.values()), threads=1, runs=FLAGS.runs, warmup=2, xnnpack=xnnpack)
        for row, result in zip(rows, measured, strict=True):
            row["xnnpack_ms" if xnnpack else "builtin_ms"] = result.median_ms
    fp32_bytes = files["fp32"].stat().st_size
    for row in rows:
        row["x_smaller"] = fp32_bytes / row["size_bytes"]
    return {"case": case, "what": inputs["what"], "rows": rows, "mixed": report, "seconds": time.time() - start}


def _plot(results: list[dict[str, Any]], path: str) -> None:
    plt = render.pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6.4 * len(results), 4.6), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        key = "accuracy" if "accuracy" in result["rows"][0] else "top1_agreement"
        steps = [r for r in result["rows"] if r["name"].startswith("mixed step")]
        ax.plot([r["size_bytes"] / 1e6 for r in steps], [100 * r[key] for r in steps], "o-", color="grey",
                label="mixed steps (ops promoted)")  # fmt: skip
        for r in result["rows"]:
            if not r["name"].startswith("mixed step"):
                ax.scatter([r["size_bytes"] / 1e6], [100 * r[key]])
                ax.annotate(r["name"], (r["size_bytes"] / 1e6, 100 * r[key]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("file size (MB)")
        ax.set_ylabel("test accuracy (%)" if key == "accuracy" else "top-1 agreement with fp32 (%)")
        ax.set_title(result["case"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    render.save_figure(fig, path)


def _markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# Quantization backends: TF converter vs LiteRT Quantizer (int8, int16x8, int4 weights, mixed)", "",
             "Host x86-64, 1 thread, interleaved latency medians (ms) through XNNPACK and the builtin kernels. "
             "Produced by `python benchmarks/quantizers.py`.", ""]  # fmt: skip
    for result in results:
        lines += [f"## {result['case']}", "", result["what"] + ".", ""]
        columns = ["name", "size_bytes", "x_smaller"]
        columns += ["accuracy"] if "accuracy" in result["rows"][0] else []
        columns += ["top1_agreement"]
        # Agreement where the float file's top-1 probability is >= 0.5 (nlighten_tf.fidelity.CONFIDENT).
        columns += ["top1_agreement_confident"] if "top1_agreement_confident" in result["rows"][0] else []
        columns += ["snr_db", "xnnpack_ms", "builtin_ms"]
        percents = ("accuracy", "top1_agreement", "top1_agreement_confident")
        shown = [{k: f"{100 * v:.2f}%" if k in percents and v is not None else v for k, v in r.items()}
                 for r in result["rows"]]  # fmt: skip
        lines += [markdown_table(shown, columns), ""]
        mixed = result["mixed"]
        lines += [f"Mixed: {mixed['promoted']} of {len(mixed['ops'])} ops promoted to {mixed['config']['promote_to']}; "
                  f"target {'met' if mixed['met'] else 'NOT met'} on {mixed['held_out_examples']} held-out examples "
                  f"(sensitivity scan {mixed['scan_seconds']:.0f} s). Most sensitive ops:", ""]  # fmt: skip
        top = [{"op": o["op"][-60:], "type": o["type"], "output_nsr": o["output_nsr"], "output_snr_db": o["output_snr_db"],
                "precision": o["precision"]} for o in mixed["ops"][:10]]  # fmt: skip
        lines += [markdown_table(top), ""]
    return "\n".join(lines)


def _with_other_cases(mine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`mine` plus the cases another run (another --cases) wrote to quantizers.json, read now."""
    earlier = Path(FLAGS.output_dir) / "quantizers.json"
    names = {r["case"] for r in mine}
    kept = [r for r in json.loads(earlier.read_text())["results"] if r["case"] not in names] if earlier.exists() else []
    return kept + mine


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    start = time.time()
    mine = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in FLAGS.cases:
            mine.append(run_case(case, Path(tmp)))
            # Written after each case: a long run interrupted later keeps the cases done.
            results = _with_other_cases(mine)
            _plot(results, str(Path(FLAGS.output_dir) / "quantizers.png"))
            payload = {"litert_quantizer_version": litert_backend.version(), "runs": FLAGS.runs, "results": results}
            common.write_results(FLAGS.output_dir, "quantizers", payload, _markdown(results), start)
    return 0


if __name__ == "__main__":
    app.run(main)
