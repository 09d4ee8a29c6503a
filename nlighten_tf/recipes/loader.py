"""A recipe file -> a validated `Recipe`: read, apply `--override`s, validate.

Above both `schema` (validation) and `overrides` (which checks its dotted keys against the
schema), so that neither imports the other's caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nlighten_tf.recipes import overrides as overrides_lib
from nlighten_tf.recipes import schema


def load(path: str | Path, overrides: Sequence[str] = ()) -> schema.Recipe:
    """Reads, overrides (``key=value`` strings, see overrides.py) and validates a recipe file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise schema.RecipeError(f"{source}: no such recipe file") from None
    except UnicodeDecodeError as error:
        raise schema.RecipeError(
            f"{source}: not a text (UTF-8) file: byte {error.object[error.start]:#04x} at offset {error.start}; "
            "a recipe is a YAML text file"
        ) from None
    except OSError as error:
        raise schema.RecipeError(f"{source}: cannot read: {error.strerror}") from None
    raw = schema.parse_yaml(text, source)
    raw = overrides_lib.apply(raw, overrides, source)
    return schema.from_dict(raw, source)
