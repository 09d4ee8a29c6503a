import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from nlighten_tf import models
from nlighten_tf.optimize import distill, lottery, lowrank, training
from nlighten_tf.optimize.selection import LayerSelection
from tests.optimize.conftest import IMAGE_SIZE, quick, tiny_lite


def small_student(seed):
    """Half the teacher's width and head."""
    tf.keras.utils.set_random_seed(seed)
    return models.build("efficientnet_lite0", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=10,
                        width_coefficient=0.25, depth_coefficient=0.34, head_filters=128, dropout_rate=0.0)


def tiny_ticket_model():
    return tiny_lite(seed=3)


def mean_kl(teacher, student, dataset, temperature):
    values = [distill.soft_kl(teacher(x, training=False), student(x, training=False), temperature).numpy()
              for x, _ in dataset]
    return float(np.mean(values))


def test_distillation_brings_the_student_closer_to_the_teacher(trained_lite, train_ds, test_ds):
    budget = quick(epochs=3)
    teacher_weights = [w.copy() for w in trained_lite.get_weights()]
    config = distill.DistillConfig(alpha=0.1, temperature=4.0)
    label_only, _ = training.fit(small_student(7), train_ds, budget)
    distilled = distill.distill(small_student(7), trained_lite, train_ds, config, budget).model
    kl_label_only = mean_kl(trained_lite, label_only, test_ds, config.temperature)
    kl_distilled = mean_kl(trained_lite, distilled, test_ds, config.temperature)
    assert kl_distilled < kl_label_only, (kl_distilled, kl_label_only)
    assert trained_lite.trainable
    for before, after in zip(teacher_weights, trained_lite.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(
    "kwargs, message", [({"temperature": 0}, "temperature must be > 0"), ({"alpha": 1.5}, "alpha")]
)
def test_bad_distill_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        distill.DistillConfig(**kwargs)


def test_teacher_with_other_classes_is_refused(trained_lite):
    student = models.build("mobilenet_v2", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), num_classes=7,
                           width_multiplier=0.35, dropout_rate=0.0)
    with pytest.raises(ValueError, match="must predict the same classes"):
        distill.Distiller(student, trained_lite, distill.DistillConfig())


class RecordTraining(tf.keras.callbacks.Callback):
    """Every weight array at the start and end of each masked training, in order."""

    def __init__(self):
        super().__init__()
        self.fits = []

    def on_train_begin(self, logs=None):
        kernels = [i for i, w in enumerate(self.model.weights) if w.name.split("/")[-1].startswith("kernel")]
        self.fits.append({"begin": self.model.get_weights(), "kernels": kernels})

    def on_train_end(self, logs=None):
        self.fits[-1]["end"] = self.model.get_weights()


@pytest.fixture(scope="module")
def lottery_run(train_ds, test_ds):
    config = lottery.LotteryConfig(rounds=2, rewind_steps=5)
    model = tiny_ticket_model()
    initial = model.get_weights()
    record = RecordTraining()
    rounds = lottery.lottery(model, train_ds, test_ds, config, quick(epochs=0.5), callbacks=[record])
    return rounds, record.fits, initial


@pytest.fixture(scope="module")
def lottery_rounds(lottery_run):
    return lottery_run[0]


def test_lottery_keeps_point_eight_to_the_k_and_masks_never_regrow(lottery_rounds):
    assert [r.round for r in lottery_rounds] == [0, 1, 2]
    for entry in lottery_rounds:
        assert abs(entry.remaining - 0.8**entry.round) <= 0.01, entry.as_dict()
    for previous, current in zip(lottery_rounds, lottery_rounds[1:], strict=False):
        for name, kernel in _kernels(current.model).items():
            regrown = (kernel != 0) & (_kernels(previous.model)[name] == 0)
            assert not regrown.any(), f"round {current.round}: {name} regrew {regrown.sum()} weights"


def test_lottery_reports_accuracy_and_random_control(lottery_rounds):
    assert lottery_rounds[0].control_accuracy is None
    assert all(0 <= r.accuracy <= 1 and 0 <= r.control_accuracy <= 1 for r in lottery_rounds[1:])


def test_tickets_restart_from_the_rewind_point_and_controls_from_fresh_weights(lottery_run):
    rounds, fits, initial = lottery_run
    # Round 0's ticket, then a ticket and its random-reinitialisation control per round.
    assert len(fits) == 1 + 2 * (len(rounds) - 1)
    tickets, controls = [fits[0], *fits[1::2]], fits[2::2]
    rewind = tickets[0]["begin"]  # round 0: nothing masked, so exactly the rewind point
    # Late rewinding (5 steps) moved the weights away from initialisation.
    assert any(not np.array_equal(a, b) for a, b in zip(rewind, initial, strict=True))
    for ticket in tickets[1:]:
        masked = 0
        for start, point in zip(ticket["begin"], rewind, strict=True):
            alive = start != 0
            masked += int((~alive).sum())
            np.testing.assert_array_equal(start[alive], point[alive])  # survivors rewound exactly
        assert masked > 0
    for ticket, control in zip(tickets[1:], controls, strict=True):
        for i in ticket["kernels"]:
            pruned = ticket["begin"][i] == 0
            # Same mask, held through training; fresh random values; and really trained.
            np.testing.assert_array_equal(control["begin"][i] == 0, pruned)
            assert not control["end"][i][pruned].any()
            assert not np.allclose(control["begin"][i][~pruned], ticket["begin"][i][~pruned])
        assert any(not np.array_equal(control["begin"][i], control["end"][i]) for i in ticket["kernels"])


def _kernels(model):
    from nlighten_tf.optimize import weight_stats

    return weight_stats.kernels(model)


def test_next_masks_shrink_monotonically():
    model = small_student(0)
    names = [layer.name for layer in LayerSelection().selected_layers(model)]
    from nlighten_tf.keras_utils import kernel_of

    masks = {n: np.ones(kernel_of(model.get_layer(n)).shape, np.float32) for n in names}
    first = lottery.next_masks(model, masks, 0.8)
    lottery.apply_masks(model, first)
    second = lottery.next_masks(model, first, 0.64)
    for name in names:
        assert (second[name] <= first[name]).all()
        assert abs(second[name].mean() - 0.64) <= 0.5 / second[name].size + 1e-6


def test_low_rank_factorisation_saves_parameters_and_approximates(trained_lite, test_ds):
    images = next(iter(test_ds))[0]
    exact = lowrank.factorize(trained_lite, lowrank.LowRankConfig(energy=1.0))
    np.testing.assert_allclose(exact.model(images).numpy(), trained_lite(images).numpy(), atol=1e-3)
    result = lowrank.factorize(trained_lite, lowrank.LowRankConfig(energy=0.6, selection=LayerSelection(policy="conv1x1")))
    assert result.report and result.params_after < result.params_before
    saved = sum(r["params_before"] - r["params_after"] for r in result.report.values())
    assert result.params_before - result.params_after == saved
    for entry in result.report.values():
        assert entry["rank"] < entry["full_rank"]
    with pytest.raises(ValueError, match="energy"):
        lowrank.LowRankConfig(energy=0)


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    script = textwrap.dedent(
        """
        import nlighten_tf
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from nlighten_tf import data, models
        from nlighten_tf.optimize import prune, training
        strategy = training.get_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        train, _ = data.load("digits", image_size=32, batch_size=64, limit=256)
        model = models.build("efficientnet_lite0", input_shape=(32, 32, 3), num_classes=10,
                             width_coefficient=0.5, depth_coefficient=0.34, head_filters=256)
        result = prune.prune(model, train, prune.PruneConfig(target_sparsity=0.5),
                             training.TrainConfig(epochs=2, verbose=0), strategy=strategy)
        print("REPLICAS", strategy.num_replicas_in_sync, "SPARSITY", round(result.report["global_sparsity"], 3))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("REPLICAS")][0].split()
    assert line[1] == "2" and abs(float(line[3]) - 0.5) <= 0.01
