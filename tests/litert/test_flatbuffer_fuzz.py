"""Seeded fuzzing of the .tflite reader and the tools that read files (issue 17, items 1-2).

Mutants of the digits int8_sparse export (byte flips, random bytes, zeroed ranges, truncations at
seeded offsets) go through the reader in-process (`flatbuffer.parse`, `tflite_inspection.inspect_file`,
`compat.analyse`) and a sample of them through the CLIs in subprocesses. The only exception
allowed is the reader's own `TFLiteFileError`; no tool may die by a signal or print a traceback,
and a CLI that fails prints one error line naming the file.
"""

import collections
import random
from pathlib import Path

import pytest

from nlighten_tf.bench import tflite_inspection
from nlighten_tf.edgetpu import compat
from nlighten_tf.litert import flatbuffer
from tests.tools_runner import run_tool

SEED = 17
MUTANTS = 300
ZERO_LENGTHS = (1, 4, 16, 64, 256, 1178)  # 1,178 bytes: the segfaulting range


def mutate(original: bytes, rng: random.Random) -> tuple[str, bytes]:
    raw = bytearray(original)
    kind = rng.choice(("flip", "bytes", "zero", "truncate"))
    if kind == "flip":
        for _ in range(rng.choice((1, 1, 2, 4))):
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
    elif kind == "bytes":
        start = rng.randrange(len(raw))
        for i in range(start, min(start + rng.choice((1, 2, 4, 8)), len(raw))):
            raw[i] = rng.randrange(256)
    elif kind == "zero":
        start = rng.randrange(8, len(raw))
        end = min(start + rng.choice(ZERO_LENGTHS), len(raw))
        raw[start:end] = bytes(end - start)
    else:
        del raw[rng.randrange(len(raw)) :]
    return kind, bytes(raw)


def mutants(original: bytes, count: int = MUTANTS) -> list[tuple[str, bytes]]:
    rng = random.Random(SEED)
    return [mutate(original, rng) for _ in range(count)]


def read_in_process(raw: bytes, path: Path) -> str:
    """'ok' or 'TFLiteFileError'; anything else propagates (and fails the test)."""
    path.write_bytes(raw)
    try:
        flatbuffer.parse(raw, str(path))
        report = tflite_inspection.inspect_file(path)
        tflite_inspection.format_report(report)
        compat.format_report(compat.analyse(path))
    except flatbuffer.TFLiteFileError as error:
        message = str(error)
        assert message.startswith(f"{path}: "), message  # names the file
        assert "\n" not in message, message
        return "TFLiteFileError"
    return "ok"


def test_reader_raises_only_its_own_error_on_mutants(export_target, tmp_path):
    original = export_target("int8_sparse").read_bytes()
    outcomes: collections.Counter = collections.Counter()
    for index, (kind, raw) in enumerate(mutants(original)):
        outcomes[kind, read_in_process(raw, tmp_path / f"mutant_{index}.tflite")] += 1
    print(f"\n{MUTANTS} mutants of {len(original)} bytes (seed {SEED}): {dict(sorted(outcomes.items()))}")
    rejected = sum(n for (_, outcome), n in outcomes.items() if outcome == "TFLiteFileError")
    # The corpus is useful only if it holds both kinds: files the reader must reject and
    # damaged-but-readable ones (weights bytes) that go all the way through the inspectors.
    assert 0.2 * MUTANTS < rejected < 0.9 * MUTANTS, outcomes
    assert outcomes["truncate", "ok"] <= 2, outcomes  # only trailing padding may go


def test_shape_bit_flip_cannot_allocate_beyond_the_file(export_target, tmp_path):
    """The issue's 72 GiB allocation: a flipped high bit in a sparse weight's shape."""
    raw = export_target("int8_sparse").read_bytes()
    fb = flatbuffer.schema()
    subgraph = fb.Model.GetRootAs(raw, 0).Subgraphs(0)
    sparse = next(k for k in range(subgraph.TensorsLength()) if subgraph.Tensors(k).Sparsity() is not None)
    tensor = subgraph.Tensors(sparse)
    # Last dimension (a dense level of the sparse storage) gets bit 28 set.
    shape_start = tensor._tab.Vector(tensor._tab.Offset(4))
    position = shape_start + 4 * (tensor.ShapeLength() - 1) + 3
    mutant = bytearray(raw)
    mutant[position] |= 0x10
    path = tmp_path / "big.tflite"
    path.write_bytes(bytes(mutant))
    with pytest.raises(flatbuffer.TFLiteFileError, match=rf"^{path}: tensor {sparse} .*(elements|bytes|sparsity)"):
        tflite_inspection.inspect_file(path)


def _cli_args(tool: str, path: Path, out: Path) -> list[str]:
    return {
        "benchmark.py": [f"--tflite={path}", "--runs=1", "--warmup=0", "--norss", "--runtime=ai_edge_litert",
                         "--noxnnpack", f"--output_dir={out}"],
        "inspect_tflite.py": [str(path)],
        "compile_edgetpu.py": [str(path), "--analysis_only", f"--output_dir={out}"],
    }[tool]  # fmt: skip


def test_cli_tools_survive_mutants(export_target, tmp_path):
    original = export_target("int8_sparse").read_bytes()
    # A dozen, 4 per tool: files the reader rejects, and files it reads (they reach the inspectors
    # and, in benchmark.py, the interpreter: one of those, as a benchmark run costs ~30 s here).
    rejected, readable = [], []
    for index, (_, raw) in enumerate(mutants(original)):
        path = tmp_path / f"m{index}.tflite"
        (rejected if read_in_process(raw, path) != "ok" else readable).append(path)
        if len(rejected) >= 7 and len(readable) >= 5:
            break
    plan = (
        [("inspect_tflite.py", p) for p in rejected[:2] + readable[:2]]
        + [("compile_edgetpu.py", p) for p in rejected[2:4] + readable[2:4]]
        + [("benchmark.py", p) for p in rejected[4:7] + readable[4:5]]
    )  # fmt: skip
    assert len(plan) == 12
    codes: collections.Counter = collections.Counter()
    for index, (tool, path) in enumerate(plan):
        result = run_tool(f"tools/{tool}", *_cli_args(tool, path, tmp_path / f"out{index}"))
        codes[tool, result.returncode] += 1
        context = f"{tool} {path}: rc {result.returncode}\n{result.stderr[-3000:]}"
        assert result.returncode >= 0, context  # not killed by a signal (139 = the shell's SIGSEGV)
        assert "Traceback" not in result.stderr, context
        if result.returncode:
            errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
            assert len(errors) == 1 and str(path) in errors[0], context
            refused = tool == "compile_edgetpu.py" and "refused" in errors[0]  # int8_sparse: DENSIFY, by design
            assert result.returncode == (1 if refused else 2), context
        if path in rejected:
            assert result.returncode == 2, context
    print(f"\nCLI runs on {len(plan)} mutants: {dict(sorted(codes.items()))}")
