"""Under CI every test must run: the conftest hook turns a skip into a failure there, and
leaves it a skip (with its reason) elsewhere."""

import shutil
from pathlib import Path

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")


def _run(pytester, monkeypatch, ci: str | None):
    shutil.copy(CONFTEST, pytester.path / "conftest.py")
    pytester.makepyfile(
        test_inner="""
import pytest

def test_skipped():
    pytest.skip("the widget package is not installed")

@pytest.mark.skipif(True, reason="no widget either")
def test_skipif():
    pass

def test_runs():
    assert True
"""
    )
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    return pytester.runpytest_subprocess("-p", "no:xdist", "-rs")


def test_a_skip_fails_under_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, "true")
    # A skipif mark skips in set-up, so there it fails as a set-up error: CI fails either way.
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*skipped under CI, where every test must run*widget package is not installed*"])


def test_a_skip_stays_a_skip_with_its_reason_elsewhere(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED*the widget package is not installed*"])
