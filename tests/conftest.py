"""Shared test set-up: legacy Keras must be selected before anything imports TensorFlow."""

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
