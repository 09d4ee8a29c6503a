"""`training.frozen_batch_norm`: a fine-tune inside the block leaves every BatchNorm's moving
statistics and scale/offset as they were while the other weights train; after it they train again,
and `thaw_layers` does the same for a copy rebuilt inside the block."""

import numpy as np
import tf_keras

from nlighten_tf.optimize import training
from tests.optimize.conftest import digits, quick, tiny_lite


def test_batch_norm_is_fixed_inside_the_block_and_trains_again_after():
    model = tiny_lite()
    norms = [layer for layer in model.layers if layer.__class__.__name__ == "BatchNormalization"]
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert norms and convs
    before_norms = [[w.copy() for w in layer.get_weights()] for layer in norms]
    before_conv = convs[0].get_weights()[0].copy()
    train = digits("train[:10%]", seed=0)
    with training.frozen_batch_norm(model) as frozen:
        assert sorted(frozen) == sorted(layer.name for layer in norms)
        assert not any(layer.trainable for layer in norms)
        training.fit(model, train, quick(epochs=1))
        copy = tf_keras.models.clone_model(model)  # a rebuilt model (as a TFMOT wrapper makes) copies the flags
    assert not any(layer.trainable for layer in copy.layers if layer.name in frozen)
    training.thaw_layers(copy, frozen)
    assert all(layer.trainable for layer in copy.layers if layer.name in frozen)
    for layer, weights in zip(norms, before_norms, strict=True):
        for now, then in zip(layer.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(now, then, err_msg=layer.name)  # moving mean/variance, gamma, beta
    assert not np.array_equal(convs[0].get_weights()[0], before_conv)  # the rest did train
    assert all(layer.trainable for layer in norms)
