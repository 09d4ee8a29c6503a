"""`edgetpu_compiler` as a subprocess, its log parsed into a per-op table, and `run`: the
analyse-then-compile step a recipe stage or tools/compile_edgetpu.py calls.

The compiler is x86-64 Linux only and comes from Coral's own apt repository (not PyPI, not Debian).
Where it is absent, `run` says so in one line with the install commands and still writes the
offline analysis (`nlighten_tf.edgetpu.compat`); nothing pretends to compile.

Options used (coral.ai/docs/edgetpu/compiler): `--out_dir`, `--num_segments` (split the model for
pipelining over several Edge TPUs), `--min_runtime_version`, `--show_operations` (print the
operation table) and `--timeout_sec`. The compiler writes `NAME_edgetpu.tflite` and the operation
log `NAME_edgetpu.log` (`NAME_segment_I_of_N_edgetpu.*` when segmented).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from nlighten_tf import io as atomic
from nlighten_tf.edgetpu import compat
from nlighten_tf.errors import NlightenError

COMPILER = "edgetpu_compiler"
INSTALL_COMMANDS = (
    'echo "deb https://packages.cloud.google.com/apt coral-edgetpu-stable main" | '
    "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list; "
    "curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo apt-key add -; "
    "sudo apt-get update; sudo apt-get install edgetpu-compiler"
)
DEFAULT_TIMEOUT = 180  # seconds, the compiler's own default
MAPPED = "Mapped to Edge TPU"


class CompilerNotFound(NlightenError, RuntimeError):
    """`edgetpu_compiler` is not on PATH; the message is one line with the install commands."""

    def __init__(self) -> None:
        machine = platform.machine()
        where = "" if machine in ("x86_64", "AMD64") else f" (this machine is {machine}: use an x86-64 Linux host)"
        super().__init__(
            f"{COMPILER} not found on PATH: it is x86-64 Linux only, from Coral's apt repository (not on PyPI or "
            f"Debian){where}; install it with: {INSTALL_COMMANDS}"
        )
        self.install_commands = INSTALL_COMMANDS


class NotCompilable(NlightenError, ValueError):
    """A `.tflite` the Edge TPU compiler must not be given, with why and the export to use instead."""

    def __init__(self, path: str, problems: list[str]) -> None:
        super().__init__(f"{path} cannot be compiled for the Edge TPU: " + "; ".join(problems))
        self.problems = problems


class CompileError(NlightenError, RuntimeError):
    """The compiler could not be run to completion (timeout, could not start)."""


# --- the command line --------------------------------------------------------------------------


def find_compiler(path: str | None = None) -> str | None:
    """The compiler's path on `path` (default: $PATH), or None."""
    return shutil.which(COMPILER, path=path)


def build_command(
    compiler: str,
    model: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    num_segments: int | None = None,
    min_runtime_version: int | None = None,
    show_operations: bool = True,
    timeout_sec: int | None = None,
) -> list[str]:
    """The argument vector for one model (options before the model path)."""
    command = [str(compiler), "--out_dir", str(out_dir)]
    if show_operations:
        command.append("--show_operations")
    if num_segments is not None:
        if int(num_segments) < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        if int(num_segments) > 1:
            command += ["--num_segments", str(int(num_segments))]
    if min_runtime_version is not None:
        if int(min_runtime_version) < 1:
            raise ValueError(f"min_runtime_version must be a positive runtime version, got {min_runtime_version}")
        command += ["--min_runtime_version", str(int(min_runtime_version))]
    if timeout_sec is not None:
        if int(timeout_sec) < 1:
            raise ValueError(f"timeout_sec must be >= 1, got {timeout_sec}")
        command += ["--timeout_sec", str(int(timeout_sec))]
    return command + [str(model)]


# --- the log -----------------------------------------------------------------------------------

_UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9}
_SIZE = re.compile(r"^([\d.]+)\s*([KMG]?i?B)$")
_OP_ROW = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$")
_FIELDS = {  # log line label -> CompiledModel field
    "Input model": "input_model", "Input": "input_model", "Output model": "output_model", "Output": "output_model",
    "Input size": "input_size", "Output size": "output_size",
    "On-chip memory used for caching model parameters": "on_chip_bytes",
    "On-chip memory remaining for caching model parameters": "on_chip_remaining_bytes",
    "Off-chip memory used for streaming uncached model parameters": "off_chip_bytes",
    "Number of Edge TPU subgraphs": "subgraphs", "Total number of operations": "total_ops",
    "Number of operations that will run on Edge TPU": "tpu_ops", "Number of operations that will run on CPU": "cpu_ops",
    "Operation log": "operation_log",
}  # fmt: skip
_SIZE_FIELDS = {"input_size", "output_size", "on_chip_bytes", "on_chip_remaining_bytes", "off_chip_bytes"}
_INT_FIELDS = {"subgraphs", "total_ops", "tpu_ops", "cpu_ops"}


def parse_size(text: str) -> int:
    """'3.70MiB' -> bytes (the compiler prints B, KiB, MiB, GiB)."""
    match = _SIZE.match(text.strip())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a size: {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)])


@dataclasses.dataclass
class LogOp:
    op: str
    count: int
    mapped: bool  # "Mapped to Edge TPU"; anything else runs on the CPU
    status: str  # the compiler's words, e.g. "Operation not supported"


@dataclasses.dataclass
class CompiledModel:
    """One model (or segment) in the compiler's output."""

    input_model: str | None = None
    output_model: str | None = None
    input_size: int | None = None
    output_size: int | None = None
    on_chip_bytes: int | None = None
    on_chip_remaining_bytes: int | None = None
    off_chip_bytes: int | None = None
    subgraphs: int | None = None
    total_ops: int | None = None
    tpu_ops: int | None = None
    cpu_ops: int | None = None
    operation_log: str | None = None
    ops: list[LogOp] = dataclasses.field(default_factory=list)

    @property
    def ops_mapped(self) -> float | None:
        total = sum(op.count for op in self.ops)
        return sum(op.count for op in self.ops if op.mapped) / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ops_mapped": self.ops_mapped}


@dataclasses.dataclass
class CompilerLog:
    version: str | None
    succeeded: bool
    errors: list[str]  # "Compilation failed: ...", "ERROR: ..." lines
    compile_ms: int | None
    models: list[CompiledModel]

    @property
    def ops(self) -> list[LogOp]:
        return [op for model in self.models for op in model.ops]

    @property
    def ops_mapped(self) -> float | None:
        total = sum(op.count for op in self.ops)
        return sum(op.count for op in self.ops if op.mapped) / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "succeeded": self.succeeded, "errors": self.errors, "compile_ms": self.compile_ms,
            "ops_mapped": self.ops_mapped, "models": [m.as_dict() for m in self.models],
        }  # fmt: skip


def parse_log(text: str) -> CompilerLog:
    """Parses the compiler's console output or its operation log (`NAME_edgetpu.log`).

    Each "Input model:" (operation logs: "Input:") line opens a model/segment; "Label: value" lines
    fill it; the rows after an "Operator  Count  Status" header are its operation table.
    """
    version = compile_ms = None
    errors: list[str] = []
    models: list[CompiledModel] = []
    in_table = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if match := re.match(r"Edge TPU Compiler version (\S+)", line):
            version = match.group(1)
            continue
        if match := re.match(r"Model compiled successfully in (\d+) ms", line):
            compile_ms = int(match.group(1))
            continue
        if line.startswith(("Compilation failed", "ERROR:", "Internal compiler error", "Invalid model")):
            errors.append(line)
            in_table = False
            continue
        if re.match(r"Operator\s+Count\s+Status$", line):
            in_table = True
            if not models:
                models.append(CompiledModel())
            continue
        label, sep, value = line.partition(":")
        if sep and label in _FIELDS and not (in_table and _OP_ROW.match(line)):
            in_table = False
            field = _FIELDS[label]
            if field == "input_model" or not models:
                models.append(CompiledModel())
            value = value.strip()
            try:
                parsed = parse_size(value) if field in _SIZE_FIELDS else int(value) if field in _INT_FIELDS else value
            except ValueError:  # a format this parser does not know: keep the rest of the log
                parsed = None
            setattr(models[-1], field, parsed)
            continue
        if in_table:
            if match := _OP_ROW.match(line):
                status = match.group(3)
                models[-1].ops.append(LogOp(match.group(1), int(match.group(2)), status == MAPPED, status))
                continue
            in_table = False
    succeeded = not errors and ("Compilation succeeded!" in text or compile_ms is not None)
    return CompilerLog(version, succeeded, errors, compile_ms, models)


# --- compiling ---------------------------------------------------------------------------------


@dataclasses.dataclass
class CompileResult:
    succeeded: bool
    command: list[str]
    returncode: int
    log: CompilerLog
    compiled: list[Path]  # *_edgetpu.tflite
    files: list[Path]  # everything written to out_dir
    transcript: Path  # the compiler's console output
    summary_path: Path
    error: str | None

    @property
    def summary(self) -> dict[str, Any]:
        models = self.log.models
        return {
            "succeeded": self.succeeded, "error": self.error, "command": self.command, "returncode": self.returncode,
            "compiler_version": self.log.version, "compiled": [str(p) for p in self.compiled],
            "transcript": str(self.transcript), "files": [str(p) for p in self.files],
            "on_chip_bytes": _total(m.on_chip_bytes for m in models),
            "off_chip_bytes": _total(m.off_chip_bytes for m in models),
            "ops_mapped": self.log.ops_mapped,
            "ops": [dataclasses.asdict(op) for op in self.log.ops],
            "log": self.log.as_dict(),
        }  # fmt: skip


def _total(values: Any) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def compile(  # noqa: A001 - the verb is the point; the builtin is not used here
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    num_segments: int | None = None,
    min_runtime_version: int | None = None,
    timeout: int = DEFAULT_TIMEOUT,
    compiler: str | None = None,
) -> CompileResult:
    """Runs `edgetpu_compiler` on a full-integer dense `.tflite` and moves its outputs into `out_dir`.

    Raises NotCompilable (float/sparse/dynamic model, with the export to use), CompilerNotFound,
    or CompileError when the compiler times out or cannot start. A compilation the compiler itself
    rejects comes back with `succeeded=False` and its error lines; the transcript and a JSON summary
    are written either way.
    """
    path = Path(path)
    problems = compat.check_compilable(path)
    if problems:
        raise NotCompilable(str(path), problems)
    executable = compiler or find_compiler()
    if executable is None:
        raise CompilerNotFound()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The compiler writes into a private directory; finished files are renamed into out_dir.
    work = Path(tempfile.mkdtemp(prefix=".edgetpu_compiler.", dir=out_dir))
    try:
        command = build_command(executable, path.resolve(), work, num_segments, min_runtime_version, True, timeout)
        try:
            process = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 30, cwd=work)
        except subprocess.TimeoutExpired as error:
            raise CompileError(f"{COMPILER} did not finish within {timeout + 30} s (--timeout_sec {timeout})") from error
        except OSError as error:
            raise CompileError(f"could not run {executable}: {error}") from error
        transcript_text = process.stdout + (f"\n{process.stderr}" if process.stderr.strip() else "")
        log = parse_log(transcript_text)
        files = []
        for produced in sorted(work.iterdir()):
            target = out_dir / produced.name
            os.replace(produced, target)
            files.append(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for model in log.models:  # without a table on the console, read the operation log file
        if not model.ops and model.operation_log and (out_dir / Path(model.operation_log).name).exists():
            parsed = parse_log((out_dir / Path(model.operation_log).name).read_text(errors="replace"))
            model.ops = parsed.ops
    compiled = [f for f in files if f.name.endswith("_edgetpu.tflite")]
    succeeded = process.returncode == 0 and log.succeeded and bool(compiled)
    error = None
    if not succeeded:
        error = "; ".join(log.errors) or f"{COMPILER} exited with code {process.returncode} and wrote no model"
    transcript = atomic.write_text(out_dir / f"{path.stem}_edgetpu_compiler.log", transcript_text)
    result = CompileResult(
        succeeded, command, process.returncode, log, compiled, files, transcript,
        out_dir / f"{path.stem}_edgetpu_compile.json", error,
    )  # fmt: skip
    atomic.write_json(result.summary_path, result.summary)
    return result


def run(
    tflite_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    num_segments: int | None = None,
    min_runtime_version: int | None = None,
    timeout: int = DEFAULT_TIMEOUT,
    analysis_only: bool = False,
    compiler: str | None = None,
) -> dict[str, Any]:
    """The Edge TPU step: offline analysis (`compat.json`, `compat.txt` in `out_dir`), then the
    compiler when the file is compilable and the compiler is installed.

    Returns a JSON-ready summary: verdict, status, the predicted shares, `compiled` (bool) and
    `reason` (why not compiled, or "compiled"), plus the compiler's summary when it ran.
    Raises flatbuffer.TFLiteFileError for a missing or corrupt file.
    """
    out_dir = Path(out_dir)
    report = compat.analyse(tflite_path)
    compat_json = atomic.write_json(out_dir / "compat.json", report.as_dict())
    compat_txt = atomic.write_text(out_dir / "compat.txt", compat.format_report(report) + "\n")
    summary: dict[str, Any] = {
        "model": str(tflite_path), "status": report.status, "verdict": report.verdict,
        "ops_mapped": report.ops_mapped, "madds_mapped": report.madds_mapped,
        "first_unsupported": report.first_unsupported, "param_bytes": report.param_bytes,
        "fits_on_chip": report.fits_on_chip, "streamed_bytes": report.streamed_bytes,
        "compiled": False, "reason": "", "files": [str(compat_json), str(compat_txt)],
    }  # fmt: skip
    executable = compiler or find_compiler()
    if report.problems:
        summary["reason"] = "refused: " + "; ".join(report.problems)
    elif analysis_only:
        summary["reason"] = "analysis only (compiler not run)"
    elif executable is None:
        summary["reason"] = str(CompilerNotFound())
    else:
        result = compile(tflite_path, out_dir, num_segments, min_runtime_version, timeout, executable)
        summary.update(compiled=result.succeeded, reason="compiled" if result.succeeded else result.error)
        summary["compiler"] = result.summary
        summary["files"] += [str(p) for p in (*result.files, result.transcript, result.summary_path)]
    return summary
