"""The edgetpu_compiler wrapper: its command line, and its log parsed from text in the compiler's
documented output format (Coral's compiler page and the logs quoted in google-coral issues; no
compilation is implied: these are the format). The compiler itself is absent on this project's
machines, and that path runs for real."""

import json
import os
import shutil

import pytest

from nlighten_tf.edgetpu import compiler

# Coral's documented console output for a fully mapped model (compiler v16, --show_operations).
FULLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 1164 ms.

Input model: mobilenet_v2_1.0_224_quant.tflite
Input size: 3.38MiB
Output model: mobilenet_v2_1.0_224_quant_edgetpu.tflite
Output size: 3.94MiB
On-chip memory used for caching model parameters: 3.70MiB
On-chip memory remaining for caching model parameters: 4.31MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 65
Operation log: mobilenet_v2_1.0_224_quant_edgetpu.log

Operator                       Count      Status

ADD                            10         Mapped to Edge TPU
AVERAGE_POOL_2D                1          Mapped to Edge TPU
CONV_2D                        35         Mapped to Edge TPU
DEPTHWISE_CONV_2D              17         Mapped to Edge TPU
QUANTIZE                       1          Operation is otherwise supported, but not mapped due to some unspecified limitation
RESHAPE                        1          Mapped to Edge TPU
SOFTMAX                        1          Mapped to Edge TPU
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# The same format for a model that leaves the Edge TPU part-way, with the documented statuses.
PARTLY_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 512 ms.

Input model: detector.tflite
Input size: 12.50MiB
Output model: detector_edgetpu.tflite
Output size: 12.61MiB
On-chip memory used for caching model parameters: 7.25MiB
On-chip memory remaining for caching model parameters: 0.00B
Off-chip memory used for streaming uncached model parameters: 5.01MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 48
Operation log: detector_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 40
Number of operations that will run on CPU: 8

Operator                       Count      Status

CONV_2D                        30         Mapped to Edge TPU
CONV_2D                        2          More than one subgraph is not supported
DEPTHWISE_CONV_2D              10         Mapped to Edge TPU
LEAKY_RELU                     1          Operation not supported
RESHAPE                        2          Tensor has unsupported rank (up to 3 innermost dimensions mapped)
CUSTOM                         1          Operation is working on an unsupported data type
DEQUANTIZE                     2          Operation not supported
Compilation child process completed within timeout period.
Compilation succeeded!
"""

# A rejected model, as quoted from the compiler in google-coral/edgetpu issue #829.
FAILED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.
ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors.
Compilation failed: Model failed in Tflite interpreter. Please ensure model can be loaded/run in Tflite interpreter.
Compilation child process completed within timeout period.
Compilation failed!
"""

# An operation log file (NAME_edgetpu.log), in the format of compiler v14.
OPERATION_LOG = """\
Edge TPU Compiler version 14.1.317412892
Input: tiny_yolo.tflite
Output: tiny_yolo_edgetpu.tflite

Operator                       Count      Status

CONCATENATION                  1          More than one subgraph is not supported
MAX_POOL_2D                    6          Mapped to Edge TPU
RESIZE_NEAREST_NEIGHBOR        1          Operation version not supported
CONV_2D                        11         Mapped to Edge TPU
"""


def test_build_command_puts_the_options_before_the_model():
    command = compiler.build_command(
        "/usr/bin/edgetpu_compiler", "m.tflite", "out", num_segments=3, min_runtime_version=13, timeout_sec=60
    )
    assert command == [
        "/usr/bin/edgetpu_compiler", "--out_dir", "out", "--show_operations", "--num_segments", "3",
        "--min_runtime_version", "13", "--timeout_sec", "60", "m.tflite",
    ]  # fmt: skip
    # One segment is the compiler's default: not passed; the operation table can be left to the log file.
    assert compiler.build_command("c", "m.tflite", "o", num_segments=1, show_operations=False) == [
        "c", "--out_dir", "o", "m.tflite"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs", [{"num_segments": 0}, {"min_runtime_version": 0}, {"timeout_sec": 0}]
)
def test_build_command_rejects_bad_values(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        compiler.build_command("c", "m.tflite", "o", **kwargs)


def test_parse_fully_mapped_log():
    log = compiler.parse_log(FULLY_MAPPED)
    assert log.version == "16.0.384591198" and log.succeeded and log.errors == [] and log.compile_ms == 1164
    (model,) = log.models
    assert model.input_model == "mobilenet_v2_1.0_224_quant.tflite"
    assert model.output_model == "mobilenet_v2_1.0_224_quant_edgetpu.tflite"
    assert model.on_chip_bytes == round(3.70 * 2**20) and model.on_chip_remaining_bytes == round(4.31 * 2**20)
    assert model.off_chip_bytes == 0 and model.input_size == round(3.38 * 2**20)
    assert model.subgraphs == 1 and model.total_ops == 65
    assert model.operation_log == "mobilenet_v2_1.0_224_quant_edgetpu.log"
    assert [(op.op, op.count, op.mapped) for op in model.ops] == [
        ("ADD", 10, True), ("AVERAGE_POOL_2D", 1, True), ("CONV_2D", 35, True), ("DEPTHWISE_CONV_2D", 17, True),
        ("QUANTIZE", 1, False), ("RESHAPE", 1, True), ("SOFTMAX", 1, True),
    ]  # fmt: skip
    assert model.ops[4].status.startswith("Operation is otherwise supported, but not mapped")
    # The shares come from the table as printed (Coral's sample lists 66 ops against a total of 65).
    assert log.ops_mapped == pytest.approx(65 / 66)
    assert json.loads(json.dumps(log.as_dict()))["models"][0]["ops_mapped"] == pytest.approx(65 / 66)


def test_parse_partly_mapped_log():
    log = compiler.parse_log(PARTLY_MAPPED)
    (model,) = log.models
    assert log.succeeded and model.tpu_ops == 40 and model.cpu_ops == 8
    assert model.off_chip_bytes == round(5.01 * 2**20) and model.on_chip_remaining_bytes == 0
    cpu = {(op.op, op.status) for op in model.ops if not op.mapped}
    assert ("LEAKY_RELU", "Operation not supported") in cpu
    assert ("RESHAPE", "Tensor has unsupported rank (up to 3 innermost dimensions mapped)") in cpu
    assert ("CUSTOM", "Operation is working on an unsupported data type") in cpu
    assert ("CONV_2D", "More than one subgraph is not supported") in cpu
    assert sum(op.count for op in model.ops if op.mapped) == model.tpu_ops
    assert log.ops_mapped == pytest.approx(40 / 48)


def test_parse_failed_log():
    log = compiler.parse_log(FAILED)
    assert not log.succeeded and log.models == [] and log.ops_mapped is None
    assert log.errors[0].startswith("ERROR: Attempting to use a delegate that only supports static-sized tensors")
    assert log.errors[1].startswith("Compilation failed: Model failed in Tflite interpreter")


def test_parse_operation_log_file():
    log = compiler.parse_log(OPERATION_LOG)
    (model,) = log.models
    assert log.version == "14.1.317412892"
    assert model.input_model == "tiny_yolo.tflite" and model.output_model == "tiny_yolo_edgetpu.tflite"
    assert [(op.op, op.count, op.mapped) for op in model.ops] == [
        ("CONCATENATION", 1, False), ("MAX_POOL_2D", 6, True), ("RESIZE_NEAREST_NEIGHBOR", 1, False),
        ("CONV_2D", 11, True),
    ]  # fmt: skip


def test_parse_size_units():
    assert compiler.parse_size("0.00B") == 0
    assert compiler.parse_size("512.00KiB") == 512 * 1024
    assert compiler.parse_size("1.50GiB") == round(1.5 * 2**30)
    with pytest.raises(ValueError):
        compiler.parse_size("lots")


def _path_without_compiler():
    entries = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not shutil.which(compiler.COMPILER, path=d)]
    path = os.pathsep.join(entries)
    assert compiler.find_compiler(path) is None
    return path


def test_absent_compiler_is_reported_with_install_commands(edgetpu_models, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without_compiler())
    assert compiler.find_compiler() is None
    with pytest.raises(compiler.CompilerNotFound) as raised:
        compiler.compile(edgetpu_models("split"), tmp_path / "out")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("edgetpu_compiler not found on PATH")
    assert "coral-edgetpu-stable main" in message and "sudo apt-get install edgetpu-compiler" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    # The stage function still writes the offline analysis and says why nothing was compiled.
    summary = compiler.run(edgetpu_models("split"), tmp_path / "stage")
    assert summary["compiled"] is False and summary["reason"] == message
    assert summary["status"] == "split" and summary["first_unsupported"] is not None
    assert sorted(p.name for p in (tmp_path / "stage").iterdir()) == ["compat.json", "compat.txt"]
    written = json.loads((tmp_path / "stage" / "compat.json").read_text())
    assert written["verdict"] == summary["verdict"]
    assert (tmp_path / "stage" / "compat.txt").read_text().rstrip().endswith(summary["verdict"])


def test_refused_model_never_reaches_the_compiler(edgetpu_models, tmp_path):
    with pytest.raises(compiler.NotCompilable) as raised:
        compiler.compile(edgetpu_models("sparse"), tmp_path)
    assert raised.value.problems[0].startswith("sparse tensors:")
    summary = compiler.run(edgetpu_models("float"), tmp_path / "stage")
    assert summary["compiled"] is False and summary["reason"].startswith("refused: float tensors:")
    assert summary["status"] == "refused"
