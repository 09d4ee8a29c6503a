"""nlighten_tf.models.torch_checkpoint: torch.save files read without torch, and nothing else.

The two small .pth files in tests/fixtures/ were written by torch itself (zip and legacy
formats) by tests/fixtures/make_weights_oracle.py, which also checked that torch.load reads
them as ``cases()`` says; here our reader must rebuild exactly those values. Hand-written
pickles exercise what torch never writes: hostile globals, impossible tensor geometry,
truncation.
"""

import os
import pickle
import struct
import zipfile

import numpy as np
import pytest

from nlighten_tf.models import torch_checkpoint
from nlighten_tf.models.torch_checkpoint import CheckpointError
from tests.fixtures.make_weights_oracle import SMALL_FILES, cases

HEADER = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))


@pytest.mark.parametrize("fmt", sorted(SMALL_FILES))
def test_reads_what_torch_saved_views_offsets_and_dtypes(fmt):
    path = SMALL_FILES[fmt]
    assert zipfile.is_zipfile(path) == (fmt == "zip")
    loaded = torch_checkpoint.load(path)
    expected = cases()
    assert list(loaded) == list(expected)
    for name, (values, _) in expected.items():
        got = loaded[name]
        assert got.dtype == values.dtype and got.shape == values.shape, name
        np.testing.assert_array_equal(got, values, err_msg=name)
        assert got.flags.c_contiguous and got.flags.writeable, name
    # The permuted view kept torch's element order, not the storage order.
    assert loaded["permuted"][1, 0, 0] == expected["contiguous"][0][0, 0, 1]


def test_arrays_are_copies_not_views_of_the_file_bytes():
    loaded = torch_checkpoint.load(SMALL_FILES["zip"])
    loaded["ramp"][:] = -1
    np.testing.assert_array_equal(loaded["ramp_slice"], cases()["ramp_slice"][0])


def payload(marker):
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return Payload()


def test_a_pickle_that_runs_a_command_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    evil = pickle.dumps({"w": payload(marker)}, protocol=2)
    # The payload is live: plain pickle runs it (this is what torch.load(weights_only=False) does).
    pickle.loads(evil)
    assert marker.exists()
    marker.unlink()

    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(HEADER + evil)
    in_header = tmp_path / "header.pth"  # the hostile pickle where the magic number should be
    in_header.write_bytes(evil)
    zipped = tmp_path / "zipped.pth"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("zipped/data.pkl", evil)
    for path in (legacy, in_header, zipped):
        with pytest.raises(CheckpointError) as raised:
            torch_checkpoint.load(path)
        assert str(raised.value) == (
            f"{path}: refused to unpickle global posix.system: a checkpoint may hold only tensors and dicts "
            "(unpickling other globals can execute arbitrary code)"
        )
        assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"), ("torch._utils", "_rebuild_qtensor"), ("numpy", "ndarray")],
)
def test_only_the_tensor_globals_are_allowed(tmp_path, module, name):
    path = tmp_path / "global.pth"
    path.write_bytes(HEADER + b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R.")
    with pytest.raises(CheckpointError, match=rf"refused to unpickle global {module}\.{name}:"):
        torch_checkpoint.load(path)


# A hand-written legacy file: one float32 storage of `numel` values 0, 1, ... and one tensor on it.
def legacy_tensor_file(path, size, stride, offset=0, numel=4, storage="FloatStorage", stored=None):
    def text(s):
        data = s.encode()
        return b"X" + struct.pack("<I", len(data)) + data

    def integer(v):
        return b"J" + struct.pack("<i", v)

    def ints(values):
        return b"(" + b"".join(integer(v) for v in values) + b"t"

    body = (
        b"\x80\x02ccollections\nOrderedDict\n)R("
        + text("w")
        + b"ctorch._utils\n_rebuild_tensor_v2\n("
        + b"(" + text("storage") + b"ctorch\n" + storage.encode() + b"\n" + text("0") + text("cpu") + integer(numel) + b"NtQ"
        + integer(offset) + ints(size) + ints(stride) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR"
        + b"u."
    )
    stored = numel if stored is None else stored
    data = struct.pack("<q", stored) + np.arange(stored, dtype="<f4").tobytes()
    path.write_bytes(HEADER + body + pickle.dumps(["0"], protocol=2) + data)
    return path


def test_hand_written_strides_and_offsets(tmp_path):
    # Column-major 2x2 over storage [0, 1, 2, 3], then a strided view at offset 1.
    state = torch_checkpoint.load_state_dict(legacy_tensor_file(tmp_path / "a.pth", (2, 2), (1, 2)))
    np.testing.assert_array_equal(state["w"], [[0, 2], [1, 3]])
    state = torch_checkpoint.load_state_dict(legacy_tensor_file(tmp_path / "b.pth", (2,), (2,), offset=1))
    np.testing.assert_array_equal(state["w"], [1, 3])


@pytest.mark.parametrize(
    "size, stride, offset, message",
    [
        ((3, 2), (2, 1), 0, r"size \(3, 2\), stride \(2, 1\), offset 0 reads past the 4 elements of storage 0"),
        ((2,), (1,), 3, r"offset 3 reads past the 4 elements"),
        ((2,), (-1,), 1, r"has offset 1, strides \(-1,\)"),
    ],
)
def test_tensors_outside_their_storage_are_refused(tmp_path, size, stride, offset, message):
    path = legacy_tensor_file(tmp_path / "bad.pth", size, stride, offset)
    with pytest.raises(CheckpointError, match=message):
        torch_checkpoint.load(path)


def test_storage_type_without_a_numpy_dtype_is_refused(tmp_path):
    path = legacy_tensor_file(tmp_path / "bf16.pth", (2,), (1,), storage="BFloat16Storage")
    with pytest.raises(CheckpointError, match="refused to unpickle global torch.BFloat16Storage"):
        torch_checkpoint.load(path)


def test_truncated_or_inconsistent_files_name_the_file(tmp_path):
    good = legacy_tensor_file(tmp_path / "good.pth", (4,), (1,)).read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[:-3])
    with pytest.raises(CheckpointError, match=rf"^{truncated}: truncated: storage 0 needs 16 bytes, the file has 13 left$"):
        torch_checkpoint.load(truncated)
    with pytest.raises(CheckpointError, match="storage 0 holds 5 elements, its tensors expect 4"):
        torch_checkpoint.load(legacy_tensor_file(tmp_path / "count.pth", (4,), (1,), stored=5))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(SMALL_FILES["zip"].read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=rf"^{cut}: not a readable PyTorch checkpoint \("):
        torch_checkpoint.load(cut)
    missing = tmp_path / "missing.pth"
    with pytest.raises(CheckpointError, match=rf"cannot read PyTorch checkpoint {missing}: No such file"):
        torch_checkpoint.load(missing)


def test_other_files_are_not_checkpoints(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match=rf"^{text}: not a readable PyTorch checkpoint"):
        torch_checkpoint.load(text)
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match=rf"^{plain}: not a PyTorch checkpoint \(neither"):
        torch_checkpoint.load(plain)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="a zip file but not a torch.save archive"):
        torch_checkpoint.load(other_zip)


def test_state_dict_must_hold_only_tensors(tmp_path):
    path = tmp_path / "mixed.pth"
    path.write_bytes(HEADER + pickle.dumps({"epoch": 3}, protocol=2) + pickle.dumps([], protocol=2))
    assert torch_checkpoint.load(path) == {"epoch": 3}
    with pytest.raises(CheckpointError, match=r"entry 'epoch' is not a tensor \(int\); expected a state dict"):
        torch_checkpoint.load_state_dict(path)
