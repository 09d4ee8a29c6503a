"""Recipe YAML -> typed, validated `Recipe` (Model-Garden style config dataclasses).

Everything is checked before anything runs: unknown keys, wrong types, impossible values
(through the techniques' own config constructors, so each rule lives in one place) and the
order of the stages. Every error is a `RecipeError` whose message names the file, the stage
(numbered from 1, as the run directories `01-train`, `02-prune` ...) and the key:

    recipes/x.yaml: stage 3 (prune): key 'target_sparsty': unknown key; valid keys: ...
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nlighten_tf.errors import NlightenError
from nlighten_tf.recipes import stage_types

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RecipeError(NlightenError, ValueError):
    """A recipe that cannot run; the message says where (file, stage, key) and why, on one line."""


# --- YAML ---------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `5e-4` / `1e3` as floats. PyYAML follows YAML 1.1, where a
    float needs a dot ("5.0e-4"), so `learning_rate: 5e-4` would otherwise be a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


class _DuplicateKey(Exception):
    pass


def _checked_mapping(loader: _Loader, node: yaml.MappingNode) -> Any:
    """PyYAML keeps the last of two equal keys; a recipe that sets `epochs` twice is a mistake
    whose silent outcome nobody can guess, so it is refused (the YAML spec forbids it too).
    Keys a `<<:` merge brings in may be overridden, as YAML intends."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            if key in seen:
                raise _DuplicateKey(
                    f"key {key!r} appears twice in one mapping (lines {seen[key]} and {key_node.start_mark.line + 1}); "
                    "keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # an unhashable key: SafeLoader's own error follows
            pass
    # SafeConstructor's two-step construction (yield, then fill) keeps anchors to mappings working.
    yield from yaml.SafeLoader.construct_yaml_map(loader, node)


_Loader.add_constructor("tag:yaml.org,2002:map", _checked_mapping)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise RecipeError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    except _DuplicateKey as error:
        raise RecipeError(f"{where}: {error}") from None


def dump_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=None, width=110)


# --- Config dataclasses -------------------------------------------------------------------


@dataclasses.dataclass
class ModelSpec:
    name: str = "efficientnet_lite0"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # registry build options
    weights: str | None = None  # "imagenet", a path to an .h5 weights file, or None (random init)


@dataclasses.dataclass
class DataSpec:
    spec: str = "fashion_mnist"
    image_size: int = 32
    batch_size: int = 64
    train_split: str = "train"
    eval_split: str = "test"
    augment: Any = None  # nlighten_tf.data augment: None, "basic", "flip,crop", {"mixup": {...}} ...
    train_limit: int | None = None
    eval_limit: int | None = None
    # Held-out data for every choice and stage figure a run makes (Keras accuracy per stage,
    # lottery keep: best), so that eval_split (the test split) is only reported, never tuned on:
    # "auto" = the source's own "validation" split if it has one, else the last 10% of a plain
    # train_split; a fraction in (0, 0.5] (whole percent) carves that much off the end of a
    # plain train_split; any other string is a split used as given; "none" = no validation
    # split (stage figures then come from eval_split, and the run says so).
    validation: float | str = "auto"
    data_dir: str | None = None
    cache: bool = True  # keep decoded images in memory (small data sets)


@dataclasses.dataclass
class Stage:
    index: int  # from 1
    type: str
    config: Any  # an instance of its stage type's config_class (nlighten_tf.recipes.stage_types)

    @property
    def label(self) -> str:
        return f"stage {self.index} ({self.type})"

    @property
    def dirname(self) -> str:
        return f"{self.index:02d}-{self.type}"

    @property
    def declaration(self) -> stage_types.StageType:
        return stage_types.get(self.type)

    def technique(self, verbose: int = 0) -> Any:
        """The technique config its keys describe (PruneConfig ...; None for export and the like)."""
        return self.declaration.technique_config(self.config, verbose)

    def train_config(self, verbose: int = 0) -> Any:
        """How it trains (optimize.training.TrainConfig)."""
        return self.declaration.train_config(self.config, verbose)


@dataclasses.dataclass
class Recipe:
    name: str
    model: ModelSpec
    data: DataSpec
    stages: list[Stage]
    seed: int = 0
    description: str = ""
    source: str = "<recipe>"  # the file, for messages

    def as_dict(self) -> dict[str, Any]:
        """The resolved recipe (every default filled in): what `resolved_recipe.yaml` holds and
        what `load` reads back identically."""
        return {
            "name": self.name, "description": self.description, "seed": self.seed,
            "model": dataclasses.asdict(self.model), "data": dataclasses.asdict(self.data),
            "stages": [{s.type: dataclasses.asdict(s.config)} for s in self.stages],
        }  # fmt: skip


TOP_LEVEL_KEYS = ("name", "description", "seed", "model", "data", "stages")
# Stage i runs with seed + i, and numpy takes seeds below 2**32.
MAX_SEED = 2**31 - 1


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


# --- Typed construction -------------------------------------------------------------------


class _TypeMismatch(Exception):
    pass


class _OutOfRange(Exception):
    """A value of the right type that no recipe can mean (NaN, infinity, 10**30 runs)."""


# Integers past this are mistakes (and overflow TensorFlow's and numpy's int32 seeds/counters).
MAX_INT = 2**31 - 1
# Epoch counts past this are typos (1e308 epochs overflowed the step arithmetic); 10,000 epochs
# of the smallest data set here already take days.
MAX_EPOCHS = 10_000.0


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """`value` checked against annotation `tp` (ints accepted for floats); raises _TypeMismatch."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, where)
            except _TypeMismatch:
                continue
        raise _TypeMismatch
    if tp is type(None):
        if value is None:
            return None
        raise _TypeMismatch
    if origin is list:
        if not isinstance(value, list | tuple):
            raise _TypeMismatch
        return [_coerce(v, typing.get_args(tp)[0], where) for v in value]
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise _TypeMismatch
        return {k: _coerce(v, typing.get_args(tp)[1], where) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _TypeMismatch
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _TypeMismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_INT:
                raise _OutOfRange(f"{value} is out of range (at most {MAX_INT:,} in magnitude)")
            return value
        raise _TypeMismatch
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _OutOfRange(f"must be a finite number, got {value}")
            return float(value)
        raise _TypeMismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _TypeMismatch
    raise TypeError(f"unsupported annotation {tp!r}")  # a schema bug, not a user error


def _coerce_key(value: Any, hint: Any, label: str) -> Any:
    """`value` as the annotation `hint` says; RecipeError starting with `label` (file, section,
    key) when its type or range is wrong."""
    try:
        return _coerce(value, hint, label)
    except _TypeMismatch:
        raise RecipeError(f"{label}: expected {stage_types.type_name(hint)}, got {_describe(value)}") from None
    except _OutOfRange as error:
        raise RecipeError(f"{label}: {error}") from None


def _build(cls: type, raw: Mapping[str, Any] | None, where: str) -> Any:
    """An instance of dataclass `cls` from a mapping; unknown keys and wrong types -> RecipeError."""
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{where}: expected a mapping of keys, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    names = field_names(cls)
    values = {}
    for key, value in raw.items():
        if key not in names:
            valid = ", ".join(names) if names else "none (this stage takes no parameters)"
            raise RecipeError(f"{where}: key {key!r}: unknown key; valid keys: {valid}")
        values[key] = _coerce_key(value, hints[key], f"{where}: key {key!r}")
        if _is_epochs(key) and isinstance(values[key], int | float) and values[key] > MAX_EPOCHS:
            raise RecipeError(f"{where}: key {key!r}: at most {MAX_EPOCHS:,.0f} epochs, got {values[key]:g}")
    return cls(**values)


def _is_epochs(key: str) -> bool:
    """Keys counted in epochs: epochs, head_epochs, epochs_per_step, begin_epoch, end_epoch ..."""
    return key == "epochs" or key.endswith(("_epochs", "_epoch")) or key.startswith("epochs_")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}"


# --- Value checks through the techniques' own configs ------------------------------------


def _checked(where: str, make):
    """Runs a technique config constructor; its ValueError becomes a located RecipeError."""
    try:
        return make()
    except RecipeError:
        raise
    except (ValueError, TypeError) as error:
        raise RecipeError(f"{where}: {' '.join(str(error).split())}") from None


def _check_transfer(where: str, stage: Any) -> None:
    """The transfer stage's keys, each error naming its key (TransferConfig's own messages
    cannot: they speak of phases)."""
    for key in ("head_epochs", "head_learning_rate", "fine_tune_learning_rate"):
        if getattr(stage, key) <= 0:
            raise RecipeError(f"{where}: key {key!r}: must be > 0, got {getattr(stage, key)}")
    if stage.fine_tune_epochs < 0:
        raise RecipeError(f"{where}: key 'fine_tune_epochs': must be >= 0 (0 = the head only), got {stage.fine_tune_epochs}")
    if stage.unfreeze_top_blocks < 0:
        raise RecipeError(f"{where}: key 'unfreeze_top_blocks': must be >= 0, got {stage.unfreeze_top_blocks}")
    if stage.unfreeze_top_blocks and stage.unfreeze_blocks:
        raise RecipeError(f"{where}: key 'unfreeze_blocks': give unfreeze_top_blocks or unfreeze_blocks, not both")
    unfreezes = bool(stage.unfreeze_top_blocks or stage.unfreeze_blocks)
    if stage.fine_tune_epochs > 0 and not unfreezes:
        raise RecipeError(
            f"{where}: key 'fine_tune_epochs': the fine-tuning phase needs blocks to train: set unfreeze_top_blocks "
            "(e.g. 2) or unfreeze_blocks"
        )
    if unfreezes and stage.fine_tune_epochs == 0:
        key = "unfreeze_top_blocks" if stage.unfreeze_top_blocks else "unfreeze_blocks"
        raise RecipeError(f"{where}: key {key!r}: unfrozen blocks train in the fine-tuning phase: set fine_tune_epochs > 0")


@functools.lru_cache(maxsize=16)
def _model_blocks(name: str, options_json: str) -> tuple[str, ...]:
    """The blocks of a registry model (optimize.transfer.blocks), from a weightless 32x32 build:
    a few seconds for Lite0, hence cached per process."""
    from nlighten_tf.models import registry
    from nlighten_tf.optimize import transfer

    options = {k: v for k, v in json.loads(options_json).items() if k not in ("include_top", "features_only")}
    return tuple(transfer.blocks(registry.build(name, input_shape=(32, 32, 3), **options)))


def _check_transfer_blocks(recipe: Recipe) -> None:
    """unfreeze_top_blocks / unfreeze_blocks against the recipe model's real blocks (only for
    recipes that unfreeze blocks: it builds the model once)."""
    wanted = [s for s in recipe.stages if s.type == "transfer" and (s.config.unfreeze_top_blocks or s.config.unfreeze_blocks)]
    if not wanted:
        return
    from nlighten_tf.optimize import transfer

    options_json = json.dumps(recipe.model.options, sort_keys=True, default=str)
    available = _checked(f"{recipe.source}: model", lambda: _model_blocks(recipe.model.name, options_json))
    for stage in wanted:
        config = stage.config
        key = "unfreeze_top_blocks" if config.unfreeze_top_blocks else "unfreeze_blocks"
        where = f"{recipe.source}: {stage.label}: key {key!r}"
        _checked(where, lambda config=config: transfer.choose_blocks(
            available, config.unfreeze_top_blocks, config.unfreeze_blocks, recipe.model.name))  # fmt: skip


def _check_model(where: str, spec: ModelSpec) -> None:
    from nlighten_tf.models import registry

    model_info = _checked(where, lambda: registry.info(spec.name))
    derived = {"input_shape": "data.image_size", "num_classes": "the data's classes", "weights": "weights"}
    for key in spec.options:
        if key in derived:
            raise RecipeError(f"{where}: key 'options.{key}': set by {derived[key]}, not in options")
        if key not in model_info.options:
            raise RecipeError(
                f"{where}: key 'options.{key}': unknown option for model {spec.name!r}; valid options: "
                + ", ".join(o for o in model_info.options if o not in derived)
            )
    check_model_options(spec.name, spec.options, where, prefix="options.")
    include_top = spec.options.get("include_top", True)
    if not include_top and spec.options.get("features_only"):
        raise RecipeError(
            f"{where}: key 'options.include_top': false puts a new classification head on the backbone "
            "(optimize.transfer); it cannot be combined with features_only: true"
        )


# Ranges of the registry's numeric build options: (lowest, highest, whether lowest is allowed).
# Types come from the builders' own annotations.
MODEL_OPTION_RANGES: dict[str, tuple[float, float, bool]] = {
    "width_coefficient": (0.0, 16.0, False), "depth_coefficient": (0.0, 16.0, False),
    "width_multiplier": (0.0, 16.0, False), "head_filters": (1, 65_536, True), "dropout_rate": (0.0, 1.0, True),
    "drop_connect_rate": (0.0, 1.0, True), "fpn_num_filters": (1, 65_536, True), "fpn_cell_repeats": (1, 64, True),
    "box_class_repeats": (1, 64, True), "output_stride": (1, 64, True), "stride": (1, 64, True),
}  # fmt: skip


def check_model_options(name: str, options: Mapping[str, Any], where: str, prefix: str = "") -> None:
    """Each registry build option's type (from the builder's annotations) and range, so that
    `width_coefficient: abc` or `-1` is refused up front instead of failing in the build after
    the data has loaded. `prefix` names the options in messages ("options." in a recipe).
    Unknown option names are left to the caller (RecipeError with the valid names there)."""
    from nlighten_tf.models import registry

    model_info = _checked(where, lambda: registry.info(name))
    try:
        hints = typing.get_type_hints(model_info.builder)
    except Exception:  # an annotation that does not resolve: types are then checked by the build
        hints = {}
    for key, value in options.items():
        if key not in hints:
            continue
        try:
            _coerce_key(value, hints[key], f"{where}: key '{prefix}{key}'")
        except TypeError:  # an annotation _coerce does not model (tuples, Mapping): the build checks it
            continue
        if key in MODEL_OPTION_RANGES and isinstance(value, int | float) and not isinstance(value, bool):
            low, high, inclusive = MODEL_OPTION_RANGES[key]
            if key in ("dropout_rate", "drop_connect_rate"):
                ok = 0.0 <= value < 1.0
                wanted = "from 0 to below 1"
            else:
                ok = (value >= low if inclusive else value > low) and value <= high
                wanted = f"{'>=' if inclusive else '>'} {low:g} and <= {high:g}"
            if not ok:
                raise RecipeError(f"{where}: key '{prefix}{key}': must be {wanted}, got {value!r}")


def _check_stage(source: str, stage: Stage, recipe_data: DataSpec) -> None:
    where = f"{source}: {stage.label}"
    config = stage.config
    declaration = stage.declaration
    if stage.type == "lowrank":
        if config.epochs < 0:
            raise RecipeError(f"{where}: key 'epochs': must be >= 0 (0 = no fine-tuning), got {config.epochs}")
        if config.epochs > 0:
            _checked(where, stage.train_config)
    elif declaration.trains:
        _checked(where, stage.train_config)
    if stage.type == "transfer":
        _check_transfer(where, config)
    _checked(where, stage.technique)
    if stage.type == "qat":
        from nlighten_tf.optimize.quantize import SCHEMES

        if config.scheme not in SCHEMES:
            raise RecipeError(f"{where}: key 'scheme': unknown QAT scheme {config.scheme!r}; valid: {', '.join(SCHEMES)}")
    if stage.type == "distill":
        teacher = config.teacher
        if (teacher.name is None) == (teacher.path is None):
            raise RecipeError(f"{where}: key 'teacher': give exactly one of teacher.name (a registry model) or teacher.path")
        if teacher.name is not None:
            _check_model(f"{where}: key 'teacher'", ModelSpec(teacher.name, teacher.options, teacher.weights))
        if teacher.path is not None and not Path(teacher.path).exists():
            raise RecipeError(f"{where}: key 'teacher.path': no such file {teacher.path}")
        if teacher.epochs < 0 or teacher.learning_rate <= 0:
            raise RecipeError(f"{where}: key 'teacher': epochs must be >= 0 and learning_rate > 0")
        from nlighten_tf.data import parse_augment

        augment = parse_augment(recipe_data.augment)
        if augment is not None and augment.mixes_labels:
            raise RecipeError(
                f"{where}: distillation needs integer labels, but data.augment mixes labels ({augment.describe()}); "
                "drop mixup/cutmix"
            )
    if stage.type == "export":
        from nlighten_tf.export.targets import TARGETS

        if not config.targets:
            raise RecipeError(f"{where}: key 'targets': give at least one target; valid: {', '.join(TARGETS)}")
        for target in config.targets:
            if target not in TARGETS:
                raise RecipeError(f"{where}: key 'targets': unknown export target {target!r}; valid: {', '.join(TARGETS)}")
        if len(set(config.targets)) != len(config.targets):
            raise RecipeError(f"{where}: key 'targets': a target is listed twice")
        if config.io_type not in (None, "int8", "uint8"):
            raise RecipeError(f"{where}: key 'io_type': must be int8, uint8 or null, got {config.io_type!r}")
        _check_quantizer(config, where)
    if stage.type in ("export", "edgetpu") and config.calibration_samples < 1:
        raise RecipeError(f"{where}: key 'calibration_samples': must be >= 1, got {config.calibration_samples}")
    if stage.type == "edgetpu":
        if config.io_type not in ("int8", "uint8"):
            raise RecipeError(f"{where}: key 'io_type': the Edge TPU takes int8 or uint8, got {config.io_type!r}")
        if config.num_segments is not None and config.num_segments < 1:
            raise RecipeError(f"{where}: key 'num_segments': must be >= 1 or null, got {config.num_segments}")
        if config.timeout < 1:
            raise RecipeError(f"{where}: key 'timeout': seconds, must be >= 1, got {config.timeout}")
    if stage.type == "benchmark":
        if not config.threads or any(t < 1 for t in config.threads):
            raise RecipeError(f"{where}: key 'threads': positive integers, got {config.threads}")
        if config.runs < 1 or config.warmup < 0:
            raise RecipeError(f"{where}: key 'runs'/'warmup': need runs >= 1 and warmup >= 0")
        from nlighten_tf.bench import devices as devices_lib

        try:
            devices_lib.check_names(config.devices)
        except ValueError as error:
            raise RecipeError(f"{where}: key 'devices': {error}") from None
        if config.device_limit < 1 or config.device_runs < 1:
            raise RecipeError(f"{where}: key 'device_limit'/'device_runs': must be >= 1")

    for key in declaration.own_keys:
        value = getattr(config, key.name)
        if key.choices and isinstance(value, str) and value not in key.choices:
            raise RecipeError(f"{where}: {key.name} must be {' or '.join(map(repr, key.choices))}, got {value!r}")


def check_order(recipe: Recipe) -> None:
    """Rules on the sequence of stages, so a run cannot silently undo its own work."""
    source = recipe.source
    seen: list[Stage] = []
    trained = recipe.model.weights is not None
    for stage in recipe.stages:
        where = f"{source}: {stage.label}"
        kinds = {s.type for s in seen}
        if "qat" in kinds and stage.declaration.trains:
            raise RecipeError(
                f"{where}: comes after qat: only export and benchmark stages may follow quantization-aware "
                "training (retraining would drop the quantizers); move it before the qat stage"
            )
        if kinds & {"prune", "cluster"} and stage.type in ("train", "transfer", "distill", "channel_prune", "autocompress", "lottery",
                                                          "lowrank"):
            done = " and ".join(k for k in ("prune", "cluster") if k in kinds)
            raise RecipeError(
                f"{where}: comes after {done}: it would regrow pruned weights / break clusters; "
                f"put it before the {done} stage (fine-tuning belongs in the {done} stage's epochs)"
            )
        if stage.type == "prune" and "cluster" in kinds:
            raise RecipeError(f"{where}: pruning after clustering breaks the clusters; prune first, then cluster")
        if stage.type == "qat":
            scheme = stage.config.scheme
            sparse = bool(kinds & {"prune", "lottery"})
            clustered = "cluster" in kinds
            allowed = {"auto"}
            if sparse and clustered:
                allowed.add("pcqat")
            elif sparse:
                allowed |= {"pqat", "pcqat"}
            elif clustered:
                allowed |= {"cqat", "pcqat"}
            else:
                allowed = {"auto", "default", "pqat", "cqat", "pcqat"}
            if scheme not in allowed:
                what = "pruning and clustering" if sparse and clustered else "pruning" if sparse else "clustering"
                raise RecipeError(
                    f"{where}: key 'scheme': {scheme!r} after {what} would undo it; use "
                    + " or ".join(sorted(allowed))
                )
        if stage.type == "channel_prune" and not trained:
            raise RecipeError(
                f"{where}: channel_prune ranks the filters of a trained model: add a training stage before it, "
                "or start from trained weights (model.weights)"
            )
        if stage.type in ("export", "edgetpu") and not trained:
            raise RecipeError(
                f"{where}: {stage.type} needs a model: add a training stage (train, distill, ...) before it, "
                "or start from trained weights (model.weights)"
            )
        if stage.type == "benchmark" and not kinds & {"export", "edgetpu"}:
            raise RecipeError(
                f"{where}: benchmark needs an earlier export or edgetpu stage (it measures the .tflite files)"
            )
        if stage.declaration.trains:
            trained = True
        seen.append(stage)


# --- Entry points -------------------------------------------------------------------------


def from_dict(raw: Any, source: str = "<recipe>") -> Recipe:
    """Validates a recipe given as plain data (as parsed from YAML, overrides applied)."""
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{source}: a recipe is a mapping with keys {', '.join(TOP_LEVEL_KEYS)}; got {_describe(raw)}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise RecipeError(f"{source}: key {key!r}: unknown key; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RecipeError(
            f"{source}: key 'name': required, letters/digits/._- only (it names the run directory), got {_describe(name)}"
        )
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 or seed > MAX_SEED:
        raise RecipeError(
            f"{source}: key 'seed': expected an integer from 0 to {MAX_SEED:,}, got {_describe(seed)}"
        )
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise RecipeError(f"{source}: key 'description': expected a string, got {_describe(description)}")
    if "model" not in raw:
        raise RecipeError(f"{source}: key 'model': required (model: {{name: ..., options: {{...}}, weights: ...}})")
    model = _build(ModelSpec, raw["model"], f"{source}: model")
    _check_model(f"{source}: model", model)
    data = _build(DataSpec, raw.get("data"), f"{source}: data")
    _check_data(f"{source}: data", data)

    raw_stages = raw.get("stages")
    if not isinstance(raw_stages, Sequence) or isinstance(raw_stages, str) or not raw_stages:
        raise RecipeError(f"{source}: key 'stages': required, a non-empty list like [{{train: {{epochs: 1}}}}]")
    stages = []
    for index, entry in enumerate(raw_stages, start=1):
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise RecipeError(
                f"{source}: stage {index}: each stage is a mapping with one key, the stage type "
                f"({', '.join(stage_types.names())}), e.g. '- prune: {{target_sparsity: 0.8}}'; got {_describe(entry)}"
            )
        ((kind, params),) = entry.items()
        if kind not in stage_types.names():
            raise RecipeError(
                f"{source}: stage {index}: unknown stage type {kind!r}; valid: {', '.join(stage_types.names())}"
            )
        config_class = stage_types.get(kind).config_class
        stage = Stage(index, kind, _build(config_class, params, f"{source}: stage {index} ({kind})"))
        _check_stage(source, stage, data)
        stages.append(stage)
    recipe = Recipe(name=name, model=model, data=data, stages=stages, seed=seed, description=description, source=source)
    check_order(recipe)
    _check_transfer_blocks(recipe)
    check_task(recipe)
    return recipe


def check_task(recipe: Recipe) -> None:
    """The model's task (`nlighten_tf.tasks`, from its registry entry) must have recipe support
    and accept the recipe's data, stages and export targets."""
    from nlighten_tf import tasks

    try:
        task = tasks.for_model(recipe.model.name)
    except tasks.TaskError as error:
        raise RecipeError(f"{recipe.source}: model: key 'name': {error}") from None
    try:
        task.check_recipe(recipe)
    except tasks.TaskError as error:  # the message names the recipe and the key
        raise RecipeError(str(error)) from None


def _check_data(where: str, spec: DataSpec) -> None:
    from nlighten_tf import data

    _checked(where, lambda: data.parse_spec(spec.spec))
    try:
        data.preprocessing.check_image_size(spec.image_size)
    except ValueError as error:
        raise RecipeError(f"{where}: key 'image_size': {error}") from None
    if spec.batch_size < 1:
        raise RecipeError(f"{where}: key 'batch_size': must be >= 1, got {spec.batch_size}")
    for key in ("train_limit", "eval_limit"):
        value = getattr(spec, key)
        if value is not None and value < 1:
            raise RecipeError(f"{where}: key {key!r}: must be >= 1 or null (all), got {value}")
    _check_validation(where, spec)
    if spec.augment is not None and spec.augment is not False:
        if not isinstance(spec.augment, str | Mapping):
            raise RecipeError(f"{where}: key 'augment': expected a string, a mapping or null, got {_describe(spec.augment)}")
        try:
            data.parse_augment(spec.augment)
        except ValueError as error:
            raise RecipeError(f"{where}: key 'augment': {error}") from None
    elif spec.augment is False:
        spec.augment = None


def is_plain_split(split: str) -> bool:
    """A split name without slicing or concatenation (``train``, not ``train[:85%]``)."""
    return not any(c in split for c in "[]+")


def _check_validation(where: str, spec: DataSpec) -> None:
    value = spec.validation
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RecipeError(f"{where}: key 'validation': expected auto, none, a fraction or a split, got {_describe(value)}")
    if isinstance(value, str):
        if not value.strip():
            raise RecipeError(f"{where}: key 'validation': empty split; use auto, none, a fraction or a split name")
        return
    percent = 100 * value
    if not 0 < value <= 0.5 or abs(percent - round(percent)) > 1e-9:
        raise RecipeError(
            f"{where}: key 'validation': a fraction must be a whole percent in (0, 0.5], got {value!r}"
        )
    if not is_plain_split(spec.train_split):
        raise RecipeError(
            f"{where}: key 'validation': a fraction is carved off a plain train_split, not "
            f"{spec.train_split!r}: give the validation split itself, e.g. validation: 'train[75%:85%]' "
            f"with train_split: 'train[:75%]'"
        )


def _check_quantizer(config: Any, where: str) -> None:
    """The export stage's `quantizer` can write every listed target; the `mixed_*` keys make a
    valid goal (nlighten_tf/export/litert_backend.py)."""
    from nlighten_tf.export import litert_backend
    from nlighten_tf.export.targets import get_target
    from nlighten_tf.recipes import stage_types

    try:
        for target in config.targets:
            litert_backend.resolve(config.quantizer, get_target(target))
        stage_types.mixed_config(config)
    except litert_backend.QuantizerError as error:
        raise RecipeError(f"{where}: {error}") from None
