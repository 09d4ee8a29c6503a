"""A small Lite-family model trained briefly on real data (scikit-learn digits), shared by the
optimization tests so each technique starts from a network that has learned something."""

import pytest

from nlighten_tf import data, models
from nlighten_tf.optimize import training

IMAGE_SIZE = 32
MODEL = "efficientnet_lite0"
# A Lite0-family network scaled down (7 stages, one block each, 0.5M parameters) so that the
# whole chain runs in CI's budget on 2 cores.
TINY = {"width_coefficient": 0.5, "depth_coefficient": 0.34, "head_filters": 256}


def tiny_lite(seed=0):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    return models.build(MODEL, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=10, dropout_rate=0.0, **TINY)


def digits(split, **kwargs):
    dataset, _ = data.load("digits", split=split, image_size=IMAGE_SIZE, batch_size=64, model=MODEL, **kwargs)
    return dataset


@pytest.fixture(scope="session")
def train_ds():
    return digits("train", seed=1)


@pytest.fixture(scope="session")
def test_ds():
    return digits("test")


def quick(epochs=1.0, **kwargs):
    return training.TrainConfig(epochs=epochs, learning_rate=kwargs.pop("learning_rate", 2e-3), verbose=0, **kwargs)


@pytest.fixture(scope="session")
def trained_lite(train_ds):
    trained, _ = training.fit(tiny_lite(), train_ds, quick(epochs=4))
    return trained
