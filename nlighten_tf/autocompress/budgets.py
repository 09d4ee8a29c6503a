"""Budgets for `autocompress`: what a compressed model must fit, written ``KIND:VALUE``.

- ``size_kb``: KiB (1024 bytes) of the exported target file (e.g. ``size_kb:600``);
- ``latency_ms``: median milliseconds per inference on the named device (``latency_ms:1.2``);
- ``madds``: multiply-adds counted from the Keras graph (``madds:2e6``);
- ``edgetpu_sram_mib``: MiB of parameters the Edge TPU must cache on chip, from the offline
  analysis of the `edgetpu` file (``nlighten_tf.edgetpu.compat``; the chip has 8 MiB).

Every kind also takes a fraction of the original model's cost, measured the same way:
``madds:0.5x``, ``latency_ms:0.5x``. On an emulated device (``rpi-aarch64``) absolute
milliseconds mean nothing (the emulator is ~100x slower than the board): there a latency
budget must be relative, and the ratio is measured against the original file in the same
interleaved run.
"""

from __future__ import annotations

import dataclasses
import math

from nlighten_tf.errors import NlightenError

KINDS: dict[str, str] = {
    "size_kb": "KiB of the exported file",
    "latency_ms": "median ms per inference on the device",
    "madds": "multiply-adds of the graph",
    "edgetpu_sram_mib": "MiB of parameters cached in the Edge TPU's on-chip memory",
}
UNITS = {"size_kb": 1024.0, "latency_ms": 1.0, "madds": 1.0, "edgetpu_sram_mib": 1024.0 * 1024.0}
EMULATED_DEVICES = ("rpi-aarch64",)
EXAMPLE = "madds:0.5x, latency_ms:0.5x, size_kb:600, edgetpu_sram_mib:4"


class BudgetError(NlightenError, ValueError):
    """A budget string that cannot be met or does not parse."""


@dataclasses.dataclass(frozen=True)
class Budget:
    kind: str
    value: float
    relative: bool = False  # `value` is a fraction of the original model's cost

    def __str__(self) -> str:
        return f"{self.kind}:{self.value:g}{'x' if self.relative else ''}"

    def target(self, original: float) -> float:
        """The budget in the kind's unit (ms, KiB, MAdds, MiB) given the original's cost."""
        return self.value * original if self.relative else self.value

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "value": self.value, "relative": self.relative, "text": str(self)}


def parse_budget(text: str, device: str = "host") -> Budget:
    """``KIND:VALUE`` or ``KIND:FRACTIONx`` -> Budget; BudgetError (one line) otherwise."""
    hint = f"expected KIND:VALUE with KIND one of {', '.join(KINDS)} (e.g. {EXAMPLE})"
    if not isinstance(text, str) or text.count(":") != 1:
        raise BudgetError(f"budget {text!r}: {hint}")
    kind, raw = (part.strip() for part in text.split(":"))
    if kind not in KINDS:
        raise BudgetError(f"budget {text!r}: unknown kind {kind!r}; {hint}")
    relative = raw.lower().endswith("x")
    number = raw[:-1] if relative else raw
    try:
        value = float(number)
    except ValueError:
        raise BudgetError(f"budget {text!r}: {raw!r} is not a number or a fraction like 0.5x; {hint}") from None
    if not math.isfinite(value) or value <= 0:
        raise BudgetError(f"budget {text!r}: the value must be a positive number, got {raw!r}")
    if relative and value >= 1.0:
        raise BudgetError(f"budget {text!r}: a relative budget must be below 1x (the original already fits {raw})")
    if kind == "latency_ms" and device in EMULATED_DEVICES and not relative:
        raise BudgetError(
            f"budget {text!r} on {device}: emulated milliseconds are not the board's; give a fraction of the "
            "original's latency, e.g. latency_ms:0.5x"
        )
    return Budget(kind, value, relative)
