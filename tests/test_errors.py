"""Every public error class of the package derives from `NlightenError`, the one class tools catch.

Read statically with `ast` (no TensorFlow import): a class is an error if one of its bases is a
builtin exception or another error class of the package.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

from nlighten_tf.errors import NlightenError

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "nlighten_tf"
BUILTIN_EXCEPTIONS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}
# Not errors: a Ctrl-C/SIGTERM during a run, which tools report with exit 130 and a --resume hint.
NOT_ERRORS = {"RunInterrupted"}


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def exception_classes(package_dir: Path = PACKAGE_DIR) -> dict[str, tuple[str, set[str]]]:
    """Class name -> (module path, base names) for every exception class defined in the package."""
    classes = {}
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                classes[node.name] = (
                    str(path.relative_to(package_dir.parent)),
                    {_base_name(b) for b in node.bases},
                )
    exceptions = set(BUILTIN_EXCEPTIONS)
    changed = True
    while changed:  # transitive: a subclass of a package error is an error
        changed = False
        for name, (_, bases) in classes.items():
            if name not in exceptions and bases & exceptions:
                exceptions.add(name)
                changed = True
    return {name: classes[name] for name in exceptions if name in classes}


def _derives_from_base(name: str, classes: dict[str, tuple[str, set[str]]]) -> bool:
    if name == NlightenError.__name__:
        return True
    return any(_derives_from_base(base, classes) for base in classes.get(name, ("", set()))[1])


def test_every_public_error_class_derives_from_the_base():
    classes = exception_classes()
    assert {"RecipeError", "DataError", "TFLiteFileError", "CompileError"} <= set(classes)  # the reader works
    outside = sorted(
        f"{path}: {name}"
        for name, (path, _) in classes.items()
        if not name.startswith("_") and name not in NOT_ERRORS and not _derives_from_base(name, classes)
    )
    assert not outside, "error classes not derived from NlightenError:\n" + "\n".join(outside)


def test_errors_keep_their_builtin_base_for_callers_that_catch_it():
    from nlighten_tf.data import DataError
    from nlighten_tf.edgetpu.compiler import CompileError

    assert issubclass(DataError, NlightenError) and issubclass(DataError, ValueError)
    assert issubclass(CompileError, NlightenError) and issubclass(CompileError, RuntimeError)
    assert not issubclass(CompileError, ValueError)  # why the base is Exception, not ValueError
