"""Auto-compression Pareto study: searched per-group channel counts against one uniform keep
ratio, at the same measured budget and with the same fine-tune, on the quickstart network.

The network: EfficientNet-Lite0 family (width 0.75, depth 0.6, 512-filter head, 32 px)
trained on Fashion-MNIST (the quickstart recipe's train stage; `--keras_model`). For each
budget (`--budgets`) and method (netadapt: `nlighten_tf.autocompress`'s search; uniform: the same
measurement loop with one ratio for every group) the model is compressed, fine-tuned for
`--epochs` with distillation from the original, and its int8 file's top-1 measured once on
the 10k test images through the interpreter. Choices use the last 5% of the training images.
At the end, every final int8 file is timed again interleaved with the original (host XNNPACK,
1 thread), so the latency columns of all rows come from one run.

Size budgets on an int8 sparse target add per-kernel sparsity to the search and the second
baseline, one sparsity for every prunable kernel (`uniform_sparsity`); their plot puts the
measured file size (`size_ratio`, of the original target file) on the x axis:

  python benchmarks/autocompress.py --keras_model=runs/quickstart/01-train/model.h5 \
      [--budgets=madds:0.5x,latency_ms:0.5x] [--epochs=0.5] [--output_dir=benchmarks/results]
  python benchmarks/autocompress.py --budgets=size_kb:0.5x,size_kb:0.3x --target=int8_sparse \
      --methods=netadapt,uniform,uniform_sparsity --output_dir=benchmarks/results/autocompress_size

Writes autocompress.json / .md / .png; each finished row is written at once, so an interrupted
run keeps what it measured.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("keras_model", "runs/quickstart/01-train/model.h5", "The trained quickstart network (.h5).")
flags.DEFINE_list("budgets", ["madds:0.5x", "latency_ms:0.5x"], "Budgets, in order.")
flags.DEFINE_list("methods", ["netadapt", "uniform"], "Methods per budget.")
flags.DEFINE_string("target", "int8", "The export target measured and written (int8_sparse: size budgets with sparsity).")
flags.DEFINE_float("epochs", 0.5, "Fine-tuning epochs after each search (same for every method).")
flags.DEFINE_float("learning_rate", 5e-4, "Fine-tuning learning rate.")
flags.DEFINE_float("step", 0.2, "Fraction of a group's channels one search proposal removes.")
flags.DEFINE_integer("score_batches", 2, "Validation batches (of 128) each proposal is scored on.")
flags.DEFINE_integer("latency_runs", 40, "Interleaved invokes per file in the search's measurements.")
flags.DEFINE_integer("final_runs", 200, "Interleaved invokes per file in the closing latency run.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where autocompress.{json,md,png} go.")


def _table(rows: list[dict], original: dict) -> str:
    from nlighten_tf.render import markdown_table

    header = (
        "Auto-compression of the quickstart network (Fashion-MNIST, 32 px), `benchmarks/autocompress.py`. "
        f"Original: {original['madds']:,} MAdds, int8 top-1 {100 * original['test_int8_accuracy']:.2f}% on the 10k test "
        "images. `achieved` is measured on the final file or graph (latency: host XNNPACK, 1 thread, interleaved with "
        "the original); `latency` is the closing interleaved run of every final file. Same fine-tune for every row."
    )  # fmt: skip
    columns = ["budget", "method", "met", "achieved", "madds_ratio", "latency_ratio", "size_kb", "size_ratio",
               "val_accuracy", "test_int8_accuracy", "search_s", "load"]  # fmt: skip
    return f"{header}\n\n{markdown_table(rows, columns)}\n"


def _plot(rows: list[dict], path: Path) -> None:
    from nlighten_tf.render import pyplot, save_figure

    plt = pyplot()
    kinds = sorted({r["budget"].split(":")[0] for r in rows})
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 4.0), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        x_key = {"latency_ms": "latency_ratio", "size_kb": "size_ratio"}.get(kind, "madds_ratio")
        for method, marker in (("netadapt", "o-"), ("uniform", "s--"), ("uniform_sparsity", "^:")):
            chosen = sorted((r for r in rows if r["budget"].startswith(kind) and r["method"] == method),
                            key=lambda r: r[x_key])  # fmt: skip
            if chosen:
                ax.plot([100 * r[x_key] for r in chosen], [100 * r["test_int8_accuracy"] for r in chosen], marker,
                        label=method)  # fmt: skip
        what = {"latency_ms": "host int8 latency", "size_kb": f"{FLAGS.target} file size"}.get(kind, "MAdds")
        ax.set_xlabel(f"{what} (% of the original, measured)")
        ax.set_ylabel("int8 test top-1 (%)")
        ax.set_title(f"{kind} budgets")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(fig, str(path))


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import os
    import tempfile

    from nlighten_tf.autocompress import search as autocompress
    from nlighten_tf.bench.latency import measure_interleaved
    from nlighten_tf.keras_io import load_keras
    from nlighten_tf.models.complexity import count_madds
    from nlighten_tf.optimize import training

    start = time.time()
    model = load_keras(Path(FLAGS.keras_model))
    train, validation, test = common.quickstart_splits()
    test_images, test_labels = common.arrays(test)
    scratch = Path(tempfile.mkdtemp(prefix="autocompress_bench_"))
    out = Path(FLAGS.output_dir)
    meter = autocompress.CostMeter(autocompress.AutocompressConfig(budget="size_kb:0.5x", target=FLAGS.target), train,
                                   scratch)  # fmt: skip
    original_file = scratch / "original.tflite"
    meter.export(model, original_file)
    original = {"madds": count_madds(model), "test_int8_accuracy": common.tflite_top1(original_file, test_images, test_labels),
                "target": FLAGS.target, "size_kb": original_file.stat().st_size / 1024}  # fmt: skip
    print(f"original: int8 test top-1 {100 * original['test_int8_accuracy']:.2f}%", flush=True)
    rows, files = [], []
    for budget in FLAGS.budgets:
        for method in FLAGS.methods:
            config = autocompress.AutocompressConfig(
                budget=budget, method=method, target=FLAGS.target, step=FLAGS.step, score_batches=FLAGS.score_batches,
                latency_runs=FLAGS.latency_runs,
            )  # fmt: skip
            tuning = training.TrainConfig(epochs=FLAGS.epochs, learning_rate=FLAGS.learning_rate, verbose=0)
            load = os.getloadavg()[0]
            began = time.time()
            try:
                result = autocompress.autocompress(model, config, train, validation, tuning, log=print)
            except ValueError as error:  # unreachable budget: a row that says so
                print(f"{budget} {method}: {error}", flush=True)
                rows.append({"budget": budget, "method": method, "met": False, "achieved": str(error)[:80]})
                continue
            path = scratch / f"{budget.replace(':', '_')}_{method}.tflite"
            path.write_bytes(result.flatbuffer)
            files.append(path)
            report = result.report
            rows.append({
                "budget": budget, "method": method, "met": report["met"],
                "achieved": round(report["achieved"]["in_budget_terms"], 4), "madds_ratio": report["madds"] / original["madds"],
                "size_kb": len(result.flatbuffer) / 1024, "size_ratio": len(result.flatbuffer) / 1024 / original["size_kb"],
                "val_accuracy": report["validation"]["final"]["accuracy"],
                "test_int8_accuracy": common.tflite_top1(path, test_images, test_labels),
                "search_s": round(report["search_seconds"]), "total_s": round(time.time() - began),
                "load": round(load, 1), "choices": {g: c["kept"] for g, c in report["choices"].items()},
                "rounds": report["rounds"],
                **({"sparsity": {n: c["final_sparsity"] for n, c in report["sparsity"].items()}}
                   if report.get("sparsity") else {}),
            })  # fmt: skip
            print(f"{budget} {method}: test int8 {100 * rows[-1]['test_int8_accuracy']:.2f}%", flush=True)
            # After every row, all final files so far against the original in one interleaved run.
            medians = [r.median_ms for r in measure_interleaved([original_file, *files], runs=FLAGS.final_runs, warmup=10)]
            by_file = dict(zip([os.fspath(f) for f in files], medians[1:], strict=True))
            for row in rows:
                path = scratch / f"{row['budget'].replace(':', '_')}_{row['method']}.tflite"
                if os.fspath(path) in by_file:
                    row["latency_ratio"] = by_file[os.fspath(path)] / medians[0]
            original["latency_ms"] = medians[0]
            _write(rows, original, out, start)
    _write(rows, original, out, start)
    return 0


def _write(rows, original, out: Path, start: float) -> None:
    payload = {"model": FLAGS.keras_model, "budgets": FLAGS.budgets, "target": FLAGS.target, "epochs": FLAGS.epochs,
               "step": FLAGS.step,
               "score_batches": FLAGS.score_batches, "original": original, "rows": rows}  # fmt: skip
    common.write_results(str(out), "autocompress", payload, _table(rows, original), start)
    plotted = [r for r in rows if "test_int8_accuracy" in r and ("latency_ratio" in r or not r["budget"].startswith("lat"))]
    if plotted:
        _plot(plotted, out / "autocompress.png")


if __name__ == "__main__":
    app.run(main)
