"""Structured channel pruning: the surgery is exact, groups stay consistent, budgets are met
from the built graph, every zoo family survives and exports, bad targets are clear errors."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from tf_keras import layers

from nlighten_tf import models
from nlighten_tf.keras_utils import copy_model
from nlighten_tf.optimize import channel_groups, channel_prune, graph, training
from nlighten_tf.optimize.channel_prune import ChannelPruneConfig
from nlighten_tf.optimize.distill import DistillConfig
from tests.optimize.conftest import IMAGE_SIZE, quick

SMALL = {"input_shape": (IMAGE_SIZE, IMAGE_SIZE, 3), "num_classes": 10, "dropout_rate": 0.0}
NARROW = {"width_coefficient": 0.25, "depth_coefficient": 0.34, "head_filters": 64}
# One variant per zoo family, narrow and at 32 px. depth 0.34 still gives 2-block stages
# (residual Adds); B0 brings squeeze-excite Multiplies; EdgeTPU fused KxK expansions.
FAMILIES = {
    "mobilenet_v2": {"width_multiplier": 0.35},
    "efficientnet_lite0": NARROW,
    "efficientnet_b0": NARROW,
    "efficientnet_edgetpu_s": NARROW,
}


def family_model(name, seed=0):
    tf_keras.utils.set_random_seed(seed)
    model = models.build(name, **SMALL, **FAMILIES[name])
    randomize_batch_norm(model, np.random.default_rng(seed))
    return model


def randomize_batch_norm(model, rng):
    """Non-trivial BatchNorm statistics: with the initial (0, 1) ones a bug could hide."""
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape),
                rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, variance.shape),
            ])  # fmt: skip


def random_keep(cgraph, rng, ratio=0.5):
    return {
        name: np.sort(rng.choice(g.size, max(1, int(g.size * ratio)), replace=False))
        for name, g in cgraph.prunable.items()
    }


def images(n=4, seed=1):
    return np.random.default_rng(seed).normal(0, 1, (n, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


def assert_close(a, b):
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, atol=1e-4 * scale, rtol=0)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_surgery_equals_the_original_with_the_channels_cut_at_their_consumers(name):
    """A removed channel is not a zeroed filter (BatchNorm's beta would still leak through):
    the honest equivalent is the original with the channel's input weights zeroed at every
    consumer. On random inputs and random BatchNorm statistics the two agree."""
    model = family_model(name)
    cgraph = channel_groups.analyze(model)
    keep = random_keep(cgraph, np.random.default_rng(0))
    pruned = channel_groups.slice_model(model, cgraph, keep)
    masked = copy_model(model)
    channel_groups.zero_inputs(masked, cgraph, {n: np.setdiff1d(np.arange(cgraph.groups[n].size), k)
                                                for n, k in keep.items()})  # fmt: skip
    x = images()
    assert_close(pruned(x, training=False).numpy(), masked(x, training=False).numpy())
    assert np.abs(masked(x, training=False).numpy() - model(x, training=False).numpy()).max() > 1e-3  # it did cut
    # A plain model of the same standard layers, smaller, not sharing a variable with the original.
    assert [type(a) for a in pruned.layers] == [type(b) for b in model.layers]
    assert {id(v) for v in pruned.weights}.isdisjoint(id(v) for v in model.weights)
    assert models.count_params(pruned) < 0.5 * models.count_params(model)
    # The cost model used for budgets is the built graph's own count.
    counts = {n: len(k) for n, k in keep.items()}
    assert cgraph.cost(counts) == (models.count_madds(pruned), models.count_params(pruned))


def test_graph_run_replays_the_model_eagerly():
    model = family_model("efficientnet_b0")
    x = images(2)
    traced = graph.run(model, tf.constant(x))
    assert_close(traced.outputs[0].numpy(), model(x, training=False).numpy())
    assert traced.tensors["block2a_se_excite"].shape[-1] == model.get_layer("block2a_se_excite").output_shape[-1]


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_residual_and_excite_groups_keep_the_same_channels_on_every_branch(name):
    model = family_model(name)
    cgraph = channel_groups.analyze(model)
    joined = [g for g in cgraph.prunable.values() if len(g.producers) > 1]
    assert joined, "expected residual / squeeze-excite groups"
    keep = random_keep(cgraph, np.random.default_rng(3))
    pruned = channel_groups.slice_model(model, cgraph, keep)
    for group in joined:
        for producer in group.producers:  # every branch keeps exactly the group's channels
            original = model.get_layer(producer).kernel.numpy()
            in_idx = channel_groups.segment_indices(cgraph.inputs[producer][0], keep)
            expected = original[:, :, in_idx][..., keep[group.name]]
            np.testing.assert_array_equal(pruned.get_layer(producer).kernel.numpy(), expected)
    for layer in pruned.layers:
        if isinstance(layer, layers.Add | layers.Multiply):
            widths = {shape[-1] for shape in layer.input_shape}
            assert len(widths) == 1, (layer.name, layer.input_shape)
    if name == "efficientnet_b0":  # the SE gate (se_expand) joins the depthwise output's group
        group = cgraph.group_of_layer("block2a_dwconv")
        assert "block2a_se_expand" in group.producers and ("block2a_se_reduce", 0) in group.consumers


def concat_model():
    inputs = layers.Input((8, 8, 3), name="image")
    a = layers.Conv2D(6, 3, padding="same", name="a_conv")(inputs)
    a = layers.BatchNormalization(name="a_bn")(a)
    b = layers.Conv2D(5, 1, name="b_conv")(inputs)
    b = layers.ReLU(name="b_act")(b)
    x = layers.Concatenate(name="concat")([a, b])
    x = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Conv2D(7, 1, name="mix")(x)
    odd = layers.Lambda(lambda t: t * 2.0, name="lambda")(x)
    y = layers.Conv2D(4, 1, name="after_lambda")(odd)
    y = layers.GlobalAveragePooling2D(keepdims=True, name="pool")(y)
    y = layers.Reshape((4,), name="flat")(y)
    y = layers.Dense(6, name="hidden")(y)
    y = layers.Dense(3, name="logits")(y)
    tf_keras.utils.set_random_seed(0)
    return tf_keras.Model(inputs, y)


def test_concatenation_maps_indices_and_unknown_layers_fix_their_channels():
    model = concat_model()
    cgraph = channel_groups.analyze(model)
    assert cgraph.outputs["concat"] == (("a_conv", 6), ("b_conv", 5))
    assert ("mix", 6) in cgraph.groups["b_conv"].consumers  # b's channels sit after a's six
    assert "Lambda" in cgraph.groups["mix"].fixed and cgraph.groups["logits"].fixed.startswith("model output")
    assert set(cgraph.prunable) == {"a_conv", "b_conv", "after_lambda", "hidden"}
    keep = {"a_conv": [0, 2, 5], "b_conv": [1, 4], "after_lambda": [0, 3], "hidden": [1, 2, 5]}
    pruned = channel_groups.slice_model(model, cgraph, keep)
    assert pruned.get_layer("mix").kernel.shape == (1, 1, 5, 7)
    assert pruned.get_layer("flat").output_shape == (None, 2)
    masked = copy_model(model)
    channel_groups.zero_inputs(masked, cgraph, {n: np.setdiff1d(np.arange(cgraph.groups[n].size), k)
                                                for n, k in keep.items()})  # fmt: skip
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    assert_close(pruned(x).numpy(), masked(x).numpy())
    with pytest.raises(ValueError, match="group 'mix' cannot be pruned: Lambda 'lambda'"):
        channel_groups.slice_model(model, cgraph, {"mix": [0, 1]})


@pytest.mark.parametrize("metric", ["madds", "params"])
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_uniform_budget_is_hit_within_two_percent_of_the_built_graph(name, metric):
    model = family_model(name)
    config = ChannelPruneConfig(**{f"keep_{metric}": 0.5}, steps=1, epochs_per_step=0)
    result = channel_prune.channel_prune(model, config)
    count = models.count_madds if metric == "madds" else models.count_params
    achieved = count(result.model) / count(model)
    assert abs(achieved - 0.5) <= 0.02 * 0.5, achieved
    assert result.report[f"{metric}_ratio"] == pytest.approx(achieved)
    ratios = [g["ratio"] for g in result.report["groups"].values() if g["size"] >= 16]
    assert max(ratios) - min(ratios) < 0.1, ratios  # one ratio for all, up to rounding (coarse in tiny groups)


def test_per_stage_and_per_layer_ratios(trained_lite):
    config = ChannelPruneConfig(per_stage={"block6": 0.5}, per_layer={"block2a_expand_conv": 0.25},
                                epochs_per_step=0)  # fmt: skip
    result = channel_prune.channel_prune(trained_lite, config)
    groups = result.report["groups"]
    assert groups["block2a_expand_conv"]["ratio"] == 0.25
    assert all(abs(g["ratio"] - 0.5) < 0.05 for n, g in groups.items() if n.startswith("block6")), groups
    assert set(groups) == {"block2a_expand_conv"} | {n for n in groups if n.startswith("block6")}
    assert result.model.get_layer("block2a_expand_conv").filters == groups["block2a_expand_conv"]["kept"]


@pytest.mark.parametrize("criterion", channel_prune.CRITERIA)
def test_every_criterion_scores_every_prunable_group(trained_lite, train_ds, criterion):
    cgraph = channel_groups.analyze(trained_lite)
    scores = channel_prune.channel_scores(trained_lite, criterion, train_ds, cgraph, batches=2)
    assert set(scores) == set(cgraph.prunable)
    for name, values in scores.items():
        assert values.shape == (cgraph.groups[name].size,) and np.isfinite(values).all(), name
        assert (values >= 0).all()


def test_criteria_rank_dead_channels_last(trained_lite, train_ds):
    model = copy_model(trained_lite)
    cgraph = channel_groups.analyze(model)
    group = cgraph.groups["block6a_expand_conv"]
    # Channel 3: a zero filter, and both BatchNorms of the block (after the expansion and after
    # the depthwise) gamma 0, beta < 0: ReLU6 outputs 0 whatever the input. (With only the first
    # BatchNorm cut, the second one's beta would still feed a constant to the projection, which
    # the activation criteria rightly count as a contribution.)
    conv = model.get_layer("block6a_expand_conv")
    kernel = conv.kernel.numpy()
    kernel[..., 3] = 0.0
    conv.kernel.assign(kernel)
    for bn_name in ("block6a_expand_bn", "block6a_bn"):
        bn = model.get_layer(bn_name)
        gamma, beta = bn.gamma.numpy(), bn.beta.numpy()
        gamma[3], beta[3] = 0.0, -1.0
        bn.gamma.assign(gamma)
        bn.beta.assign(beta)
    for criterion in channel_prune.CRITERIA:
        scores = channel_prune.channel_scores(model, criterion, train_ds, cgraph, batches=2)[group.name]
        assert scores[3] == pytest.approx(scores.min(), abs=1e-6), criterion  # (entropy/taylor: tied with dead ReLUs)
    assert channel_prune.kept_indices(np.array([0.5, 2.0, 0.1, 2.0, 1.0]), 3).tolist() == [1, 3, 4]


def test_sensitivity_scan_allocation_and_plot(trained_lite, train_ds, test_ds, tmp_path):
    config = ChannelPruneConfig(keep_madds=0.6, allocation="sensitivity", sensitivity_ratios=(0.3, 0.6),
                                sensitivity_batches=2, epochs_per_step=0)  # fmt: skip
    result = channel_prune.channel_prune(trained_lite, config, validation=test_ds)
    sensitivity = result.sensitivity
    assert set(sensitivity.losses) == set(channel_groups.analyze(trained_lite).prunable)
    assert all(len(v) == 2 for v in sensitivity.losses.values())
    achieved = models.count_madds(result.model) / models.count_madds(trained_lite)
    assert abs(achieved - 0.6) <= 0.02 * 0.6
    # More pruning where the scan says it hurts less: the least sensitive group keeps a lower
    # ratio than the most sensitive one.
    hurt = {n: v[0] - sensitivity.base_loss for n, v in sensitivity.losses.items()}
    ratios = {n: g["ratio"] for n, g in result.report["groups"].items()}
    least, most = min(hurt, key=hurt.get), max(hurt, key=hurt.get)
    assert ratios.get(least, 1.0) < ratios.get(most, 1.0)
    written = channel_prune.write_sensitivity(sensitivity, tmp_path)
    assert open(written["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "loss@0.3" in open(written["markdown"]).read()


@pytest.fixture(scope="module")
def teacher(trained_lite, train_ds):
    """trained_lite with its BatchNorm statistics re-estimated: 4 short epochs leave them stale."""
    model = copy_model(trained_lite)
    training.recalibrate_batch_norm(model, train_ds, 10)
    return model


def test_batch_norm_recalibration_restores_inference_accuracy(trained_lite, teacher, test_ds):
    from nlighten_tf.optimize import training

    assert training.evaluate(teacher, test_ds)["accuracy"] > training.evaluate(trained_lite, test_ds)["accuracy"] + 0.3
    momenta = {layer.momentum for layer in teacher.layers if isinstance(layer, layers.BatchNormalization)}
    assert momenta == {0.99}


@pytest.mark.slow
def test_iterative_schedule_with_distillation(teacher, train_ds, test_ds):
    config = ChannelPruneConfig(keep_madds=0.7, criterion="taylor", steps=2, epochs_per_step=0.5,
                                distill=DistillConfig(alpha=0.5), calibration_batches=2,
                                bn_recalibration_batches=10)  # fmt: skip
    result = channel_prune.channel_prune(teacher, config, train_ds, test_ds, quick())
    assert [h["step"] for h in result.history] == [1, 2]
    assert result.history[0]["madds_ratio"] > result.history[1]["madds_ratio"]
    assert abs(result.history[1]["madds_ratio"] - 0.7) <= 0.014
    # Digits, 10 classes. The tiny 4-epoch teacher (~72%) is fragile: one-shot pruning to 70% of
    # its MAdds leaves ~10%; two short distilled fine-tunes bring it back to ~50%.
    assert result.history[1]["val_accuracy"] > 0.35
    assert "distill_kl" in result.history[1]["train"]
    assert not any(isinstance(layer, tf_keras.Model) for layer in result.model.layers)


def op_names(path):
    from nlighten_tf.litert import flatbuffer, runtime

    return set(flatbuffer.parse(path.read_bytes()).op_types), runtime.load(path, xnnpack=False).interpreter


EDGETPU_OPS = {"ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
               "LOGISTIC", "MEAN", "MUL", "PAD", "QUANTIZE", "RELU", "RELU6", "RESHAPE", "SOFTMAX", "HARD_SWISH"}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_survives_surgery_and_exports_to_int8(name, tmp_path):
    from nlighten_tf.export import tflite

    model = family_model(name)
    result = channel_prune.channel_prune(model, ChannelPruneConfig(keep_madds=0.5, epochs_per_step=0))
    calibration = lambda: ([images(1, seed=s)] for s in range(4))  # noqa: E731
    target = "edgetpu" if name == "efficientnet_edgetpu_s" else "int8"
    exported = tflite.export(result.model, tmp_path / f"{name}.tflite", target, representative_dataset=calibration,
                             sidecar=False)  # fmt: skip
    ops, interpreter = op_names(exported.path)
    interpreter.allocate_tensors()
    assert interpreter.get_output_details()[0]["shape"].tolist() == [1, 10]
    assert "DENSIFY" not in ops and "CONV_2D" in ops
    if target == "edgetpu":  # every op on Coral's list: the dense int8 model compiles for the Edge TPU
        assert ops <= EDGETPU_OPS, ops - EDGETPU_OPS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"keep_madds": 0.0}, r"keep_madds is a keep ratio and must be in \(0, 1\], got 0.0"),
        ({"keep_madds": 1.2}, r"keep_madds .* got 1.2"),
        ({"keep_params": -0.5}, r"keep_params .* got -0.5"),
        ({"per_layer": {"block2a_expand_conv": 0}}, r"per-layer target for 'block2a_expand_conv' .* got 0"),
        ({"per_stage": {"block2": 1.5}}, r"per-stage target for 'block2' .* got 1.5"),
        ({}, "no channel-pruning target"),
        ({"keep_madds": 0.5, "keep_params": 0.5}, "not both"),
        ({"keep_madds": 0.5, "criterion": "random"}, "unknown channel criterion 'random'"),
        ({"per_layer": {"x": 0.5}, "allocation": "sensitivity"}, "needs a global budget"),
        ({"keep_madds": 0.5, "exclude": "("}, "invalid exclude regex"),
    ],
)
def test_bad_configs_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ChannelPruneConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"per_layer": {"block9z_conv": 0.5}}, "no layer named 'block9z_conv' in the model; prunable layers are e.g."),
        ({"per_layer": {"predictions": 0.5}}, r"layer 'predictions'.*cannot be pruned: model output 'predictions'"),
        ({"per_stage": {"block42": 0.5}}, r"no prunable channel group in stage 'block42'; stages: stem, block1"),
        ({"keep_madds": 0.01}, "keep_madds=0.01 is unreachable"),
    ],
)
def test_bad_targets_for_a_model_name_the_layer(kwargs, message):
    model = family_model("efficientnet_lite0")
    with pytest.raises(ValueError, match=message):
        channel_prune.channel_prune(model, ChannelPruneConfig(epochs_per_step=0, **kwargs))


def test_conflicting_ratios_in_one_residual_group():
    model = family_model("mobilenet_v2")
    config = ChannelPruneConfig(per_layer={"block2a_project_conv": 0.5, "block2b_project_conv": 0.75})
    with pytest.raises(ValueError, match="share channel group 'block2a_project_conv'"):
        channel_prune.allocate_channels(model, config)


def test_prune_channels_one_shot_and_wrapped_models_are_refused(trained_lite):
    pruned = channel_prune.prune_channels(trained_lite, {"block3a_expand_conv": 0.5, "top_conv": 0.25})
    assert pruned.get_layer("block3a_expand_conv").filters == trained_lite.get_layer("block3a_expand_conv").filters // 2
    assert pruned.get_layer("predictions").kernel.shape[0] == trained_lite.get_layer("top_conv").filters // 4
    import tensorflow_model_optimization as tfmot

    wrapped = tfmot.sparsity.keras.prune_low_magnitude(copy_model(trained_lite))
    with pytest.raises(ValueError, match="TFMOT wrapper.*before unstructured pruning"):
        channel_prune.prune_channels(wrapped, {"top_conv": 0.5})


@pytest.mark.slow
def test_the_pruned_model_composes_with_tfmot_pruning_clustering_and_qat(trained_lite):
    """channel-prune -> unstructured prune -> cluster -> PCQAT: every TFMOT API wraps the result
    (plain standard layers), so the later stages of a recipe run on it unchanged."""
    import tensorflow_model_optimization as tfmot

    from nlighten_tf.optimize import quantize

    pruned = channel_prune.prune_channels(trained_lite, {"block4a_expand_conv": 0.5, "top_conv": 0.5})
    sparse = tfmot.sparsity.keras.prune_low_magnitude(copy_model(pruned))
    stripped = tfmot.sparsity.keras.strip_pruning(sparse)
    clustered = tfmot.clustering.keras.cluster_weights(
        copy_model(stripped), number_of_clusters=4,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR,
    )  # fmt: skip
    qat = quantize.quantize_model(tfmot.clustering.keras.strip_clustering(clustered), quantize.make_scheme("pcqat"))
    x = images(2)
    assert qat(x).shape == (2, 10)
