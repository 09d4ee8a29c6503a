"""Human-readable results: markdown tables and PNG plots from JSON-ready rows.

A leaf (imports only `nlighten_tf.io`), shared by bench, optimize, edgetpu, recipes and the tools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value != 0 else f"{value:,.2f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table; numbers right-aligned. Columns default to the first row's keys."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    numeric = [all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows) for c in columns]
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---:" if n else "---" for n in numeric) + "|"
    body = ["| " + " | ".join(format_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def pyplot():
    # Agg: plots are files; no display on the machines this runs on.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_size(
    rows: Sequence[Mapping[str, Any]], path: str, size_key: str = "gzip_bytes", accuracy_key: str = "top1"
) -> str | None:
    """Scatter of accuracy (%) against file size (KB), one labelled point per model.

    Rows without accuracy are left out; returns None (and writes nothing) if none has one."""
    points = [r for r in rows if r.get(accuracy_key) is not None and r.get(size_key)]
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for r in points:
        x, y = r[size_key] / 1024.0, 100.0 * r[accuracy_key]
        ax.scatter([x], [y])
        ax.annotate(str(r["name"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"{'gzipped ' if 'gzip' in size_key else ''}file size (KB)")
    ax.set_ylabel(f"{accuracy_key} accuracy of the .tflite (%)")
    ax.set_title("Accuracy vs size")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_latency_bars(rows: Sequence[Mapping[str, Any]], path: str, title: str = "Latency per inference") -> str | None:
    """Grouped bars of median latency (ms) per model and thread count, p90 as the whisker."""
    if not rows:
        return None
    plt = pyplot()
    names = list(dict.fromkeys(str(r["name"]) for r in rows))
    threads = sorted({int(r["threads"]) for r in rows})
    width = 0.8 / len(threads)
    fig, ax = plt.subplots(figsize=(max(6.4, 1.2 * len(names) + 2), 4.4))
    for j, t in enumerate(threads):
        by_name = {str(r["name"]): r for r in rows if int(r["threads"]) == t}
        xs = [i + (j - (len(threads) - 1) / 2) * width for i in range(len(names))]
        medians = [by_name[n]["median_ms"] if n in by_name else 0.0 for n in names]
        upper = [max(by_name[n]["p90_ms"] - by_name[n]["median_ms"], 0.0) if n in by_name else 0.0 for n in names]
        ax.bar(xs, medians, width, yerr=[[0.0] * len(names), upper], capsize=3, label=f"{t} thread(s)")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("median latency (ms), whisker = p90")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: str) -> str:
    import io

    from nlighten_tf.io import write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    pyplot().close(fig)
    write_bytes(path, buffer.getvalue())
    return path
