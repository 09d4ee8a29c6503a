"""The model-zoo table: our parameter and MAdds counts against the published figures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from nlighten_tf.models import complexity, registry


def model_row(name: str) -> dict[str, Any]:
    """Builds `name` at its default resolution with the published class count and compares."""
    info = registry.info(name)
    published = info.published
    classes = published.classes if published else info.default_num_classes
    model = registry.build(name, num_classes=classes)
    params = complexity.count_params(model)
    madds = complexity.count_madds(model)
    row: dict[str, Any] = {
        "model": name,
        "input": info.default_resolution,
        "classes": classes,
        "params (M)": params / 1e6,
        "published params (M)": published.params / 1e6 if published else None,
        "params diff (%)": 100 * (params / published.params - 1) if published else None,
        "MAdds (B)": madds / 1e9,
        "published MAdds (B)": published.madds / 1e9 if published and published.madds else None,
        "MAdds diff (%)": 100 * (madds / published.madds - 1) if published and published.madds else None,
        "published top-1 (%)": published.top1 if published else None,
    }
    return row


def zoo_table(
    names: Iterable[str] | None = None, progress: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    rows = []
    for name in names or registry.names():
        if progress:
            progress(name)
        rows.append(model_row(name))
    return rows
