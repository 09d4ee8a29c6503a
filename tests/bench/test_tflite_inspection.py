"""Inspection read back from real files: sparsity and clusters against the Keras model,
XNNPACK sparse eligibility for the zoo's sparse-ready and default-padding MobileNetV2, and
clear errors for files that are not whole TFLite flatbuffers."""

import numpy as np
import pytest

from nlighten_tf.bench import tflite_inspection
from nlighten_tf.litert import flatbuffer
from tests.export import artifacts


def _weights_by_layer(report, layer_names):
    found = {}
    for name in layer_names:
        matches = [w for w in report.weights if f"/{name}/" in w.name]
        assert len(matches) == 1, (name, [w.name for w in matches])
        found[name] = matches[0]
    return found


def test_sparsity_and_clusters_read_back_match_keras(zoo_pair):
    path = zoo_pair["sparse_ready"]
    stats = artifacts.keras_stats(path)
    report = tflite_inspection.inspect_file(path)
    weights = _weights_by_layer(report, stats)
    for name, w in weights.items():
        assert w.stored_sparse, name
        assert w.sparsity == pytest.approx(stats[name]["sparsity"], abs=1e-6), name
        # BatchNorm folding scales each output channel, so clusters survive per channel.
        assert w.unique_per_channel <= artifacts.CLUSTERS, name
    # The decoded sparse storage puts every zero exactly where Keras has it.
    graph = flatbuffer.load(path)
    for index, tensor in enumerate(graph.tensors):
        name = graph.tensor_name(index)
        layer = next((n for n in stats if f"/{n}/" in name), None)
        if layer is not None and tensor.sparsity is not None:
            np.testing.assert_array_equal(graph.values(index) == 0, np.array(stats[layer]["zero_mask_ohwi"], bool))


def test_int8_sparse_clusters_and_sparsity_per_channel(export_target, digits_keras):
    report = tflite_inspection.inspect_file(export_target("int8_sparse"))
    layer_names = [layer.name for layer in artifacts.prunable(digits_keras, include_dense=False)]
    for name, w in _weights_by_layer(report, layer_names).items():
        kernel = digits_keras.get_layer(name).get_weights()[0]
        assert w.dtype == "int8" and w.stored_sparse
        assert w.sparsity == pytest.approx(np.mean(kernel == 0), abs=1e-6)
        assert w.unique_per_channel <= artifacts.CLUSTERS


def test_sparse_ready_model_is_eligible(zoo_pair):
    verdict = tflite_inspection.inspect_file(zoo_pair["sparse_ready"]).eligibility
    assert verdict.eligible, verdict.reason
    assert verdict.conv1x1_sparsity == pytest.approx(0.9, abs=0.01)


def test_default_padding_model_is_ineligible_at_the_stem(zoo_pair):
    verdict = tflite_inspection.inspect_file(zoo_pair["default"]).eligibility
    assert not verdict.eligible
    assert verdict.op == "CONV_2D #0"
    assert verdict.reason.startswith("CONV_2D #0: asymmetric padding")
    assert "sparse_ready=True" in verdict.reason


def test_dense_and_int8_models_are_ineligible_with_the_reason(export_target):
    dense = tflite_inspection.inspect_file(export_target("fp32")).eligibility
    assert not dense.eligible and "no weights stored sparse" in dense.reason
    int8 = tflite_inspection.inspect_file(export_target("int8_sparse")).eligibility
    assert not int8.eligible and "fp32/fp16 only" in int8.reason


def test_report_lists_ops_xnnpack_and_the_litert_fault(export_target):
    report = tflite_inspection.inspect_file(export_target("int8_sparse"))
    assert report.op_histogram["CONV_2D"] == 6 and report.op_histogram["FULLY_CONNECTED"] == 1
    assert report.xnnpack_ops == sum(report.op_histogram.values())
    assert any(w.startswith("FULLY_CONNECTED #") and "ai-edge-litert" in w for w in report.warnings)
    text = tflite_inspection.format_report(report)
    assert "Op histogram" in text and "NOT ELIGIBLE" in text
    report.as_dict()


def test_missing_file(tmp_path):
    with pytest.raises(flatbuffer.TFLiteFileError, match="no such file"):
        tflite_inspection.inspect_file(tmp_path / "nope.tflite")


def test_not_a_flatbuffer(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("this is a text file, not a model\n")
    with pytest.raises(flatbuffer.TFLiteFileError, match="not a TFLite flatbuffer"):
        tflite_inspection.inspect_file(path)


@pytest.mark.parametrize("keep", [0.5, 0.05, 6])
def test_truncated_file(export_target, tmp_path, keep):
    raw = export_target("fp32").read_bytes()
    path = tmp_path / "cut.tflite"
    path.write_bytes(raw[: int(len(raw) * keep) if keep < 1 else keep])
    with pytest.raises(flatbuffer.TFLiteFileError, match="truncated|too short|corrupt"):
        tflite_inspection.inspect_file(path)


def test_size_breakdown_accounts_for_every_byte(export_target):
    fp32 = tflite_inspection.inspect_file(export_target("fp32"))
    assert sum(fp32.size_breakdown.values()) == fp32.size_bytes
    assert fp32.size_breakdown["quantization_params"] == 0 and fp32.size_breakdown["sparse_indices"] == 0

    path = export_target("int8_sparse")
    report = tflite_inspection.inspect_file(path)
    parts = report.size_breakdown
    assert sum(parts.values()) == report.size_bytes
    graph = flatbuffer.load(path)
    sparse = [i for i, t in enumerate(graph.tensors) if t.sparsity is not None]
    assert sparse and parts["sparse_indices"] > 0
    # int8 values: one byte per stored (non-zero, unless a block pads) weight.
    assert parts["weights_sparse_values"] >= sum(int(np.count_nonzero(graph.values(i))) for i in sparse)
    # Every per-channel int8 weight carries a float32 scale and an int64 zero point per output channel.
    per_channel = [t for t in graph.tensors if t.quantization is not None and t.quantization.scale is not None
                   and len(t.quantization.scale) > 1]  # fmt: skip
    assert parts["quantization_params"] >= 12 * sum(len(t.quantization.scale) for t in per_channel)
    assert "Where the bytes go:" in tflite_inspection.format_report(report)
