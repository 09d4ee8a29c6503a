"""A tiny trained model and its data splits, trained once for every auto-compression test."""

import pytest

from nlighten_tf.optimize import training
from tests.optimize.conftest import digits, quick, tiny_lite


@pytest.fixture(scope="package")
def splits():
    # Choices on a validation split carved from the training images; the test split is unused.
    return digits("train[:85%]", seed=1), digits("train[85%:]")


@pytest.fixture(scope="package")
def trained(splits):
    train, _ = splits
    model, _ = training.fit(tiny_lite(), train, quick(epochs=6, learning_rate=5e-3))
    # 6 short epochs leave BatchNorm's moving statistics stale (accuracy at chance in inference).
    training.recalibrate_batch_norm(model, train, 8)
    return model
