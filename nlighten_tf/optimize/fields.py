"""`documented`: a technique-config dataclass field that carries its own documentation.

Recipe stages, the single-technique tools' flags and recipes/README.md's key tables are all
derived from the technique configs (nlighten_tf.recipes.stage_types), so each key's doc and
valid values are written once, here on the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any


def documented(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    factory: Callable[[], Any] | Any = dataclasses.MISSING,
    choices: Iterable[str] | None = None,
) -> Any:
    """A dataclass field with ``metadata["doc"]`` (one sentence for tables and ``--help``) and,
    for enumerations, ``metadata["choices"]`` (the valid values, shown in docs and used as the
    tools' enum flags; the config's own ``__post_init__`` still does the checking)."""
    metadata: dict[str, Any] = {"doc": doc}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, default_factory=factory, metadata=metadata)
