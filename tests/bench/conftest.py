import pytest

from tests.export import artifacts


@pytest.fixture(scope="session")
def digits_keras(tmp_path_factory):
    return artifacts.load_digits_model(tmp_path_factory)


@pytest.fixture(scope="session")
def digits_test_arrays():
    return artifacts.digits_arrays("test")


@pytest.fixture(scope="session")
def export_target(tmp_path_factory):
    return lambda target: artifacts.exported(tmp_path_factory, target)


@pytest.fixture(scope="session")
def zoo_pair(tmp_path_factory):
    return artifacts.zoo_pair(tmp_path_factory)
