"""How the layers of every zoo family are named, and the one mapping from MobileNetV2's old names.

Every family built by `block_table.build_from_block_table` names its layers `stem_*`, then
`block{stage}{letter}_*` (stage from 1, the letter the block within its stage: `block2a`,
`block2b`, ...), then `top_*`. A stage key (`block5`) or block key (`block5c`) therefore selects
the analogous layers in every family.

MobileNetV2 used to number its 17 blocks `block0` .. `block16` in graph order.
`LEGACY_MOBILENET_V2_BLOCKS` maps those to the current names; where a user names a layer, block
or stage of a MobileNetV2 (channel pruning's per_stage / per_layer) an old name is translated
(`resolve_legacy_name`); a layer-name regex matching only old names is refused with the new name
(`legacy_regex_error`), since a regex cannot be translated.
"""

from __future__ import annotations

import re
from collections.abc import Collection

# A layer of a block-table model: 'block5c_expand_conv' is in block 'block5c' of stage 'block5'.
_LAYER_NAME = re.compile(r"^(?P<block>(?P<stage>block\d+)[a-z]+)_")


def block_name(stage_index: int, repeat_index: int) -> str:
    """'block1a' for the first block of the first stage (both indices from 0)."""
    return f"block{stage_index + 1}{chr(ord('a') + repeat_index)}"


def block_of(layer_name: str) -> str | None:
    """'block5c_expand_conv' -> 'block5c'; None for stem, top, head and other layers."""
    match = _LAYER_NAME.match(layer_name)
    return match.group("block") if match else None


def stage_of(layer_name: str) -> str | None:
    """'block5c_expand_conv' -> 'block5'; None for stem, top, head and other layers."""
    match = _LAYER_NAME.match(layer_name)
    return match.group("stage") if match else None


# The old graph-order numbering -> the current names; MobileNetV2's stages have 1, 2, 3, 4, 3, 3
# and 1 blocks (the paper's Table 2) and no depth multiplier, so the 17 names are fixed.
LEGACY_MOBILENET_V2_BLOCKS: dict[str, str] = {
    f"block{index}": block_name(stage, repeat)
    for index, (stage, repeat) in enumerate(
        (stage, repeat) for stage, repeats in enumerate((1, 2, 3, 4, 3, 3, 1)) for repeat in range(repeats)
    )
}
_OLD_NAME_OF = {new: old for old, new in LEGACY_MOBILENET_V2_BLOCKS.items()}
_LEGACY_PREFIX = re.compile(r"^block\d+(?=_|$)")


def from_legacy_name(name: str) -> str | None:
    """The current name of an old MobileNetV2 block or layer name ('block12' -> 'block5c',
    'block12_expand_conv' -> 'block5c_expand_conv'); None when `name` is not one."""
    match = _LEGACY_PREFIX.match(name)
    if not match or match.group(0) not in LEGACY_MOBILENET_V2_BLOCKS:
        return None
    return LEGACY_MOBILENET_V2_BLOCKS[match.group(0)] + name[match.end() :]


def _legacy_layer_name(name: str) -> str | None:
    block = block_of(name)
    return _OLD_NAME_OF[block] + name[len(block) :] if block in _OLD_NAME_OF else None


def _is_mobilenet_v2(layer_names: Collection[str]) -> bool:
    """Whether the layers are a current MobileNetV2's: exactly its 17 blocks."""
    return {block_of(name) for name in layer_names} - {None} == set(_OLD_NAME_OF)


def resolve_legacy_name(name: str, layer_names: Collection[str]) -> str:
    """`name` (a layer, block or stage name a user gave) in the current numbering: translated
    when the model is a MobileNetV2 and `name` is an old name it no longer has ('block12' ->
    'block5c', 'block1_project_conv' -> 'block2a_project_conv'), otherwise unchanged. A name the
    model has keeps its meaning: 'block1' .. 'block7' are stages now, as in every family."""
    if name in layer_names or not _is_mobilenet_v2(layer_names):
        return name
    if name in {block_of(n) for n in layer_names} | {stage_of(n) for n in layer_names}:
        return name
    return from_legacy_name(name) or name


def legacy_regex_error(pattern: str, layer_names: Collection[str]) -> str | None:
    """Why `pattern` (a layer-name regex) is refused on a MobileNetV2: it matches none of its
    layers but some of their old names (e.g. '^block12_'); None when it is fine."""
    if not _is_mobilenet_v2(layer_names) or any(re.search(pattern, name) for name in layer_names):
        return None
    old = [n for n in map(_legacy_layer_name, layer_names) if n is not None and re.search(pattern, n)]
    if not old:
        return None
    example = _LEGACY_PREFIX.match(old[0]).group(0)
    return (
        f"layer-name regex {pattern!r} matches only MobileNetV2's old block names (block0 .. block16, e.g. "
        f"{old[0]!r}); its blocks are now named per stage as in every family ({example} is now "
        f"{LEGACY_MOBILENET_V2_BLOCKS[example]}): rewrite the regex"
    )
