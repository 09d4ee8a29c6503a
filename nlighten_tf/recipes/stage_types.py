"""Every recipe stage type, declared once, on its technique's own config dataclass.

A `StageType` names the technique config (``optimize.prune.PruneConfig`` ...) whose documented
fields (``optimize.fields.documented``: default, doc, valid values) are the stage's keys, and
states only what the stage adds: the shared training keys with the stage's own defaults, the
layer-selection keys, keys of its own, its executor and the keys its first log line shows.
From the declarations come the recipe schema's stage dataclasses (`StageType.config_class`),
the technique configs a stage runs with (`technique_config`, `train_config`), the
single-technique tools' flags (`define_flags`) and recipes/README.md's key tables (`markdown`).

Adding a stage type is one `register(StageType(...))` call (tests/recipes/test_stage_types.py
registers a toy one).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nlighten_tf.autocompress import search as autocompress
from nlighten_tf.edgetpu import compiler
from nlighten_tf.export import litert_backend
from nlighten_tf.export.targets import TARGETS
from nlighten_tf.optimize import (
    channel_prune,
    cluster,
    distill,
    lottery,
    lowrank,
    prune,
    quantize,
    training,
    transfer,
)
from nlighten_tf.optimize.selection import LayerSelection


@dataclasses.dataclass(frozen=True)
class Key:
    """One recipe key: its annotation as recipes spell it (lists, not tuples), default, doc and,
    for enumerations, the valid values."""

    name: str
    type: Any
    default: Any
    doc: str = ""
    choices: tuple[str, ...] = ()

    def dataclass_field(self) -> tuple[str, Any, Any]:
        if isinstance(self.default, list | dict) or dataclasses.is_dataclass(self.default):
            # Mutable defaults: each stage gets its own copy.
            return self.name, self.type, dataclasses.field(default_factory=functools.partial(copy.deepcopy, self.default))
        return self.name, self.type, dataclasses.field(default=self.default)


def _recipe_type(hint: Any) -> Any:
    """A technique annotation as recipes write it: tuples and Mappings become lists and dicts."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(lambda a, b: a | b, [_recipe_type(a) for a in typing.get_args(hint)])
    if origin is tuple:
        return list[_recipe_type(typing.get_args(hint)[0])]
    if origin in (Mapping, dict):
        key, value = typing.get_args(hint)
        return dict[key, _recipe_type(value)]
    return hint


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value


def config_keys(cls: type, *, prefix: str = "", omit: Iterable[str] = (), defaults: Mapping[str, Any] | None = None) -> list[Key]:
    """The documented fields of dataclass `cls` as keys (named `prefix` + field name), without
    `omit`, with `defaults` (by key name) replacing the config's own."""
    hints = typing.get_type_hints(cls)
    defaults = defaults or {}
    keys = []
    for field in dataclasses.fields(cls):
        name = prefix + field.name
        if "doc" not in field.metadata or field.name in omit or name in omit:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        keys.append(Key(name, _recipe_type(hints[field.name]), _plain(defaults.get(name, default)), field.metadata["doc"],
                        tuple(field.metadata.get("choices", ()))))  # fmt: skip
    return keys


Runner = Callable[[Any, Any, Any], Any]  # (Stage, stages.Context, work directory) -> stages.Outcome


@dataclasses.dataclass(frozen=True)
class StageType:
    """A stage type. `technique`: the config dataclass whose documented fields are keys (None:
    none). `training`: None if the stage does not train, else its defaults for the shared
    training keys (TrainConfig's fields; {} keeps TrainConfig's). `selection`: whether it takes
    the layer-selection keys (LayerSelection's fields). `own_keys`: keys of the stage alone.
    `omit`: derived keys the stage does not offer. `technique_kwargs`: technique-config
    arguments the keys do not map to one to one, made from (stage config, Keras verbosity).
    `runner`: the executor, or its "module:function" path (imported when a stage runs, so
    that validating a recipe does not import the executors). `describe`: keys of its log line."""

    name: str
    doc: str
    runner: Runner | str
    technique: type | None = None
    training: Mapping[str, Any] | None = None
    selection: bool = False
    own_keys: tuple[Key, ...] = ()
    omit: tuple[str, ...] = ()
    technique_kwargs: Callable[[Any, int], dict[str, Any]] | None = None
    describe: tuple[str, ...] = ()

    @property
    def trains(self) -> bool:
        """Whether the stage (re)trains or replaces the weights (else it only reads them)."""
        return self.training is not None

    @functools.cached_property
    def keys(self) -> tuple[Key, ...]:
        keys: list[Key] = []
        if self.selection:
            keys += config_keys(LayerSelection, omit=self.omit)
        if self.training is not None:
            keys += config_keys(training.TrainConfig, omit=self.omit, defaults=self.training)
        if self.technique is not None:
            keys += config_keys(self.technique, omit=self.omit)
        keys += self.own_keys
        names = [k.name for k in keys]
        unknown = sorted(set(self.training or {}) - set(names))
        if unknown:
            raise TypeError(f"stage type {self.name!r} sets defaults of keys it does not have: {', '.join(unknown)}")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise TypeError(f"stage type {self.name!r} declares keys twice: {', '.join(duplicated)}")
        return tuple(keys)

    @functools.cached_property
    def config_class(self) -> type:
        """The dataclass a recipe's stage entry is validated into (`recipes.schema`)."""
        class_name = "".join(part.title() for part in self.name.split("_")) + "Stage"
        return dataclasses.make_dataclass(class_name, [k.dataclass_field() for k in self.keys])

    def train_config(self, config: Any, verbose: int = 0) -> training.TrainConfig:
        """How the stage trains: its training keys (the others at TrainConfig's defaults)."""
        names = {f.name for f in dataclasses.fields(training.TrainConfig)}
        values = {k.name: getattr(config, k.name) for k in self.keys if k.name in names}
        return training.TrainConfig(**values, verbose=verbose)

    def technique_config(self, config: Any, verbose: int = 0) -> Any:
        """The technique config the stage's keys describe (ValueError for impossible values)."""
        if self.technique is None:
            return None
        fields = {f.name: f for f in dataclasses.fields(self.technique)}
        values: dict[str, Any] = {}
        for key in self.keys:
            if key.name in fields:
                value = getattr(config, key.name)
                values[key.name] = tuple(value) if isinstance(value, list) else value
        if self.selection and "selection" in fields:
            selection_names = [f.name for f in dataclasses.fields(LayerSelection)]
            values["selection"] = LayerSelection(**{n: getattr(config, n) for n in selection_names if hasattr(config, n)})
        if self.technique_kwargs is not None:
            values.update(self.technique_kwargs(config, verbose))
        return self.technique(**values)

    def run(self, stage: Any, ctx: Any, workdir: Any) -> Any:
        runner = self.runner
        if isinstance(runner, str):
            module, _, function = runner.partition(":")
            runner = getattr(importlib.import_module(module), function)
        return runner(stage, ctx, workdir)


_REGISTRY: dict[str, StageType] = {}


def register(stage_type: StageType) -> StageType:
    if stage_type.name in _REGISTRY:
        raise ValueError(f"stage type {stage_type.name!r} is registered already")
    stage_type.keys  # noqa: B018 (declaration errors surface now, not in a recipe)
    _REGISTRY[stage_type.name] = stage_type
    return stage_type


def unregister(name: str) -> None:
    """Drops a stage type (tests that register a toy one)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> StageType:
    """KeyError for an unknown name (callers word the message)."""
    return _REGISTRY[name]


# --- Keys of stages without a technique config ---------------------------------------------


@dataclasses.dataclass
class TeacherSpec:
    """A registry model (optionally trained first for `epochs`) or a saved Keras model (`path`)."""

    name: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    weights: str | None = None
    path: str | None = None
    epochs: float = 0.0
    learning_rate: float = training.TrainConfig.learning_rate


CALIBRATION_SAMPLES = Key("calibration_samples", int, 200, "representative examples for full-integer calibration "
                          "(targets of a model without QAT)")  # fmt: skip
EVALUATE = Key("evaluate", bool, True, "top-1/top-5 of each file through the interpreter on data.eval_split")
RUNTIME = Key("runtime", str, "auto", "the TFLite interpreter package: auto (the first installed), ai_edge_litert, "
              "tflite_runtime or tensorflow")
IO_TYPES = ("int8", "uint8")
# Data-free compression (data/synthetic.py, docs/optimize.md "Data-free compression").
CALIBRATION = Key("calibration", str, "data", "what full-integer targets calibrate on: `data` (the recipe's "
                  "training data) or `synthetic:bn` (images synthesised from the model's BatchNorm statistics)",
                  ("data", "synthetic:bn"))  # fmt: skip
SYNTHETIC_IMAGES = Key("synthetic_images", int, 0, "distil on this many images synthesised from the teacher's "
                       "BatchNorm statistics, teacher logits only (0: on the recipe's data)")  # fmt: skip


def _channel_prune_kwargs(config: Any, verbose: int) -> dict[str, Any]:
    """The fine-tunes may distil from the unpruned model (`distill`, `distill_alpha`, ...)."""
    options = distill.DistillConfig(alpha=config.distill_alpha, temperature=config.distill_temperature)
    return {"distill": options if config.distill else None}


def _transfer_kwargs(config: Any, verbose: int) -> dict[str, Any]:
    """The two phases' TrainConfigs: the head's, and the fine-tune's when fine_tune_epochs > 0."""
    common = dict(optimizer=config.optimizer, lr_schedule=config.lr_schedule, label_smoothing=config.label_smoothing,
                  verbose=verbose)  # fmt: skip
    head = training.TrainConfig(epochs=config.head_epochs, learning_rate=config.head_learning_rate, **common)
    fine_tune = None
    if config.fine_tune_epochs > 0:
        fine_tune = training.TrainConfig(epochs=config.fine_tune_epochs, learning_rate=config.fine_tune_learning_rate,
                                         **common)  # fmt: skip
    return {"head": head, "fine_tune": fine_tune}


_STAGES = "nlighten_tf.recipes.stages:"

# The order here is the order every message and table lists the stage types in.
register(StageType(
    "train", "trains the model", _STAGES + "run_train", training={},
    describe=("epochs", "learning_rate", "optimizer"),
))
register(StageType(
    "transfer",
    "transfer learning (`optimize.transfer`, docs/recipes.md): the head alone on the frozen backbone, then also "
    "the top `unfreeze_top_blocks` blocks (or the blocks named in `unfreeze_blocks`) at the lower "
    "fine-tuning learning rate; BatchNorms stay frozen in inference mode unless `train_batchnorm`. Blocks are "
    "named from the input: `stem`, `block1` .. `block7` (the stages, named the same in every family; "
    "docs/models.md), `top`; the count and names are checked against the model. Must come before `prune`/`cluster`.",
    _STAGES + "run_transfer", technique=transfer.TransferConfig, training={}, omit=("epochs", "learning_rate"),
    own_keys=(
        Key("head_epochs", float, training.TrainConfig.epochs, "epochs of the head alone on the frozen backbone"),
        Key("head_learning_rate", float, training.TrainConfig.learning_rate, "the head phase's learning rate"),
        Key("fine_tune_epochs", float, 0.0, "epochs of the fine-tuning phase (0: the head only)"),
        Key("fine_tune_learning_rate", float, 1e-4, "the fine-tuning phase's learning rate"),
    ),
    technique_kwargs=_transfer_kwargs,
    describe=("head_epochs", "head_learning_rate", "unfreeze_top_blocks", "fine_tune_epochs", "fine_tune_learning_rate"),
))  # fmt: skip
register(StageType(
    "distill", "knowledge distillation: the current model is the student of `teacher`", _STAGES + "run_distill",
    technique=distill.DistillConfig, training={},
    own_keys=(Key("teacher", TeacherSpec, TeacherSpec(), "{`name` (registry) + `options`, `weights`, `epochs` (0: use "
                  "as is; > 0: train the teacher first on the data), `learning_rate`} or {`path`: a saved Keras model}"),
              SYNTHETIC_IMAGES),
    describe=("epochs", "learning_rate", "alpha", "temperature"),
))  # fmt: skip
register(StageType(
    "channel_prune",
    "structured (filter) pruning to a narrower dense model, faster on every runtime (docs/optimize.md); targets "
    "`keep_madds` or `keep_params` and/or `per_stage` / `per_layer`; `steps` rounds each followed by "
    "`epochs_per_step` of fine-tuning, then `final_epochs`. Needs a trained model; must come before `prune`/`cluster`.",
    _STAGES + "run_channel_prune", technique=channel_prune.ChannelPruneConfig, training={"learning_rate": 5e-4},
    omit=("epochs", "sensitivity_batches"),
    own_keys=(
        Key("distill", bool, False, "fine-tune against the unpruned model (knowledge distillation)"),
        *config_keys(distill.DistillConfig, prefix="distill_"),
    ),
    technique_kwargs=_channel_prune_kwargs,
    describe=("criterion", "keep_madds", "keep_params", "allocation", "steps", "epochs_per_step"),
))  # fmt: skip
register(StageType(
    "prune", "magnitude pruning (TFMOT); depthwise kernels are never pruned", _STAGES + "run_prune",
    technique=prune.PruneConfig, training={"learning_rate": 5e-4}, selection=True,
    describe=("target_sparsity", "policy", "epochs", "learning_rate"),
))  # fmt: skip
register(StageType(
    "cluster", "weight clustering (TFMOT); conv and dense kernels", _STAGES + "run_cluster",
    technique=cluster.ClusterConfig, training={"learning_rate": 1e-4}, selection=True,
    describe=("number_of_clusters", "centroid_init", "epochs", "learning_rate"),
))  # fmt: skip
register(StageType(
    "qat", "quantization-aware training", _STAGES + "run_qat", training={"learning_rate": 1e-4},
    own_keys=(Key("scheme", str, "auto", "auto picks from what the model carries (sparsity, clusters)",
                  quantize.SCHEMES),),
    describe=("scheme", "epochs", "learning_rate"),
))  # fmt: skip
register(StageType(
    "lottery", "the lottery-ticket loop: train, prune, rewind, retrain (`per_layer` is not supported)",
    _STAGES + "run_lottery", technique=lottery.LotteryConfig, training={}, selection=True,
    own_keys=(Key("keep", str, "last", "the round whose model the next stage gets", ("last", "best")),),
    describe=("rounds", "prune_fraction", "epochs"),
))  # fmt: skip
register(StageType(
    "lowrank", "low-rank (SVD) factorisation of dense and 1x1 kernels, then optional fine-tuning",
    _STAGES + "run_lowrank", technique=lowrank.LowRankConfig, training={"epochs": 0.0, "learning_rate": 5e-4},
    selection=True, describe=("energy", "epochs"),
))  # fmt: skip
# The quantization backend and the mixed target's goal (nlighten_tf/export/litert_backend.py).
EXPORT_QUANTIZER_KEYS = (
    Key("quantizer", str, "auto", "who quantizes: the TF converter, LiteRT Quantizer on the float32 file (litert), "
        "or auto (the converter where it writes the target: int16x8, int4_weights and mixed are litert's; QAT models "
        "only the converter's)", litert_backend.QUANTIZERS),
    *config_keys(litert_backend.MixedConfig, prefix="mixed_"),
)  # fmt: skip


def mixed_config(config: Any) -> litert_backend.MixedConfig:
    """The mixed target's goal from a stage config's (or a tool's flags') `mixed_*` keys."""
    fields = [f.name for f in dataclasses.fields(litert_backend.MixedConfig)]
    return litert_backend.MixedConfig(**{name: getattr(config, "mixed_" + name) for name in fields})


register(StageType(
    "autocompress",
    "searches per-group channel counts that fit a `budget` (file size, device latency, MAdds or Edge TPU on-chip "
    "memory; docs/optimize.md, \"Auto-compression\") and, for a size_kb budget on an int8 sparse `target`, "
    "per-kernel sparsity, measured on the exported file or the device, choosing on "
    "the validation split (training batches without one); then fine-tunes for `epochs` (distilled from the "
    "original) and writes the measured `.tflite`, result.json, report.md and choices.png. Size budgets can also "
    "put int4 weights in some ops (`precision: search`, `quantizer: litert`). Needs a trained model; "
    "must come before `prune`/`cluster`",
    _STAGES + "run_autocompress", technique=autocompress.AutocompressConfig,
    training={"epochs": 1.0, "learning_rate": 5e-4},
    describe=("budget", "method", "device", "epochs"),
))  # fmt: skip
register(StageType(
    "export",
    "exports the current model to `.tflite` files. MediaPipe Tasks (Android apps) loads every float32- or "
    "uint8-I/O target, not int8/int8_sparse: the report's \"Android apps\" section names the files "
    "(docs/deployment.md)",
    _STAGES + "run_export",
    own_keys=(
        Key("targets", list[str], ["int8"], "the files to write", tuple(TARGETS)),
        CALIBRATION_SAMPLES,
        Key("io_type", str | None, None, "overrides int8 I/O of full-integer targets, not the `*_float_io` ones "
            "(null: each target's own; the edgetpu target's is uint8)", IO_TYPES),
        EVALUATE, RUNTIME, CALIBRATION, *EXPORT_QUANTIZER_KEYS,
    ),
    describe=("targets",),
))  # fmt: skip
register(StageType(
    "benchmark",
    "benchmarks every file exported so far; ratios against the first, within each device. With a device, "
    "report.md gives every file's accuracy on each runtime path (host XNNPACK, host builtin kernels, the "
    "device) on the same examples and their agreement; emulated latency is a relative figure only "
    "(docs/deployment.md, \"Raspberry Pi\")",
    _STAGES + "run_benchmark",
    own_keys=(
        Key("threads", list[int], [1], "interpreter thread counts, one row each"),
        Key("runs", int, 50, "timed invokes"),
        Key("warmup", int, 5, "untimed invokes first"),
        RUNTIME,
        Key("xnnpack", bool, True, "the XNNPACK delegate on"),
        Key("rss", bool, False, "peak RSS in a fresh process per file (slow: one TensorFlow import each)"),
        Key("devices", list[str], ["host"], "where to run: host and/or an emulated device (`rpi-aarch64`, built by "
            "`make device-rpi`)"),
        Key("device_limit", int, 1000, "evaluation examples measured on a device (emulation is ~100x slower)"),
        Key("device_runs", int, 5, "interleaved invokes timed on a device"),
    ),
    describe=("threads", "runs"),
))  # fmt: skip
register(StageType(
    "edgetpu",
    "exports the dense full-integer `edgetpu` target, writes the offline op-by-op analysis (`compat.txt`, "
    "`compat.json`; docs/edgetpu.md) and runs `edgetpu_compiler` when it is on PATH. Without the compiler the "
    "stage still succeeds and says so; the file counts as an export, so `benchmark` may follow",
    _STAGES + "run_edgetpu",
    own_keys=(
        CALIBRATION_SAMPLES,
        Key("io_type", str, TARGETS["edgetpu"].io_type, "the file's input/output type (Coral's examples feed uint8)",
            IO_TYPES),
        EVALUATE, RUNTIME,
        Key("compile", bool, True, "run edgetpu_compiler when installed (false: the offline analysis only)"),
        Key("num_segments", int | None, None, "split for pipelining over several Edge TPUs"),
        Key("min_runtime_version", int | None, None, "the compiler's --min_runtime_version (null: its default)"),
        Key("timeout", int, compiler.DEFAULT_TIMEOUT, "seconds for the compiler"),
    ),
    describe=("io_type", "compile", "num_segments"),
))  # fmt: skip


# --- Generated documentation and tool flags -----------------------------------------------


def type_name(tp: Any) -> str:
    """An annotation in words, for messages ("expected a number or null") and the key tables."""
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {float: "a number", int: "an integer", bool: "true/false", str: "a string"}.get(tp, str(tp))


def _value_text(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "see meaning"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def markdown() -> str:
    """recipes/README.md's per-stage key tables (`tools/recipe_docs.py` writes and checks them)."""
    lines = []
    for stage_type in _REGISTRY.values():
        doc = stage_type.doc[:1].upper() + stage_type.doc[1:].rstrip(".") + "."
        lines += [f"#### `{stage_type.name}`", "", doc, "",
                  "| key | type | default | meaning |", "|---|---|---|---|"]  # fmt: skip
        for key in stage_type.keys:
            meaning = key.doc.replace("|", "\\|")
            if key.choices:
                meaning += f"; one of {', '.join(f'`{c}`' for c in key.choices)}"
            lines.append(f"| `{key.name}` | {type_name(key.type)} | `{_value_text(key.default)}` | {meaning} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def define_flags(keys: Iterable[Key], names: Sequence[str], flag_values: Any = None) -> None:
    """absl flags for the keys named `names` among `keys` (a stage type's `keys`, or
    `config_keys` of a technique config), with the declared types, defaults, docs and enum
    values: the single-technique tools' flags. Lists are comma-separated flags; {name: value}
    keys repeatable name=value flags."""
    from absl import flags

    # The flags belong to the tool that calls this (its --help lists them), not to this module.
    flags.disclaim_key_flags()
    flag_values = flags.FLAGS if flag_values is None else flag_values
    by_name = {k.name: k for k in keys}
    for name in names:
        key = by_name[name]
        default = key.default
        tp = key.type
        options = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) in (
            typing.Union, types.UnionType) else [tp]  # fmt: skip
        base = options[0]
        doc = key.doc[:1].upper() + key.doc[1:] + "."
        common = {"flag_values": flag_values}
        if key.choices and base is str:
            flags.DEFINE_enum(name, default, list(key.choices), doc, **common)
        elif key.choices and typing.get_origin(base) is list:
            flags.DEFINE_list(name, default, doc + f" Any of: {', '.join(key.choices)}.", **common)
        elif base is bool:
            flags.DEFINE_bool(name, default, doc, **common)
        elif base is int:
            flags.DEFINE_integer(name, default, doc, **common)
        elif base is float:
            flags.DEFINE_float(name, default, doc, **common)
        elif base is str:
            flags.DEFINE_string(name, default, doc, **common)
        elif typing.get_origin(base) is dict:
            flags.DEFINE_multi_string(name, [f"{k}={v}" for k, v in default.items()], doc + " name=value, repeatable.",
                                      **common)  # fmt: skip
        else:
            raise TypeError(f"no flag type for key {name!r} ({type_name(tp)})")


TABLES_BEGIN = "<!-- stage key tables: generated by tools/recipe_docs.py from nlighten_tf/recipes/stage_types.py -->"
TABLES_END = "<!-- end of the generated stage key tables -->"


def with_key_tables(readme: str) -> str:
    """`readme` with the text between TABLES_BEGIN and TABLES_END replaced by `markdown()`."""
    start, end = readme.find(TABLES_BEGIN), readme.find(TABLES_END)
    if start < 0 or end < start:
        raise ValueError(f"no generated-tables markers ({TABLES_BEGIN} ... {TABLES_END})")
    return readme[: start + len(TABLES_BEGIN)] + "\n\n" + markdown() + "\n" + readme[end:]
