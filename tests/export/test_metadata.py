"""Labels and normalisation read back from the produced `.tflite` the way an app reads them."""

import zipfile

import pytest

from nlighten_tf.export import metadata
from nlighten_tf.litert import flatbuffer, runtime


@pytest.mark.parametrize("target", ["int8", "fp32"])
def test_labels_txt_is_packed_as_a_zip_member(export_target, target):
    path = export_target(target)
    assert zipfile.is_zipfile(path)
    assert zipfile.ZipFile(path).read("labels.txt").decode().splitlines() == [str(d) for d in range(10)]
    runtime.load(path)  # still a valid flatbuffer for the interpreter


def test_tflite_metadata_has_normalisation_and_label_file(export_target):
    info = metadata.read(export_target("int8_float_io").read_bytes())
    assert info["mean"] == [127.0] * 3 and info["std"] == [128.0] * 3
    assert info["color_space"] == "RGB"
    assert info["min_parser_version"] == metadata.MIN_PARSER_VERSION
    assert {"name": "labels.txt", "type": 2} in info["associated_files"]  # TENSOR_AXIS_LABELS
    assert info["labels"] == [str(d) for d in range(10)]
    graph = flatbuffer.parse(export_target("int8_float_io").read_bytes())
    names = [m.name.decode() for m in graph.model.metadata]
    assert names.count("TFLITE_METADATA") == 1


def test_embedding_twice_replaces_rather_than_duplicates(export_target):
    raw = export_target("fp32").read_bytes()
    again = metadata.embed(raw, metadata.from_scheme(list("abcdefghij"), "mobilenet", (32, 32)))
    info = metadata.read(again)
    assert info["labels"] == list("abcdefghij") and info["mean"] == [127.5] * 3
    assert list(metadata.packed_files(again)) == ["labels.txt"]
    assert [m.name.decode() for m in flatbuffer.parse(again).model.metadata].count("TFLITE_METADATA") == 1
    runtime.load(again)


def test_wrong_label_count_is_refused(export_target):
    with pytest.raises(ValueError, match="10 outputs but 3 labels"):
        metadata.embed(export_target("fp32").read_bytes(), metadata.from_scheme(["a", "b", "c"], "lite", (32, 32)))


def test_model_without_metadata_reads_as_none(tmp_path):
    from nlighten_tf.export import tflite
    from tests.export import artifacts

    raw, _ = tflite.convert(artifacts.mini_cnn(), "fp32")
    assert metadata.read(raw) is None
    assert metadata.packed_files(raw) == {}
