"""Emulated devices as runtime targets: run any `.tflite` through a device's own interpreter.

`rpi-aarch64` is Raspberry Pi OS bookworm 64-bit as far as a `.tflite` can tell: Debian
bookworm's arm64 `python3.11`, `tflite-runtime` 2.14 (the aarch64 cp311 wheel; `ai-edge-litert`
has no cp311 aarch64 wheel) and NumPy 1, executed on this host by `qemu-aarch64-static`.

The environment is built from the package registries, without changing the host:
- Debian arm64 packages (the Python 3.11 userland) and the host-architecture
  `qemu-user-static` package are fetched with `apt-get download` through a *private* apt state
  (its own sources list, lists and cache under the build directory; `APT::Architectures`
  set on the command line), then unpacked with `dpkg -x`; nothing is installed on the host and
  `dpkg --add-architecture` is not needed;
- aarch64 wheels (pinned in WHEELS) come from PyPI with `pip download --platform ...
  --only-binary=:all:` and are unzipped into a site directory.
It lives in `${NLIGHTEN_TF_DEVICE_DIR:-${XDG_CACHE_HOME:-~/.cache}/nlighten_tf/devices}/rpi-aarch64`,
built in a temporary directory that is renamed into place at the end (atomic), with a stamp
file (idempotent: a second build returns at once). `make device-rpi` runs
`python -m nlighten_tf.bench.devices build rpi-aarch64`.

The device side is `device_runner.py` (beside this file), which imports only numpy and
tflite_runtime. The host sends it float model-domain inputs as `.npy` and reads back outputs
and interleaved latencies; accuracy on a data spec is computed on the host from those outputs,
so the images go through exactly the same preprocessing as the host paths.

Emulated absolute times mean nothing (every aarch64 instruction is translated); ratios between
files measured interleaved in one run do show which kernels ran.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlighten_tf.errors import NlightenError

HOST = "host"
EMULATED_NOTE = "emulated: relative figures only"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# The arm64 userland python3.11 needs (Debian bookworm = Raspberry Pi OS bookworm's base).
ARM64_PACKAGES = (
    "libc6 libgcc-s1 libstdc++6 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib zlib1g libexpat1 "
    "libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8 libcrypt1 "
    "libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1 "
    "libdb5.3 libgdbm6"
).split()
# (requirement, platform tags pip may pick): the device's Python packages, pinned.
WHEELS = (
    ("tflite-runtime==2.14.0", ("manylinux_2_34_aarch64",)),
    ("numpy==1.26.4", ("manylinux_2_17_aarch64", "manylinux2014_aarch64")),
    ("pillow==11.3.0", ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64")),
)  # fmt: skip
STAMP = ".built.json"
RUNNER = Path(__file__).with_name("device_runner.py")
BUILD_COMMAND = "make device-rpi  (or: python -m nlighten_tf.bench.devices build rpi-aarch64)"


class DeviceUnavailable(NlightenError, RuntimeError):
    """The device environment is not built (or cannot be); the message says why and how."""


class DeviceError(NlightenError, RuntimeError):
    """The device-side run failed; the message carries the device's own last error line."""


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    description: str
    qemu: str  # qemu binary name inside the extracted qemu-user-static package
    debian_suite: str
    arm64_packages: tuple[str, ...]
    wheels: tuple[tuple[str, tuple[str, ...]], ...]
    python: str = "usr/bin/python3.11"


DEVICES = {
    "rpi-aarch64": Device(
        name="rpi-aarch64",
        description="Raspberry Pi OS bookworm 64-bit (emulated): Debian arm64 python3.11, tflite-runtime 2.14, NumPy 1",
        qemu="qemu-aarch64-static",
        debian_suite="bookworm",
        arm64_packages=ARM64_PACKAGES,
        wheels=WHEELS,
    )
}


def names() -> list[str]:
    return [HOST, *DEVICES]


def check_names(requested: Sequence[str]) -> list[str]:
    """Validated device names (`host` or a DEVICES key); ValueError naming the bad one."""
    out = []
    for name in requested:
        name = name.strip()
        if name not in (HOST, *DEVICES):
            raise ValueError(f"unknown device {name!r}; valid: {', '.join(names())}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError(f"no device given; valid: {', '.join(names())}")
    return out


def cache_root() -> Path:
    if os.environ.get("NLIGHTEN_TF_DEVICE_DIR"):
        return Path(os.environ["NLIGHTEN_TF_DEVICE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nlighten_tf" / "devices"


def device_dir(name: str) -> Path:
    return cache_root() / name


def _get(name: str) -> Device:
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; valid: {', '.join(DEVICES)}")
    return DEVICES[name]


# ---------------------------------------------------------------------------------------------
# Host CPU: where XNNPACK's sparse kernels can run.


def host_cpu(cpuinfo: str | None = None, machine: str | None = None) -> dict[str, Any]:
    """{machine, x86, avx, sparse_kernels, note} for this host (or for the given /proc/cpuinfo text).

    XNNPACK's `xnn_is_chw_compatible_config()` (src/xnnpack/hardware-config.h) refuses its sparse
    (CHW) kernels on x86 CPUs with AVX: they target SSE only, and XNNPACK expects dense inference
    to be faster on AVX machines. So on such a host an `fp32_sparse` file runs dense."""
    machine = (machine or platform.machine()).lower()
    x86 = machine in ("x86_64", "amd64", "i386", "i686", "x86")
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    avx = x86 and "avx" in flags
    if x86 and avx:
        sparse, note = False, (
            f"this host is {machine} with AVX: XNNPACK never runs its sparse kernels here (they target SSE only and "
            "XNNPACK judges dense faster on AVX CPUs), so sparse files run dense on this host; the sparse speed-up "
            "happens on ARM (phones, Raspberry Pi; measure it with --device=rpi-aarch64)"
        )
    elif x86 and not cpuinfo:
        sparse, note = False, (
            f"this host is {machine} and its CPU flags are unreadable (no /proc/cpuinfo): if it has AVX, XNNPACK "
            "runs sparse files dense here; the sparse speed-up happens on ARM (--device=rpi-aarch64)"
        )
    elif x86:
        sparse, note = True, f"this host is {machine} without AVX: XNNPACK's SSE sparse kernels can run here"
    else:
        sparse, note = True, f"this host is {machine}: XNNPACK's sparse kernels can run here"
    return {"machine": machine, "x86": x86, "avx": avx, "sparse_kernels": sparse, "note": note}


# ---------------------------------------------------------------------------------------------
# Status and build.


def status(name: str) -> tuple[bool, str]:
    """(ready, "ready: ..." or why not and how to build it)."""
    device = _get(name)
    root = device_dir(name)
    stamp = root / STAMP
    if stamp.exists() and (root / "root" / device.python).exists() and (root / "qemu" / device.qemu).exists():
        return True, f"ready: {root}"
    why = cannot_build_reason()
    how = f"build it with `{BUILD_COMMAND}`"
    if why:
        return False, f"device {name} is not built ({root} missing) and cannot be built here: {why}"
    return False, f"device {name} is not built ({root} missing); {how}"


def require(name: str) -> Path:
    """The built device directory, or DeviceUnavailable saying why and how."""
    ready, message = status(name)
    if not ready:
        raise DeviceUnavailable(message)
    return device_dir(name)


def cannot_build_reason() -> str | None:
    """Why this host cannot build the device, or None."""
    if not Path("/etc/debian_version").exists():
        return ("not a Debian system (no /etc/debian_version): the device is built from Debian's arm64 packages "
                "with apt-get download + dpkg -x; build it on Debian/Ubuntu")  # fmt: skip
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not on PATH: install apt/dpkg (Debian) to build the device"
    if not Path(DEBIAN_KEYRING).exists():
        return f"{DEBIAN_KEYRING} is missing: `apt-get install debian-archive-keyring` (as root) to verify Debian's packages"
    return None


def _run(command: Sequence[str], log: list[str], cwd: Path | None = None, timeout: float = 1800) -> str:
    log.append("$ " + " ".join(command))
    result = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DeviceUnavailable(f"`{' '.join(command[:3])} ...` failed (exit {result.returncode}): {' | '.join(tail)}")
    return result.stdout


def _apt(private: Path, host_arch: str) -> list[str]:
    """apt-get with a private state: own sources, lists, cache and dpkg status; host untouched."""
    return [
        "apt-get", "-q",
        "-o", f"Dir::State={private / 'state'}", "-o", f"Dir::State::status={private / 'status'}",
        "-o", f"Dir::Cache={private / 'cache'}", "-o", f"Dir::Etc::SourceList={private / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/nonexistent", "-o", f"APT::Architecture={host_arch}",
        "-o", f"APT::Architectures::={host_arch}", "-o", "APT::Architectures::=arm64",
        "-o", "Debug::NoLocking=1", "-o", "Acquire::Languages=none",
    ]  # fmt: skip


def build(name: str = "rpi-aarch64", force: bool = False, log_to: Any = sys.stderr) -> Path:
    """Builds the device environment (idempotent, atomic); returns its directory."""
    device = _get(name)
    final = device_dir(name)
    if not force and status(name)[0]:
        return final
    why = cannot_build_reason()
    if why:
        raise DeviceUnavailable(f"cannot build device {name}: {why}")
    host_arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.building-", dir=final.parent))
    log: list[str] = []
    start = time.time()
    try:
        private = work / "apt"
        for sub in ("state/lists/partial", "cache/archives/partial"):
            (private / sub).mkdir(parents=True)
        (private / "status").write_text("")
        suite = device.debian_suite
        options = f"[arch={host_arch},arm64 signed-by={DEBIAN_KEYRING}]"
        (private / "sources.list").write_text(
            f"deb {options} {DEBIAN_MIRROR} {suite} main\n"
            f"deb {options} {DEBIAN_MIRROR} {suite}-updates main\n"
            f"deb {options} {DEBIAN_SECURITY} {suite}-security main\n"
        )
        apt = _apt(private, host_arch)
        print(f"[{name}] apt-get update (private state in {private})", file=log_to, flush=True)
        _run([*apt, "update"], log)
        debs = work / "debs"
        debs.mkdir()
        print(f"[{name}] apt-get download: {len(device.arm64_packages)} arm64 packages + qemu-user-static:{host_arch}",
              file=log_to, flush=True)  # fmt: skip
        _run([*apt, "download", *(f"{p}:arm64" for p in device.arm64_packages), f"qemu-user-static:{host_arch}"], log, cwd=debs)
        root, qemu_root = work / "root", work / "qemu-pkg"
        packages = []
        for deb in sorted(debs.glob("*.deb")):
            target = qemu_root if deb.name.startswith("qemu-user-static_") else root
            _run(["dpkg", "-x", str(deb), str(target)], log)
            packages.append(deb.name)
        qemu_dir = work / "qemu"
        qemu_dir.mkdir()
        shutil.copy2(qemu_root / "usr" / "bin" / device.qemu, qemu_dir / device.qemu)
        shutil.rmtree(qemu_root)
        print(f"[{name}] pip download: {', '.join(r for r, _ in device.wheels)}", file=log_to, flush=True)
        wheels_dir, site = work / "wheels", work / "site"
        site.mkdir()
        for requirement, platforms in device.wheels:
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                       "--python-version", "311", "--implementation", "cp", "--abi", "cp311", "--dest", str(wheels_dir)]  # fmt: skip
            for tag in platforms:
                command += ["--platform", tag]
            _run([*command, requirement], log)
        wheels = sorted(p.name for p in wheels_dir.glob("*.whl"))
        for wheel in wheels:
            with zipfile.ZipFile(wheels_dir / wheel) as archive:
                archive.extractall(site)
        _restore_modes(site)
        shutil.rmtree(wheels_dir)
        shutil.rmtree(private)
        shutil.rmtree(debs)
        print(f"[{name}] checking the device's interpreter under qemu", file=log_to, flush=True)
        probe = run_python(
            work, device, ["-c", "import sys, numpy, PIL, tflite_runtime; print(sys.version.split()[0], numpy.__version__, "
                                 "PIL.__version__, tflite_runtime.__version__)"],  # fmt: skip
            timeout=300,
        )
        versions = dict(zip(("python", "numpy", "pillow", "tflite_runtime"), probe.split(), strict=False))
        manifest = {
            "device": name, "description": device.description, "debian_suite": suite, "debs": packages,
            "wheels": wheels, "versions": versions, "host_arch": host_arch, "built_seconds": round(time.time() - start, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commands": log,
        }  # fmt: skip
        (work / STAMP).write_text(json.dumps(manifest, indent=1) + "\n")
        if final.exists():  # a stale, unstamped (or forced) previous build
            stale = final.with_name(f".{name}.stale-{os.getpid()}")
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    print(f"[{name}] built in {time.time() - start:.0f} s: {final} ({', '.join(f'{k} {v}' for k, v in versions.items())})",
          file=log_to, flush=True)  # fmt: skip
    return final


def _restore_modes(site: Path) -> None:
    # zipfile drops permission bits; shared objects only need to be readable, but keep
    # executables (none are used) sane.
    for path in site.rglob("*.so*"):
        path.chmod(0o755)


def _environment(directory: Path, device: Device) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_", "LD_"))}
    env.update(
        QEMU_LD_PREFIX=str(directory / "root"), PYTHONPATH=str(directory / "site"), PYTHONNOUSERSITE="1",
        PYTHONDONTWRITEBYTECODE="1",
    )  # fmt: skip
    return env


def command(name: str, args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that runs `python3.11 ARGS` on the device (for scripts and tests)."""
    device = _get(name)
    directory = require(name)
    return [str(directory / "qemu" / device.qemu), str(directory / "root" / device.python), *args], _environment(directory, device)


def run_python(directory: Path, device: Device, args: Sequence[str], timeout: float = 3600) -> str:
    argv = [str(directory / "qemu" / device.qemu), str(directory / "root" / device.python), *args]
    result = subprocess.run(argv, env=_environment(directory, device), capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise DeviceError(f"{device.name}: device python failed (exit {result.returncode}): {lines[-1] if lines else ''}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# Running models on a device.


@dataclasses.dataclass
class DeviceRun:
    """What one device-side invocation measured, per model (in the order given)."""

    device: str
    models: list[dict[str, Any]]  # {model, runtime, xnnpack, fallback, init_ms, times_ms, outputs (ndarray|None)}
    versions: dict[str, str]
    seconds: float


def run_models(
    name: str,
    models: Sequence[str | os.PathLike[str]],
    inputs: dict[str, np.ndarray] | None = None,
    threads: int = 1,
    runs: int = 3,
    warmup: int = 1,
    xnnpack: bool = True,
    timeout: float = 7200,
) -> DeviceRun:
    """Runs `models` on the device in one process: interleaved latency (`runs` rounds after
    `warmup` per model; runs=0 skips it) and, for models in `inputs` (float model-domain
    batches keyed by model path), the dequantized outputs, one invoke per example."""
    device = _get(name)
    directory = require(name)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="nlighten_device_") as tmp:
        tmp_path = Path(tmp)
        spec: dict[str, Any] = {"threads": threads, "runs": runs, "warmup": warmup, "xnnpack": xnnpack, "models": []}
        for i, model in enumerate(models):
            entry: dict[str, Any] = {"model": os.path.abspath(model)}
            key = os.fspath(model)
            if inputs and key in inputs:
                np.save(tmp_path / f"in{i}.npy", np.asarray(inputs[key], dtype=np.float32))
                entry["inputs"] = str(tmp_path / f"in{i}.npy")
                entry["outputs"] = str(tmp_path / f"out{i}.npy")
            spec["models"].append(entry)
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        out_json = tmp_path / "result.json"
        # A copy, run from a directory of its own: on the device's sys.path, the package's modules
        # next to this file could shadow a standard-library module of the same name.
        runner = tmp_path / RUNNER.name
        shutil.copyfile(RUNNER, runner)
        run_python(directory, device, [str(runner), str(tmp_path / "spec.json"), str(out_json)], timeout=timeout)
        result = json.loads(out_json.read_text())
        for entry, measured in zip(spec["models"], result["models"], strict=True):
            measured["outputs"] = np.load(entry["outputs"]) if "outputs" in entry else None
    return DeviceRun(device=name, models=result["models"], versions=result["versions"], seconds=time.time() - start)


def main(argv: list[str]) -> int:
    """`python -m nlighten_tf.bench.devices build|status [DEVICE] [--force]`."""
    args = [a for a in argv[1:] if not a.startswith("--")]
    if not args or args[0] not in ("build", "status"):
        print("usage: python -m nlighten_tf.bench.devices build|status [rpi-aarch64] [--force]", file=sys.stderr)
        return 2
    name = args[1] if len(args) > 1 else "rpi-aarch64"
    if name not in DEVICES:
        print(f"error: unknown device {name!r}; valid: {', '.join(DEVICES)}", file=sys.stderr)
        return 2
    if args[0] == "status":
        ready, message = status(name)
        print(message)
        return 0 if ready else 1
    try:
        directory = build(name, force="--force" in argv)
    except (DeviceUnavailable, DeviceError, OSError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{name}: ready in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
