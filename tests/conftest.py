"""Shared test set-up: legacy Keras must be selected before anything imports TensorFlow."""

import functools
import os
import re
from pathlib import Path

import pytest

import nlighten_tf  # noqa: F401


# Trained and exported artifacts shared by the export, bench and tool tests. artifacts.py
# caches them on disk across xdist workers, so each is built once per run.
@pytest.fixture(scope="session")
def digits_keras(tmp_path_factory):
    from tests.export import artifacts

    return artifacts.load_digits_model(tmp_path_factory)


@pytest.fixture(scope="session")
def digits_test_arrays():
    from tests.export import artifacts

    return artifacts.digits_arrays("test")


@pytest.fixture(scope="session")
def export_target(tmp_path_factory):
    from tests.export import artifacts

    return lambda target: artifacts.exported(tmp_path_factory, target)


@pytest.fixture(scope="session")
def zoo_pair(tmp_path_factory):
    from tests.export import artifacts

    return artifacts.zoo_pair(tmp_path_factory)


# Scheduling under pytest-xdist (`make test` runs `-n 2`). xdist's default `--dist load` hands
# out single tests, so two tests of one module sharing a module-scoped fixture (a trained or
# exported model) often land on different workers, and each worker builds that fixture: in a
# full run the cluster chain's pruned and clustered models, for one, were built twice. Under a
# plain `-n` the tests of a file that defines a module-scoped fixture (this suite defines them
# in test files only, never in a conftest) go to one worker, as one unit; every other test
# is handed out on its own. xdist's own `loadgroup` marks would say the same per test, but
# with pytest 9 they are lost (xdist 3.8 renames the node through an attribute pytest 9 no
# longer reads). An explicit `--dist` is kept.
MODULE_FIXTURE = re.compile(r"fixture\(\s*scope=[\"']module[\"']")


@functools.cache
def defines_a_module_fixture(path: str) -> bool:
    return bool(MODULE_FIXTURE.search(Path(path).read_text()))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load" or "--dist" in " ".join(config.invocation_params.args):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleFixtureScheduling(LoadScopeScheduling):
        """Units of work: a whole file where it defines a module-scoped fixture, else one test.
        Units of several tests are sent first (xdist orders units by their number of tests)."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return path if defines_a_module_fixture(str(config.rootpath / path)) else nodeid

    return ModuleFixtureScheduling(config, log)


# In each worker, slow tests are collected first, so xdist hands them out first: a long test
# started last would leave the other core idle at the end of the run.
def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# Under CI (`CI` set, as .ci/run runs it) every test must run: a skip there means a missing
# install step (Fashion-MNIST, the checkpoint packages, the emulated device, MediaPipe) that
# would otherwise hide behind a green run. Elsewhere a skip stays a skip, with its reason
# printed by `make test` (-rs).
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"
