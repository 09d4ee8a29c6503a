import pytest


@pytest.fixture(scope="session")
def edgetpu_models(tmp_path_factory):
    """name -> path of a test `.tflite` (tests/edgetpu/models.py), converted on first use."""
    from tests.edgetpu import models

    builders = {
        "split": models.split, "large": models.large, "sparse": models.sparse, "float": models.float_model,
        "dynamic": models.dynamic, "channel_mean": models.channel_mean, **{name: (lambda f, n=name: models.zoo(f, n)) for name in models.ZOO},
    }  # fmt: skip
    return lambda name: builders[name](tmp_path_factory)
