"""The one base class of every error the package raises on bad input or a failed step.

Tools catch `NlightenError` and print its message as one line (exit 2) instead of listing each
module's error classes. It derives from `Exception`, not `ValueError`: the package's errors are
of two kinds, bad input (`ValueError` subclasses: RecipeError, DataError, ...) and a failed
external step (`RuntimeError` subclasses: CompileError, DeviceError, ...), and callers catch those
builtin bases. So each class keeps its builtin base as well, `class X(NlightenError, ValueError)`,
and making the base a `ValueError` would turn every `RuntimeError` one into a `ValueError` too,
which `except ValueError` handlers written for bad input would then swallow.

A leaf: imports nothing from the package.
"""

from __future__ import annotations


class NlightenError(Exception):
    """Base of every error class in nlighten_tf; its message is one line meant for the user."""
