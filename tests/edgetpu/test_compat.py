"""The offline Edge TPU analysis on real converter output: the zoo's edgetpu exports map fully,
sparse/float/dynamic files are refused with the export to use, an unsupported op splits the graph
exactly there, and > 8 MiB of parameters is flagged as streamed."""

import json

import pytest

from nlighten_tf.edgetpu import compat
from nlighten_tf.litert import flatbuffer
from tests.edgetpu import models


@pytest.mark.slow
@pytest.mark.parametrize("name", models.ZOO)
def test_zoo_edgetpu_exports_are_fully_mapped(edgetpu_models, name):
    path = edgetpu_models(name)
    report = compat.analyse(path)
    assert report.problems == [] and report.status == "mapped", report.verdict
    assert report.first_unsupported is None
    assert report.ops_mapped == 1.0 and report.madds_mapped == 1.0
    assert all(row.mapped for row in report.compute_ops), [r for r in report.ops if not r.mapped]
    # The uint8 input/output conversions are the only edge ops, and do not count as compute ops.
    assert [row.op for row in report.ops if row.edge] == ["QUANTIZE", "QUANTIZE"]
    # MAdds read from the flatbuffer agree with the Keras-side count (same convention).
    assert report.madds_total == models.keras_madds(path)
    assert report.fits_on_chip and report.streamed_bytes == 0
    assert report.verdict.startswith(f"ALL {len(report.compute_ops)} ops on the Edge TPU (100% of ops, 100% of MAdds")
    assert compat.format_report(report).splitlines()[-1] == f"Edge TPU: {report.verdict}"


def test_unsupported_op_in_the_middle_splits_the_graph_there(edgetpu_models):
    path = edgetpu_models("split")
    graph = flatbuffer.load(path)
    leaky = graph.op_types.index("LEAKY_RELU")
    assert 0 < leaky < len(graph.op_types) - 2  # really in the middle: convolutions before and after
    report = compat.analyse(path)
    assert report.status == "split" and report.problems == []
    assert report.first_unsupported == leaky
    assert report.ops[leaky].reason == "LEAKY_RELU is not on Coral's list of supported ops"
    assert all(row.mapped for row in report.ops[:leaky])
    assert not any(row.mapped for row in report.ops[leaky:])
    assert all(row.reason.startswith(f"after the split at LEAKY_RELU #{leaky}") for row in report.ops[leaky + 1:])
    assert "CONV_2D" in graph.op_types[:leaky] and "CONV_2D" in graph.op_types[leaky + 1:]
    before = [row for row in report.compute_ops if row.index < leaky]
    assert report.ops_mapped == pytest.approx(len(before) / len(report.compute_ops))
    assert report.madds_mapped == pytest.approx(sum(r.madds for r in before) / report.madds_total)
    assert 0 < report.madds_mapped < 1
    assert report.verdict.startswith(f"SPLIT at LEAKY_RELU #{leaky}: LEAKY_RELU is not on Coral's list")
    # Only the parameters of the ops before the split are cached on the Edge TPU.
    assert report.param_bytes == sum(r.param_bytes for r in before) < report.total_param_bytes


def test_documented_op_limitation_splits_the_graph(edgetpu_models):
    path = edgetpu_models("channel_mean")
    graph = flatbuffer.load(path)
    means = [i for i, t in enumerate(graph.op_types) if t == "MEAN"]
    report = compat.analyse(path)
    # The channel MEAN breaks "a z-reduction needs a multiple of 4"; the spatial MEAN after it would not.
    assert report.first_unsupported == means[0] and report.status == "split"
    reason = report.ops[means[0]].reason
    assert reason.startswith("reduces over the z (channel) dimension of size 6, not a multiple of 4")
    assert reason.endswith(f"(Coral: {compat.SUPPORTED_OPS['MEAN']})")
    assert report.ops[means[0] - 1].op == "CONV_2D" and report.ops[means[0] - 1].mapped


def test_parameters_over_8_mib_are_flagged_as_streamed(edgetpu_models):
    report = compat.analyse(edgetpu_models("large"))
    assert report.status == "mapped", report.verdict  # every op maps; the memory is the problem
    assert report.param_bytes >= models.large_weight_bytes() > compat.SRAM_BYTES
    assert not report.fits_on_chip
    assert report.streamed_bytes == report.param_bytes - compat.SRAM_BYTES > 0
    assert "exceed the 8.00 MiB on-chip SRAM" in report.verdict and "stream from host memory" in report.verdict
    assert "STREAMED from host memory" in compat.format_report(report)


def test_sparse_int8_export_is_refused_with_the_densify_reason(edgetpu_models):
    path = edgetpu_models("sparse")
    assert "DENSIFY" in flatbuffer.load(path).op_types
    problems = compat.check_compilable(path)
    assert len(problems) == 1 and problems[0].startswith("sparse tensors:")
    assert "does not support DENSIFY" in problems[0] and "target edgetpu" in problems[0]
    report = compat.analyse(path)
    assert report.status == "refused" and report.verdict == f"REFUSED - {problems[0]}"
    first = report.ops[report.first_unsupported]
    assert first.op == "DENSIFY" and "sparse weights (DENSIFY)" in first.reason


def test_float_model_is_refused(edgetpu_models):
    problems = compat.check_compilable(edgetpu_models("float"))
    assert len(problems) == 1 and problems[0].startswith("float tensors:")
    assert "full-integer" in problems[0] and "export with target edgetpu" in problems[0]
    report = compat.analyse(edgetpu_models("float"))
    assert report.status == "refused" and report.ops_mapped == 0.0
    assert "float32 tensor" in report.ops[0].reason


def test_dynamic_input_size_is_refused(edgetpu_models):
    problems = compat.check_compilable(edgetpu_models("dynamic"))
    assert [p.split(":")[0] for p in problems] == ["dynamic shapes"]
    assert "fixed input_shape" in problems[0]
    report = compat.analyse(edgetpu_models("dynamic"))
    assert report.ops[report.first_unsupported].reason.startswith("dynamic shape:")


def test_json_form_and_bytes_input(edgetpu_models):
    path = edgetpu_models("split")
    report = compat.analyse(path.read_bytes())
    data = json.loads(json.dumps(report.as_dict()))
    assert data["first_unsupported"] == report.first_unsupported and data["sram_bytes"] == compat.SRAM_BYTES
    assert [row["device"] for row in data["ops"]] == [row.device for row in report.ops]
    summary = {(r["op"], r["mapped to"]): r["count"] for r in data["op_summary"]}
    assert summary[("LEAKY_RELU", "CPU")] == 1 and summary[("CONV_2D", "Edge TPU")] == 1


def test_not_a_flatbuffer_is_a_clear_error(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_text("not a model")
    with pytest.raises(flatbuffer.TFLiteFileError, match="not a TFLite flatbuffer"):
        compat.analyse(path)
