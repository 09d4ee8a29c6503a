"""The Edge TPU (Coral) step: an offline op-by-op compatibility analysis (`compat`) and the
`edgetpu_compiler` subprocess with its log parsed (`compiler`); `run` does both for a stage.

Importing this package does not load TensorFlow."""

from nlighten_tf.edgetpu.compat import CompatReport, analyse, check_compilable, format_report
from nlighten_tf.edgetpu.compiler import (
    CompileError,
    CompileResult,
    CompilerNotFound,
    NotCompilable,
    compile,
    find_compiler,
    run,
)

__all__ = [
    "CompatReport", "CompileError", "CompileResult", "CompilerNotFound", "NotCompilable", "analyse",
    "check_compilable", "compile", "find_compiler", "format_report", "run",
]  # fmt: skip
