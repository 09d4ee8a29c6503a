"""Human-readable results: markdown tables (and, later, plots) from JSON-ready rows."""

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
