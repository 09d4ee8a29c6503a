import numpy as np
import pytest
import tf_keras

from nlighten_tf.optimize import prune, training, weight_stats
from nlighten_tf.optimize.selection import LayerSelection
from tests.optimize.conftest import quick


def kernel_values(model, name):
    return weight_stats.kernels(model, {name})[name]


@pytest.fixture(scope="module")
def pruned_1x1(trained_lite, train_ds):
    config = prune.PruneConfig(target_sparsity=0.7, selection=LayerSelection(policy="xnnpack"), frequency=1000)
    return prune.prune(trained_lite, train_ds, config, quick(epochs=1))


def test_selected_layers_reach_target_and_others_are_untouched(trained_lite, pruned_1x1):
    report = pruned_1x1.report
    assert report["layers"], "no layer was pruned"
    for name, stats in report["layers"].items():
        assert abs(stats["sparsity"] - 0.7) <= 0.01, (name, stats)
        assert kernel_values(pruned_1x1.model, name).shape[:2] == (1, 1)
    # Depthwise convs and the classifier are not selected by the XNNPACK policy: fine-tuned, not pruned.
    unselected = {"block2a_dwconv", "block6a_dwconv", "stem_conv", "predictions"}
    assert not unselected & set(report["layers"])
    after = weight_stats.sparsity_report(pruned_1x1.model, unselected)["layers"]
    assert all(stats["sparsity"] < 0.01 for stats in after.values()), after


def test_input_model_is_not_modified(trained_lite, pruned_1x1):
    assert weight_stats.sparsity_report(trained_lite)["global_sparsity"] < 0.01
    assert not any("prune" in type(layer).__name__.lower() for layer in pruned_1x1.model.layers)


def test_schedule_frequency_larger_than_run_is_clamped():
    fit_steps = training.FitSteps(epochs=1, steps_per_epoch=10, batches=10)
    steps = prune.lay_out_schedule(prune.PruneConfig(frequency=1000), fit_steps)
    assert steps.frequency <= steps.end - steps.begin
    assert (steps.end - steps.begin) % steps.frequency == 0
    assert steps.end <= fit_steps.total - 1


def test_per_layer_targets_regex_include_exclude(trained_lite, train_ds):
    selection = LayerSelection(policy="all", include=r"^block[67]", exclude=r"dwconv", per_layer={r"block7": 0.5})
    result = prune.prune(trained_lite, train_ds, prune.PruneConfig(target_sparsity=0.8, selection=selection),
                         quick(epochs=0.5, lr_schedule="constant"))
    layers = result.report["layers"]
    assert layers and all(n.startswith(("block6", "block7")) and "dwconv" not in n for n in layers)
    for name, stats in layers.items():
        expected = 0.5 if name.startswith("block7") else 0.8
        assert abs(stats["sparsity"] - expected) <= 0.01, name
    assert weight_stats.sparsity_report(result.model, {"block5a_expand_conv"})["global_sparsity"] < 0.01


def test_two_by_four_structured_sparsity(trained_lite, train_ds):
    config = prune.PruneConfig(m_by_n=(2, 4), selection=LayerSelection(policy="conv1x1", include="^block7"))
    result = prune.prune(trained_lite, train_ds, config, quick(epochs=0.3))
    kernel = kernel_values(result.model, "block7a_project_conv")  # (1, 1, in, out)
    groups = np.moveaxis(kernel[0, 0], 0, -1).reshape(kernel.shape[-1], -1, 4)  # blocks of 4 along input
    assert (np.count_nonzero(groups, axis=-1) <= 2).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_sparsity": 1.0}, r"target_sparsity must be in \[0, 1\)"),
        ({"target_sparsity": -0.1}, r"target_sparsity must be in \[0, 1\)"),
        ({"schedule": "cubic"}, "unknown pruning schedule"),
        ({"m_by_n": (4, 2)}, "m_by_n"),
        ({"selection": LayerSelection(per_layer={"x": 1.5})}, "per-layer sparsity"),
    ],
)
def test_bad_configs_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        prune.PruneConfig(**kwargs)


def test_xnnpack_policy_on_default_padding_explains_the_fix(train_ds):
    from nlighten_tf import models

    model = models.build("efficientnet_lite0", input_shape=(32, 32, 3), num_classes=10, sparse_ready=False)
    with pytest.raises(ValueError, match="sparse_ready=True"):
        prune.prune(model, train_ds, prune.PruneConfig(selection=LayerSelection(policy="xnnpack")), quick(0.1))


class Scale(tf_keras.layers.Layer):
    """A custom layer with weights that TFMOT's pruning registry does not know."""

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", shape=(input_shape[-1], input_shape[-1]))

    def call(self, inputs):
        return inputs @ self.kernel


def test_unprunable_layer_is_named_with_the_policy_that_skips_it():
    inputs = tf_keras.Input((8,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(4, name="head")(Scale(name="mystery")(inputs)))
    # Selection covers conv/dense kernels only, so the custom layer is never wrapped...
    fit_steps = training.FitSteps(epochs=1, steps_per_epoch=10, batches=10)
    wrapped = prune.apply_pruning(model, prune.PruneConfig(), fit_steps)
    assert [type(layer).__name__ for layer in wrapped.layers][1:] == ["Scale", "PruneLowMagnitude"]

    # ...but a custom Dense subclass TFMOT cannot wrap is reported by name.
    class OddDense(tf_keras.layers.Dense):
        pass

    odd = tf_keras.Model(inputs, OddDense(4, name="odd")(inputs))
    with pytest.raises(ValueError, match=r"layer 'odd' \(OddDense\) cannot be pruned.*exclude='\^odd\$'"):
        prune.apply_pruning(odd, prune.PruneConfig(), fit_steps)
