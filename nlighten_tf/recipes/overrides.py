"""`--override key=value`: change one value of a recipe without editing the file.

Paths are dotted: ``data.spec=digits``, ``model.options.width_coefficient=0.5``,
``stages.2.prune.target_sparsity=0.5`` (stage number from 1, as the run directories; the
type is optional: ``stages.2.target_sparsity=0.5``) or ``stages.prune.epochs=1`` (by stage
type, when the recipe has exactly one stage of that type). The value is parsed as YAML:
``0.5`` is a number, ``[fp32, int8]`` a list, ``null`` None, ``true`` a boolean.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from nlighten_tf.recipes import schema, stage_types
from nlighten_tf.recipes.schema import RecipeError

# Mappings whose keys are free-form (checked later against the model registry or data layer).
_FREE_FORM = {("model", "options"), ("data", "augment")}


def parse(item: str, source: str) -> tuple[list[str], Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"{source}: --override {item!r}: expected key=value, e.g. data.spec=digits")
    path = [part.strip() for part in key.strip().split(".")]
    if any(not part for part in path):
        raise RecipeError(f"{source}: --override {item!r}: empty part in the dotted key {key!r}")
    return path, schema.parse_yaml(value, f"{source}: --override {item!r}")


def apply(raw: Any, items: Sequence[str], source: str) -> Any:
    """A copy of the parsed recipe with every override applied, in order."""
    if not items:
        return raw
    if not isinstance(raw, Mapping):
        raise RecipeError(f"{source}: a recipe is a mapping; cannot apply --override")
    result = copy.deepcopy(dict(raw))
    for item in items:
        path, value = parse(item, source)
        _set(result, path, value, f"{source}: --override {item!r}")
    return result


def _set(recipe: dict[str, Any], path: list[str], value: Any, where: str) -> None:
    head = path[0]
    if head not in schema.TOP_LEVEL_KEYS:
        raise RecipeError(f"{where}: unknown key {head!r}; valid: {', '.join(schema.TOP_LEVEL_KEYS)}")
    if head == "stages":
        _set_stage(recipe, path[1:], value, where)
        return
    if len(path) == 1:
        recipe[head] = value
        return
    if head not in ("model", "data"):
        raise RecipeError(f"{where}: {head!r} is a single value, not a mapping")
    section_class = schema.ModelSpec if head == "model" else schema.DataSpec
    section = recipe.setdefault(head, {})
    if section is None:
        section = recipe[head] = {}
    _set_in(section, path[1:], value, section_class, head, where)


def _set_in(section: dict[str, Any], path: list[str], value: Any, cls: type, prefix: str, where: str) -> None:
    key = path[0]
    names = schema.field_names(cls)
    if key not in names:
        raise RecipeError(f"{where}: unknown key {prefix}.{key}; valid keys of {prefix}: {', '.join(names)}")
    if len(path) == 1:
        section[key] = value
        return
    nested = section.get(key)
    if nested is None:
        nested = section[key] = {}
    if not isinstance(nested, dict):
        raise RecipeError(f"{where}: {prefix}.{key} is not a mapping")
    if (prefix, key) in _FREE_FORM or prefix.endswith(".teacher") and key == "options":
        # Registry options / augment components: any key; checked when the recipe is validated.
        target = nested
        for part in path[1:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise RecipeError(f"{where}: {prefix}.{key}.{part} is not a mapping")
        target[path[-1]] = value
        return
    if key == "teacher":
        _set_in(nested, path[1:], value, stage_types.TeacherSpec, f"{prefix}.teacher", where)
        return
    raise RecipeError(f"{where}: {prefix}.{key} is a single value, not a mapping")


def _set_stage(recipe: dict[str, Any], path: list[str], value: Any, where: str) -> None:
    stages = recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{where}: the recipe has no stages list")
    if not path:
        raise RecipeError(f"{where}: replacing the whole stages list is not supported; override one stage's key")
    kinds = [_stage_type(entry) for entry in stages]
    selector = path[0]
    if selector.isdigit():
        number = int(selector)
        if not 1 <= number <= len(stages):
            raise RecipeError(f"{where}: no stage {number}: the recipe has stages 1..{len(stages)} ({', '.join(kinds)})")
        rest = path[1:]
        if rest and rest[0] in stage_types.names() and rest[0] not in schema.field_names(_class(kinds[number - 1])):
            if rest[0] != kinds[number - 1]:
                raise RecipeError(f"{where}: stage {number} is {kinds[number - 1]!r}, not {rest[0]!r}")
            rest = rest[1:]
    elif selector in stage_types.names():
        matches = [i for i, kind in enumerate(kinds, start=1) if kind == selector]
        if not matches:
            raise RecipeError(f"{where}: the recipe has no {selector!r} stage; its stages: {', '.join(kinds)}")
        if len(matches) > 1:
            raise RecipeError(
                f"{where}: the recipe has {len(matches)} {selector!r} stages ({', '.join(map(str, matches))}); "
                f"say which by number, e.g. stages.{matches[0]}.{'.'.join(path[1:]) or 'key'}=..."
            )
        number, rest = matches[0], path[1:]
    else:
        raise RecipeError(
            f"{where}: after 'stages.' give a stage number (1..{len(stages)}) or a stage type ({', '.join(kinds)})"
        )
    if not rest:
        raise RecipeError(f"{where}: name the key to set, e.g. stages.{number}.{kinds[number - 1]}.epochs=1")
    kind = kinds[number - 1]
    entry = stages[number - 1]
    if isinstance(entry, str):
        entry = stages[number - 1] = {entry: {}}
    params = entry[kind]
    if params is None:
        params = entry[kind] = {}
    label = f"stages.{number}.{kind}"
    _set_in(params, rest, value, _class(kind), label, where)


def _stage_type(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, Mapping) and len(entry) == 1:
        return next(iter(entry))
    return "?"


def _class(kind: str) -> type:
    try:
        return stage_types.get(kind).config_class
    except KeyError:
        raise RecipeError(f"unknown stage type {kind!r}") from None


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["width_coefficient=0.5", ...]`` -> ``{"width_coefficient": 0.5}`` (YAML values), for
    tools that take model options as repeatable key=value flags."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"{flag} {item!r}: expected key=value, e.g. width_coefficient=0.5")
        options[key.strip()] = schema.parse_yaml(value, f"{flag} {item!r}")
    return options


def model_from_flags(keras_model: str, model: str, image_size: int, option_items: Sequence[str]) -> tuple[Any, int, dict[str, Any]]:
    """What a tool's model flags name: ``(model, its input size, {})`` for ``--keras_model``
    (loaded; ValueError naming the flag and file if it is not a model), ``(None, --image_size,
    the checked --model_option options)`` for a zoo ``--model``, which the tool builds once the
    data's class count is known."""
    if keras_model:
        from nlighten_tf.keras_io import load_keras_flag

        loaded = load_keras_flag(keras_model)
        return loaded, int(loaded.inputs[0].shape[1]), {}
    options = parse_key_values(option_items, "--model_option")
    schema.check_model_options(model, options, f"--model={model} --model_option")
    return None, image_size, options
