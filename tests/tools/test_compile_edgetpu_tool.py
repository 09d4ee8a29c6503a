"""tools/compile_edgetpu.py end to end, as a real subprocess with a PATH that has no
edgetpu_compiler (as on this project's machines): the analysis is printed and written, the absent
compiler is one line with the install commands; refused and bad files fail with one error line."""

import json
import os
import shutil

import pytest

from nlighten_tf.edgetpu import compiler
from tests.edgetpu import models
from tests.tools_runner import run_tool


def run_without_compiler(*args):
    """tools/compile_edgetpu.py with a PATH on which no edgetpu_compiler can be found."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(d for d in entries if d and not shutil.which(compiler.COMPILER, path=d))
    assert shutil.which(compiler.COMPILER, path=path) is None
    return run_tool("tools/compile_edgetpu.py", *args, timeout=300, env={"PATH": path})


def test_without_compiler_prints_analysis_and_install_line(tmp_path_factory, tmp_path):
    model = models.split(tmp_path_factory)
    out = tmp_path / "edgetpu"
    result = run_without_compiler(model, f"--output_dir={out}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Op by op (execution order):" in lines
    assert any(line.startswith("Edge TPU: SPLIT at LEAKY_RELU #") for line in lines)
    notes = [line for line in lines if line.startswith("note: edgetpu_compiler not found")]
    assert len(notes) == 1 and "sudo apt-get install edgetpu-compiler" in notes[0]
    assert f"wrote {out / 'compat.json'}" in lines and f"wrote {out / 'compat.txt'}" in lines
    report = json.loads((out / "compat.json").read_text())
    assert report["status"] == "split" and report["ops"][report["first_unsupported"]]["op"] == "LEAKY_RELU"
    assert sorted(p.name for p in out.iterdir()) == ["compat.json", "compat.txt"]  # nothing pretends to compile


def test_json_flag_prints_the_report(tmp_path_factory, tmp_path):
    result = run_without_compiler(models.split(tmp_path_factory), f"--output_dir={tmp_path}", "--json", "--analysis_only")
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("\n\nwrote ")[0]
    assert json.loads(text)["status"] == "split"
    assert "note: analysis only (compiler not run)" in result.stdout


def test_sparse_model_is_refused_in_one_line(tmp_path_factory, tmp_path):
    result = run_without_compiler(models.sparse(tmp_path_factory), f"--output_dir={tmp_path}")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "refused: sparse tensors" in lines[0]
    assert "DENSIFY" in lines[0] and "target edgetpu" in lines[0]
    assert (tmp_path / "compat.json").exists()  # the analysis is still there to read


@pytest.mark.parametrize("case", ["missing", "text"])
def test_bad_files_give_one_clear_line(case, tmp_path):
    path = tmp_path / "bad.tflite"
    if case == "text":
        path.write_text("hello, this is a text file\n")
    result = run_without_compiler(path, f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert {"missing": "no such file", "text": "not a TFLite flatbuffer"}[case] in lines[0]
