"""The emulated Raspberry Pi for the device tests: built by `make device-rpi` (a prerequisite
of `make test`). Where it is not built the tests skip with the reason; under CI (root on
Debian, where it must build) a missing device is a failure, not a skip."""

import os

import pytest

from nlighten_tf.bench import devices


@pytest.fixture(scope="session")
def rpi():
    ready, message = devices.status("rpi-aarch64")
    if not ready:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the emulated Raspberry Pi is missing: {message}")
        pytest.skip(message)
    return "rpi-aarch64"
