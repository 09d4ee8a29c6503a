"""Transfer learning: a pretrained backbone, a new classification head, and a freeze/unfreeze
schedule (the head first on a frozen backbone, then the top blocks at a lower learning rate).

Freezing is per layer (``layer.trainable = False``). A frozen ``BatchNormalization`` runs in
inference mode in tf-keras (it normalises with its moving statistics and never updates them),
which is what Keras' transfer-learning guide asks for: re-estimating the statistics on a small
new data set with a half-trained head would wreck the pretrained features. BatchNorm layers
therefore stay frozen when their block is unfrozen, unless ``train_batchnorm`` asks otherwise.

Blocks are named by the registry builders' layer-name prefixes, in graph order from the
input: ``stem``, ``block1`` .. ``block7`` (the stages of every family: EfficientNet / -Lite /
-EdgeTPU and MobileNetV2; ``block6a``, ``block6b``... are one block) and ``top`` (the final 1x1
convolution). "The top 2 blocks" of EfficientNet-Lite0 or MobileNetV2 are ``top`` and ``block7``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import tensorflow as tf
import tf_keras
from tf_keras import layers

from nlighten_tf.keras_utils import copy_model, unwrap
from nlighten_tf.models.naming import from_legacy_name
from nlighten_tf.optimize import training
from nlighten_tf.optimize.fields import documented

# The head build_transfer_model adds, and the one the registry builders add with
# include_top=True: either is "the head" that the first phase trains.
HEAD_LAYER_NAMES = ("head_pool", "head_dropout", "head_logits")
REGISTRY_HEAD_NAMES = ("avg_pool", "top_dropout", "predictions")
_BLOCK_PATTERN = re.compile(r"^(stem|top|block\d+)[a-z]?_")


def build_transfer_model(
    backbone: str,
    num_classes: int,
    input_shape: Sequence[int] | None = None,
    weights: str | None = "imagenet",
    dropout: float = 0.2,
    **options,
) -> tf_keras.Model:
    """``registry.build(backbone, include_top=False, weights=...)`` + a new head: global average
    pooling, dropout (none when 0) and a zero-initialised ``num_classes``-way Dense layer giving
    logits.

    `weights`: "imagenet", a path to an .h5 weights file or None (random initialisation); the
    head is always freshly initialised. `options`: other registry build options of the backbone
    (``sparse_ready``, ``width_coefficient``, ``drop_connect_rate`` ...).
    """
    from nlighten_tf.models import registry

    model_info = registry.info(backbone)
    if model_info.task != "classification":
        raise ValueError(
            f"backbone {backbone!r} is a {model_info.task} model; transfer learning needs a classifier backbone"
        )
    for key in ("include_top", "features_only", "num_classes"):
        if key in options:
            raise ValueError(
                f"build_transfer_model sets {key} itself (include_top=False, then a new {num_classes}-way head); "
                f"do not pass {key}"
            )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    base = registry.build(backbone, include_top=False, weights=weights, input_shape=input_shape, **options)
    x = layers.GlobalAveragePooling2D(name="head_pool")(base.output)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    # Zero-initialised (as BiT's fine-tuning heads): training starts from uniform predictions.
    # The registry's classifier initialiser (uniform +-1/sqrt(classes), the reference's choice
    # when training from scratch) gives logits in the tens over 1280 ReLU6 features of a
    # pretrained backbone: a first loss near 16 instead of ln(classes), and a wasted head phase.
    logits = layers.Dense(num_classes, kernel_initializer="zeros", name="head_logits")(x)
    return tf_keras.Model(base.input, logits, name=f"{base.name}_transfer")


# --- Blocks and freezing ------------------------------------------------------------------


def head_layers(model: tf_keras.Model) -> list[layers.Layer]:
    """The classification head's layers; ValueError if the model has none with weights."""
    names = HEAD_LAYER_NAMES + REGISTRY_HEAD_NAMES
    head = [layer for layer in model.layers if unwrap(layer).name in names]
    if not any(layer.weights for layer in head):
        raise ValueError(
            f"model {model.name!r} has no classification head (a Dense layer named {HEAD_LAYER_NAMES[-1]!r} or "
            f"{REGISTRY_HEAD_NAMES[-1]!r}): build it with build_transfer_model or include_top=True"
        )
    return head


def block_of(layer: layers.Layer) -> str | None:
    """The block a backbone layer belongs to ('stem', 'block6', 'top'), None for the head and input."""
    name = unwrap(layer).name
    if name in HEAD_LAYER_NAMES + REGISTRY_HEAD_NAMES:
        return None
    match = _BLOCK_PATTERN.match(name)
    return match.group(1) if match else None


def blocks(model: tf_keras.Model) -> list[str]:
    """The backbone's blocks in graph order from the input (``['stem', 'block1', ..., 'top']``)."""
    found: list[str] = []
    for layer in model.layers:
        block = block_of(layer)
        if block is not None and block not in found:
            found.append(block)
    if not found:
        raise ValueError(
            f"model {model.name!r} has no layers named like a registry backbone's blocks (stem_*, blockN*, top_*)"
        )
    return found


def select_blocks(model: tf_keras.Model, top: int = 0, names: Sequence[str] = ()) -> list[str]:
    """The blocks to unfreeze: the last `top` ones, or exactly `names` (not both)."""
    return choose_blocks(blocks(model), top, names, model.name)


def choose_blocks(
    available: Sequence[str], top: int = 0, names: Sequence[str] = (), model_name: str = ""
) -> list[str]:
    """`select_blocks` on a model's block list (``blocks(model)``), named `model_name` in errors."""
    where = f"model {model_name!r}" if model_name else "the model"
    if isinstance(names, str):
        names = (names,)
    if top and names:
        raise ValueError("give either a number of top blocks or block names to unfreeze, not both")
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"the number of top blocks to unfreeze must be an integer >= 0, got {top!r}")
    if top > len(available):
        raise ValueError(
            f"cannot unfreeze the top {top} blocks: {where} has {len(available)} ({', '.join(available)})"
        )
    unknown = [n for n in names if n not in available]
    if unknown:
        # Transfer unfreezes whole stages, so an old MobileNetV2 block name cannot be mapped to
        # the same layers: name the stage it now belongs to.
        renamed = [f"{n!r} was {from_legacy_name(n)}, now in stage {from_legacy_name(n)[:-1]}"
                   for n in unknown if from_legacy_name(n)]
        hint = f" (in MobileNetV2's old block numbering, {'; '.join(renamed)})" if renamed else ""
        raise ValueError(
            f"unknown block(s) {', '.join(map(repr, unknown))} in {where}; valid blocks: {', '.join(available)}{hint}"
        )
    if top:
        return list(available[-top:])
    return [b for b in available if b in names]


def freeze(
    model: tf_keras.Model, trainable_blocks: Sequence[str] = (), train_batchnorm: bool = False
) -> None:
    """Freezes the backbone except `trainable_blocks` (their BatchNorms too unless
    `train_batchnorm`); the head stays trainable. Takes effect at the next compile."""
    head = {id(layer) for layer in head_layers(model)}
    chosen = set(select_blocks(model, names=trainable_blocks))
    model.trainable = True
    for layer in model.layers:
        if id(layer) in head:
            layer.trainable = True
            continue
        is_bn = isinstance(unwrap(layer), layers.BatchNormalization)
        layer.trainable = block_of(layer) in chosen and (train_batchnorm or not is_bn)


def unfreeze_all(model: tf_keras.Model) -> None:
    for layer in model.layers:
        layer.trainable = True


# --- The schedule -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Phase 1 trains the head for `head` (epochs, learning rate, optimizer...) on the frozen
    backbone. Phase 2, when `fine_tune` is given, also trains the top `unfreeze_top_blocks`
    blocks (or the blocks named in `unfreeze_blocks`), normally at a lower learning rate."""

    head: training.TrainConfig = dataclasses.field(default_factory=training.TrainConfig)
    fine_tune: training.TrainConfig | None = None
    unfreeze_top_blocks: int = documented(0, "train the top N blocks in the fine-tuning phase")
    unfreeze_blocks: tuple[str, ...] = documented((), "or name the blocks to train (stem, block1 .. block7, top ...)")
    train_batchnorm: bool = documented(False, "train the BatchNorms too (else they stay frozen, in inference mode)")

    def __post_init__(self):
        top = self.unfreeze_top_blocks
        if isinstance(top, bool) or not isinstance(top, int) or top < 0:
            raise ValueError(f"unfreeze_top_blocks must be an integer >= 0, got {top!r}")
        if top and self.unfreeze_blocks:
            raise ValueError("give unfreeze_top_blocks or unfreeze_blocks, not both")
        unfreezes = bool(top or self.unfreeze_blocks)
        if self.fine_tune is not None and not unfreezes:
            raise ValueError(
                "a fine-tuning phase needs blocks to train: set unfreeze_top_blocks or unfreeze_blocks"
            )
        if self.fine_tune is None and unfreezes:
            raise ValueError(
                "unfreeze_top_blocks / unfreeze_blocks need a fine-tuning phase (fine_tune epochs > 0)"
            )


@dataclasses.dataclass
class TransferResult:
    model: tf_keras.Model
    history: dict[str, dict[str, list[float]]]  # {"head": ..., "fine_tune": ...}
    unfrozen: list[str]  # the blocks phase 2 trained


def transfer(
    model: tf_keras.Model,
    train: tf.data.Dataset,
    config: TransferConfig,
    validation: tf.data.Dataset | None = None,
    strategy=None,
    callbacks: Sequence[tf_keras.callbacks.Callback] = (),
    prepare: Callable[[tf_keras.Model], tf_keras.Model] | None = None,
) -> TransferResult:
    """Runs the schedule through `training.fit` on a copy of `model` (the input is left as it
    was). Every layer of the returned model is trainable again, so that later stages (pruning,
    QAT) train the whole network."""
    head_layers(model)
    unfrozen = select_blocks(model, config.unfreeze_top_blocks, config.unfreeze_blocks)
    history: dict[str, dict[str, list[float]]] = {}
    model = original = copy_model(model)
    freeze(model)
    try:
        model, history["head"] = training.fit(
            model,
            train,
            config.head,
            validation=validation,
            callbacks=callbacks,
            strategy=strategy,
            prepare=prepare,
        )
        if config.fine_tune is not None:
            freeze(model, unfrozen, config.train_batchnorm)
            model, history["fine_tune"] = training.fit(
                model, train, config.fine_tune, validation=validation, callbacks=callbacks, strategy=strategy,
                prepare=prepare,
            )  # fmt: skip
    finally:
        unfreeze_all(original)
        unfreeze_all(model)
    return TransferResult(model, history, unfrozen)
