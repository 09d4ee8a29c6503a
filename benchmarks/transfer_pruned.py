"""Do pruned backbones transfer as well as dense ones? ImageNet EfficientNet-Lite0 transferred
to Fashion-MNIST at 0 / 50 / 75% sparsity, with the same head phase and fine-tuning budget for
every row.

Setup (defaults): the converted ImageNet Lite0 checkpoint (`weights="imagenet"`, TF 'same'
padding as trained) without its classifier + a new zero-initialised 10-way head
(`optimize.transfer`), on the first `--train_examples` Fashion-MNIST training images upscaled
to `--image_size` px (grayscale repeated to RGB, Lite normalisation). Pruned: every Conv2D
kernel of the backbone (stem, 1x1 expansions/projections, top; no depthwise kernels, as TFMOT),
never the new head.

Protocol A, "transfer a pruned backbone" (the question): the ImageNet backbone is pruned
one-shot before any target data is seen, layer-wise (each kernel keeps its largest-|w|
1 - s fraction: `optimize.lottery.next_masks` / `apply_masks`). Then exactly the dense
backbone's schedule: the head alone on the frozen backbone for `--head_epochs` at
`--head_learning_rate` (BatchNorms in inference mode), then every block unfrozen (BatchNorms
stay frozen) for `--fine_tune_epochs` at `--fine_tune_learning_rate`, the masks held fixed
(`lottery.HoldMasks` re-zeroes pruned weights after every step; checked at the end). Also
reported: top-1 right after pruning (the dense backbone's trained head put on the pruned
backbone, no training) and after the head phase (a linear probe of the pruned backbone).

Protocol B, "prune during transfer" (`--gradual`, on by default): from the dense head-phase
model, the same fine-tuning with TFMOT magnitude pruning on the target data (`optimize.prune`,
polynomial 0 -> s over the first `--prune_end` of the steps, masks every `--prune_frequency`
steps, then held). The 0% row (dense fine-tuning) is shared by both protocols.

Top-1 of each Keras model on the first `--test_examples` test images and the sparsity reached.
Needs the converted weights (docs/weights.md: tools/import_weights.py --model=efficientnet_lite0).

  python benchmarks/transfer_pruned.py [--sparsities=0,0.5,0.75] [--image_size=64] [--train_examples=3072] [--nogradual]

About 7 minutes with the defaults on the 2 shared cores here (398 s measured; 235 s with --nogradual).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from absl import app, flags, logging

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nlighten_tf  # noqa: E402,F401  (legacy Keras before TensorFlow)
from benchmarks import common  # noqa: E402
from nlighten_tf.render import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("sparsities", ["0", "0.5", "0.75"], "Target sparsities of the backbone's Conv2D kernels.")
flags.DEFINE_string("model", "efficientnet_lite0", "Backbone (needs converted ImageNet weights).")
flags.DEFINE_integer("image_size", 64, "Fashion-MNIST upscaled to this many pixels.")
flags.DEFINE_integer("train_examples", 3072, "First N training images used.")
flags.DEFINE_integer("test_examples", 2000, "First N test images scored.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("head_epochs", 1.0, "Head phase (frozen backbone), the same for every row.")
flags.DEFINE_float("head_learning_rate", 5e-3, "Head phase peak learning rate (Adam, cosine).")
flags.DEFINE_float("fine_tune_epochs", 2.0, "Fine-tuning epochs per row (every block, BatchNorms frozen).")
flags.DEFINE_float("fine_tune_learning_rate", 3e-4, "Fine-tuning peak learning rate (Adam, cosine).")
flags.DEFINE_bool(
    "gradual", True, "Also run protocol B (TFMOT pruning during the fine-tuning; about half the run time)."
)
flags.DEFINE_float(
    "prune_end", 0.6, "Protocol B: fraction of the fine-tuning steps over which sparsity ramps 0 -> target."
)
flags.DEFINE_integer("prune_frequency", 8, "Protocol B: steps between mask updates.")
flags.DEFINE_integer("seed", 0, "Seed of the data order and the head's initialisation.")
flags.DEFINE_string("output_dir", "benchmarks/results", "Where transfer_pruned.json / .md go.")

STEM = "transfer_pruned"
HEAD = "head_logits"


def backbone_zero_fraction(model) -> float:
    """Zeros among every backbone weight (kernels, depthwise, BatchNorm; not the head)."""
    zeros = size = 0
    for layer in model.layers:
        if layer.name == HEAD:
            continue
        for weight in layer.weights:
            values = weight.numpy()
            zeros += int(np.count_nonzero(values == 0))
            size += values.size
    return zeros / size


def batchnorm_statistics(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers
            if type(layer).__name__ == "BatchNormalization"}  # fmt: skip


def batchnorm_unchanged(before: dict[str, list[np.ndarray]], model) -> bool:
    after = batchnorm_statistics(model)
    return all(np.array_equal(a, b) for name, values in before.items()
               for a, b in zip(values, after[name], strict=True))  # fmt: skip


def main(argv: list[str]) -> int:
    del argv
    logging.set_verbosity(logging.WARNING)
    import tf_keras

    from nlighten_tf import data
    from nlighten_tf.keras_utils import copy_model, kernel_of
    from nlighten_tf.optimize import lottery, prune, training, transfer
    from nlighten_tf.optimize.selection import LayerSelection
    from nlighten_tf.recipes.runner import keras_verbosity

    start = time.time()
    sparsities = [float(s) for s in FLAGS.sparsities]
    verbose = keras_verbosity()
    size = FLAGS.image_size
    load = dict(image_size=size, batch_size=FLAGS.batch_size, model=FLAGS.model, cache=True)
    train, info = data.load("fashion_mnist", "train", limit=FLAGS.train_examples, seed=FLAGS.seed, **load)
    test, _ = data.load("fashion_mnist", "test", limit=FLAGS.test_examples, **load)
    steps = training.count_fit_steps(training.TrainConfig(epochs=FLAGS.fine_tune_epochs), train).total

    tf_keras.utils.set_random_seed(FLAGS.seed)
    base = transfer.build_transfer_model(FLAGS.model, info.num_classes, (size, size, 3), weights="imagenet")
    everything = transfer.blocks(base)
    selection = LayerSelection(policy="all", exclude=f"^{HEAD}$")
    names = [layer.name for layer in selection.selected_layers(base, depthwise=False)]
    imagenet_bn = batchnorm_statistics(base)

    def adam(epochs: float, rate: float) -> training.TrainConfig:
        return training.TrainConfig(epochs=epochs, learning_rate=rate, verbose=verbose)

    head_config = transfer.TransferConfig(head=adam(FLAGS.head_epochs, FLAGS.head_learning_rate))
    fine_tune = adam(FLAGS.fine_tune_epochs, FLAGS.fine_tune_learning_rate)

    def head_phase(model):
        tf_keras.utils.set_random_seed(FLAGS.seed)  # the same head initialisation and batches for every row
        phase_start = time.time()
        trained = transfer.transfer(model, train, head_config).model
        return trained, training.evaluate(trained, test)["accuracy"], time.time() - phase_start

    def fine_tuned(model, **options):
        tf_keras.utils.set_random_seed(FLAGS.seed + 1)  # the same batches and dropout for every row
        model = copy_model(model)
        transfer.freeze(model, everything)
        phase_start = time.time()
        if "config" in options:
            result = prune.prune(model, train, options["config"], fine_tune)
            model = result.model
        else:
            model, _ = training.fit(model, train, fine_tune, callbacks=options.get("callbacks", ()))
        seconds = time.time() - phase_start
        transfer.unfreeze_all(model)
        return model, training.evaluate(model, test)["accuracy"], seconds

    def zeros_in_kernels(model) -> float:
        return 1.0 - lottery.remaining_fraction(model, names)

    rows, details = [], []

    def record(protocol: str, sparsity: float, model, top1: float, seconds: float, **extra) -> None:
        reached = zeros_in_kernels(model)
        everywhere = backbone_zero_fraction(model)
        bn = batchnorm_unchanged(imagenet_bn, model)
        print(f"  top-1 {100 * top1:.2f}%, pruned kernels {reached:.1%} zero, backbone {everywhere:.1%} "
              f"({seconds:.0f} s)", flush=True)  # fmt: skip
        details.append({"protocol": protocol, "sparsity": sparsity, "reached": reached,
                        "backbone_zero_fraction": everywhere, "top1": top1, "fine_tune_s": seconds,
                        "batchnorm_unchanged": bn, **extra})  # fmt: skip

    print(
        f"dense: head phase, {FLAGS.head_epochs:g} epoch on {FLAGS.train_examples} images at {size} px ...",
        flush=True,
    )
    dense_head, dense_probe, dense_head_s = head_phase(base)
    print(f"  head only (linear probe of the dense backbone): top-1 {100 * dense_probe:.2f}% ({dense_head_s:.0f} s)",
          flush=True)  # fmt: skip
    if 0.0 in sparsities:
        print(f"dense: fine-tuning, {steps} steps ...", flush=True)
        model, top1, seconds = fine_tuned(dense_head)
        record("dense", 0.0, model, top1, seconds, probe=dense_probe, head_s=dense_head_s, after_pruning=None)

    for sparsity in (s for s in sparsities if s > 0):
        print(
            f"A: one-shot pruning of the ImageNet backbone to {sparsity:.0%}, then the same transfer ...",
            flush=True,
        )
        pruned = copy_model(base)
        ones = {name: np.ones(kernel_of(pruned.get_layer(name)).shape, np.float32) for name in names}
        masks = lottery.next_masks(pruned, ones, 1.0 - sparsity)
        lottery.apply_masks(pruned, masks)
        # Before any target training of the pruned backbone: the dense backbone's trained head on it.
        swapped = copy_model(pruned)
        swapped.get_layer(HEAD).set_weights(dense_head.get_layer(HEAD).get_weights())
        after_pruning = training.evaluate(swapped, test)["accuracy"]
        head, probe, head_s = head_phase(pruned)
        print(f"  dense head on the pruned backbone {100 * after_pruning:.2f}%, after its own head phase "
              f"{100 * probe:.2f}% ({head_s:.0f} s); fine-tuning, masks held ...", flush=True)  # fmt: skip
        model, top1, seconds = fine_tuned(head, callbacks=[lottery.HoldMasks(masks)])
        held = all(not np.any(kernel_of(model.get_layer(n)).numpy()[masks[n] == 0]) for n in names)
        record("A", sparsity, model, top1, seconds, probe=probe, head_s=head_s, after_pruning=after_pruning,
               masks_held=held)  # fmt: skip

    if FLAGS.gradual:
        for sparsity in (s for s in sparsities if s > 0):
            print(f"B: pruning to {sparsity:.0%} gradually during the fine-tuning (TFMOT) ...", flush=True)
            config = prune.PruneConfig(
                target_sparsity=sparsity, schedule="polynomial", end_epoch=FLAGS.prune_end * FLAGS.fine_tune_epochs,
                frequency=FLAGS.prune_frequency, selection=selection,
            )  # fmt: skip
            model, top1, seconds = fine_tuned(dense_head, config=config)
            record(
                "B",
                sparsity,
                model,
                top1,
                seconds,
                probe=dense_probe,
                head_s=dense_head_s,
                after_pruning=None,
            )

    dense = next((d["top1"] for d in details if d["protocol"] == "dense"), None)
    labels = {
        "dense": "dense (shared)",
        "A": "A: pruned, then transferred",
        "B": "B: pruned during fine-tuning",
    }
    for detail in details:
        rows.append({
            "protocol": labels[detail["protocol"]], "target sparsity": f"{detail['sparsity']:.0%}",
            "pruned kernels zero": f"{detail['reached']:.1%}",
            "all backbone weights zero": f"{detail['backbone_zero_fraction']:.1%}",
            "top-1 right after pruning %": "-" if detail["after_pruning"] is None
            else round(100 * detail["after_pruning"], 2),
            "head-only probe %": round(100 * detail["probe"], 2),
            "top-1 after fine-tune %": round(100 * detail["top1"], 2),
            "vs dense (points)": "-" if dense is None or detail["protocol"] == "dense"
            else f"{100 * (detail['top1'] - dense):+.2f}",
            "masks held": {True: "yes", False: "NO"}.get(detail.get("masks_held"), "-"),
            "BatchNorm stats unchanged": "yes" if detail["batchnorm_unchanged"] else "NO",
            "fine-tune s": round(detail["fine_tune_s"]),
        })  # fmt: skip

    setup = (
        f"ImageNet {FLAGS.model} (converted checkpoint, TF 'same' padding) + new 10-way head; Fashion-MNIST, first "
        f"{FLAGS.train_examples} training images upscaled to {size} px, batch {FLAGS.batch_size}, Adam + cosine. "
        f"Every row: head phase of {FLAGS.head_epochs:g} epoch at {FLAGS.head_learning_rate:g} on the frozen backbone "
        f"(BatchNorms in inference mode), then {FLAGS.fine_tune_epochs:g} epochs ({steps} steps) at "
        f"{FLAGS.fine_tune_learning_rate:g} with every block unfrozen (BatchNorms frozen). Pruned: every backbone "
        "Conv2D kernel (no depthwise), head dense. A: the ImageNet backbone pruned one-shot by magnitude, "
        "layer-wise, before any target data, masks held fixed during fine-tuning; 'right after pruning' = the dense "
        "backbone's trained head on the pruned backbone, no training. "
        + (
            "B: from the dense head phase, TFMOT pruning on the target data during the fine-tuning (polynomial "
            f"0 -> target over the first {FLAGS.prune_end:.0%} of the steps, masks every {FLAGS.prune_frequency} "
            "steps). "
            if FLAGS.gradual
            else ""
        )
        + f"Top-1 of the Keras model on the first {FLAGS.test_examples} test images; one run, seed {FLAGS.seed}."
    )
    text = "\n".join([setup, "", markdown_table(rows), ""])
    settings = {k: FLAGS[k].value for k in ("model", "sparsities", "image_size", "train_examples", "test_examples",
                                            "batch_size", "head_epochs", "head_learning_rate", "fine_tune_epochs",
                                            "fine_tune_learning_rate", "gradual", "prune_end", "prune_frequency",
                                            "seed")}  # fmt: skip
    payload = {"settings": settings, "fine_tune_steps": steps, "pruned_layers": names, "rows": rows,
               "results": details, "markdown": text}  # fmt: skip
    common.write_results(FLAGS.output_dir, STEM, payload, text, start)
    return 0


if __name__ == "__main__":
    app.run(main)
