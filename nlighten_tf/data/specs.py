"""Dataset specs (``tfds:NAME[:VERSION][/CONFIG]``, ``folder:PATH``, ``fashion_mnist``,
``digits``) and split strings (``train``, ``val``, ``train[:90%]``, ``train[10:20]+test``).

Split slicing follows the TFDS grammar for every source, via TFDS's own parser, so that
``train[:90%]`` means the same examples whether the data comes from TFDS or from memory.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

import tensorflow_datasets as tfds

from nlighten_tf.data.errors import DataError

BUILTIN_SPECS = ("fashion_mnist", "digits", "shapes")
SPEC_FORMS = "tfds:NAME[:VERSION][/CONFIG], folder:PATH, fashion_mnist, digits, shapes, synthetic:bn[:N]"

# Names people use for the validation split; resolved only when the source lacks the name.
_SPLIT_ALIASES = {"val": "validation", "valid": "validation", "validation": "val", "eval": "validation"}

_TFDS_RE = re.compile(
    r"^(?P<name>[a-z0-9_]+)(?::(?P<v1>[0-9*]+\.[0-9*]+\.[0-9*]+))?"
    r"(?:/(?P<config>[\w.\-]+))?(?::(?P<v2>[0-9*]+\.[0-9*]+\.[0-9*]+))?$"
)


@dataclasses.dataclass(frozen=True)
class Spec:
    kind: str  # "tfds", "folder", "fashion_mnist", "digits", "shapes" (detection) or "synthetic"
    text: str  # as the user wrote it
    name: str | None = None  # TFDS builder name
    config: str | None = None
    version: str | None = None
    path: str | None = None  # folder root
    count: int | None = None  # synthetic:bn:N images

    @property
    def tfds_name(self) -> str:
        """The name in TFDS's own `name/config:version` syntax, for `tfds.builder`."""
        name = self.name or ""
        if self.config:
            name += f"/{self.config}"
        if self.version:
            name += f":{self.version}"
        return name


def parse_spec(spec: str) -> Spec:
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"dataset spec {spec!r} is empty; use one of: {SPEC_FORMS}")
    text = spec.strip()
    if text in BUILTIN_SPECS:
        return Spec(kind=text, text=text)
    kind, sep, rest = text.partition(":")
    if sep and kind == "synthetic":
        from nlighten_tf.data import synthetic

        return Spec(kind="synthetic", text=text, count=synthetic.parse(text))
    if sep and kind == "folder":
        if not rest:
            raise DataError("dataset spec 'folder:' has no path; write folder:/path/to/images")
        return Spec(kind="folder", text=text, path=os.path.abspath(os.path.expanduser(rest)))
    if sep and kind == "tfds":
        match = _TFDS_RE.match(rest)
        if not match or (match["v1"] and match["v2"]):
            raise DataError(
                f"dataset spec {text!r} is not tfds:NAME[:VERSION][/CONFIG] "
                "(e.g. tfds:cifar10, tfds:imagenette/320px-v2, tfds:mnist:3.0.1)"
            )
        return Spec(
            kind="tfds", text=text, name=match["name"], config=match["config"], version=match["v1"] or match["v2"]
        )
    raise DataError(f"unknown dataset spec {text!r}; use one of: {SPEC_FORMS}")


@dataclasses.dataclass(frozen=True)
class _SplitSize:
    # The two attributes TFDS's ReadInstruction.to_absolute reads from a SplitInfo.
    num_examples: int

    @property
    def shard_lengths(self) -> list[int]:
        return [self.num_examples]


@dataclasses.dataclass(frozen=True)
class ResolvedSplit:
    text: str  # canonical split string, aliases resolved (what TFDS is given)
    ranges: tuple[tuple[str, int, int], ...]  # (split name, start, stop), concatenated in order

    @property
    def num_examples(self) -> int:
        return sum(stop - start for _, start, stop in self.ranges)


def is_training_split(split: str) -> bool:
    """Every part of ``split`` (``train``, ``train[:80%]``, ``train[..]+train[..]``) is training data."""
    return all(part.partition("[")[0] == "train" for part in split.split("+"))


def resolve_split(split: str, sizes: Mapping[str, int], where: str) -> ResolvedSplit:
    """Parses `split` against the available `sizes` ({split name: number of examples}).

    `where` names the data set in error messages.
    """
    available = ", ".join(sizes) or "none"
    if not isinstance(split, str) or not split.strip():
        raise DataError(f"split {split!r} is empty; {where} has splits: {available}")
    parts = []
    for part in split.replace(" ", "").split("+"):
        name, bracket, selector = part.partition("[")
        if name not in sizes and _SPLIT_ALIASES.get(name) in sizes:
            name = _SPLIT_ALIASES[name]
        if name not in sizes and name != "all":
            raise DataError(
                f"split {name!r} does not exist in {where}; available splits: {available}; "
                "fix: use one of those, or slice one for a held-out part, e.g. train[90%:]"
            )
        parts.append(name + bracket + selector)
    text = "+".join(parts)
    try:
        instruction = tfds.core.ReadInstruction.from_spec(text)
        absolute = instruction.to_absolute({k: _SplitSize(n) for k, n in sizes.items()})
    except (ValueError, NotImplementedError) as error:
        raise DataError(
            f"split {split!r} cannot be read from {where} ({error}); "
            "fix: use TFDS slicing syntax within the split sizes, e.g. train[:90%], train[90%:], train[:500]"
        ) from None
    ranges = []
    for a in absolute:
        start = a.from_ or 0
        stop = sizes[a.splitname] if a.to is None else a.to
        ranges.append((a.splitname, start, max(start, stop)))  # train[80:20] selects nothing
    ranges = tuple(ranges)
    resolved = ResolvedSplit(text=text, ranges=ranges)
    if resolved.num_examples <= 0:
        raise DataError(f"split {split!r} of {where} selects no examples; widen the slice")
    return resolved
