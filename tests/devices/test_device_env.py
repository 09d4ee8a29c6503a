"""The device layer's own contract: host CPU detection, names, status messages, and that the
device really is an aarch64 Python with tflite-runtime and without TensorFlow/nlighten_tf."""

import json
import shutil
import subprocess
import sys

import pytest

from nlighten_tf.bench import devices

X86_AVX = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma\n"
X86_SSE = "processor\t: 0\nflags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"


def test_host_cpu_says_where_sparse_kernels_run():
    avx = devices.host_cpu(X86_AVX, "x86_64")
    assert avx["avx"] and not avx["sparse_kernels"]
    assert "sparse files run dense on this host" in avx["note"] and "rpi-aarch64" in avx["note"]
    assert devices.host_cpu(X86_SSE, "x86_64")["sparse_kernels"]
    arm = devices.host_cpu(ARM, "aarch64")
    assert arm["sparse_kernels"] and not arm["avx"] and not arm["x86"]
    assert not devices.host_cpu("", "x86_64")["sparse_kernels"]  # unknown flags: not promised


def test_device_names_are_checked():
    assert devices.check_names(["host", " rpi-aarch64", "host"]) == ["host", "rpi-aarch64"]
    with pytest.raises(ValueError, match="unknown device 'pi5'; valid: host, rpi-aarch64"):
        devices.check_names(["pi5"])


def test_a_missing_device_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NLIGHTEN_TF_DEVICE_DIR", str(tmp_path / "nothing"))
    ready, message = devices.status("rpi-aarch64")
    assert not ready and "rpi-aarch64 is not built" in message and "make device-rpi" in message
    with pytest.raises(devices.DeviceUnavailable, match="make device-rpi"):
        devices.run_models("rpi-aarch64", ["a.tflite"])


def test_the_device_is_an_aarch64_python_without_tensorflow(rpi):
    argv, env = devices.command(rpi, ["-c", (
        "import json, platform, sys, importlib.util as u, numpy, tflite_runtime, PIL; "
        "print(json.dumps({'machine': platform.machine(), 'python': platform.python_version(), "
        "'numpy': numpy.__version__, 'tflite_runtime': tflite_runtime.__version__, "
        "'tensorflow': u.find_spec('tensorflow') is not None, 'nlighten_tf': u.find_spec('nlighten_tf') is not None}))"
    )])  # fmt: skip
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, cwd="/")
    assert result.returncode == 0, result.stderr[-500:]
    info = json.loads(result.stdout)
    assert info["machine"] == "aarch64" and info["python"].startswith("3.11.")
    assert info["numpy"].startswith("1.") and info["tflite_runtime"] == "2.14.0"
    assert not info["tensorflow"] and not info["nlighten_tf"]
    manifest = json.loads((devices.device_dir(rpi) / devices.STAMP).read_text())
    assert "python3.11-minimal" in " ".join(manifest["debs"]) and manifest["versions"]["tflite_runtime"] == "2.14.0"


def test_build_is_instant_once_built(rpi):
    result = subprocess.run([sys.executable, "-m", "nlighten_tf.bench.devices", "build", rpi],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and "ready" in result.stdout


def test_a_host_without_apt_gets_one_clear_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("NLIGHTEN_TF_DEVICE_DIR", str(tmp_path))
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "apt-get" else real_which(tool))
    with pytest.raises(devices.DeviceUnavailable, match="`apt-get` is not on PATH"):
        devices.build("rpi-aarch64")
    assert "cannot be built here: `apt-get` is not on PATH" in devices.status("rpi-aarch64")[1]
    assert list(tmp_path.iterdir()) == []  # nothing half-built left behind
