"""Retrieve stages: which slices a progressive load fetches first, how, and what it shows until
the rest comes (Cornerstone3D's progressive loading, for Python).

A plan is a list of :class:`Stage`. Each stage names its slices (every ``decimate``-th from
``offset``, or explicit ``positions``), what it retrieves (``"final"`` frames, or the
``"leading"`` bytes of an HTJ2K frame, decoded lossy and completed later with one more range),
its request priority, and how many neighbours each of its slices fills (copies itself into)
until their own data comes. Every slice has a :class:`SliceStatus`; a load ends with all of them
final, bit-identical to a load without stages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

Retrieval = Literal["final", "leading", "rendered"]


class SliceStatus(IntEnum):
    """What a slice of a volume holds now (higher is better)."""

    NONE = 0  # nothing yet (zeros)
    FILLED = 1  # a copy of a nearby slice
    LOSSY = 2  # its own frame, from part of its codestream
    FINAL = 3  # its own frame, whole


@dataclass(frozen=True)
class Stage:
    """One step of a progressive load.

    ``positions``: slice indices (negative from the end) or fractions of the stack (floats in
    [0, 1]); otherwise every ``decimate``-th slice from ``offset``. ``retrieve="leading"`` reads
    the first ``leading_bytes`` of each frame where the frame is HTJ2K and its source can read a
    range; ``retrieve="rendered"`` asks a DICOMweb server for the frame rendered as a JPEG
    (``shrink`` times smaller per side) through a window spanning the modality's range, and maps
    it back to values (lossy). Where neither applies the stage loads the whole frame (final).
    ``fill``: neighbours on each side that show this stage's slice until their own data comes."""

    name: str
    decimate: int = 1
    offset: int = 0
    positions: tuple[int | float, ...] | None = None
    retrieve: Retrieval = "final"
    leading_bytes: int = 65536
    priority: float = 0
    fill: int = 0
    shrink: int = 1

    def __post_init__(self) -> None:
        if self.decimate < 1 or not 0 <= self.offset:
            raise ValueError(f"stage {self.name!r}: decimate must be >= 1 and offset >= 0")
        if self.retrieve not in ("final", "leading", "rendered"):
            raise ValueError(f"stage {self.name!r}: retrieve must be 'final', 'leading' or "
                             "'rendered'")
        if self.leading_bytes < 256 or self.fill < 0 or self.shrink < 1:
            raise ValueError(f"stage {self.name!r}: leading_bytes must be >= 256, fill >= 0, "
                             "shrink >= 1")

    def slices(self, n: int) -> list[int]:
        """The slice indices this stage covers in a stack of ``n``, in retrieval order."""
        if self.positions is None:
            return list(range(self.offset, n, self.decimate))
        out: list[int] = []
        for p in self.positions:
            if isinstance(p, float):
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"stage {self.name!r}: fraction {p} is not in [0, 1]")
                k = round(p * (n - 1))
            else:
                k = int(p) + (n if int(p) < 0 else 0)
            if 0 <= k < n and k not in out:
                out.append(k)
        return out


#: The default plan: the middle and both ends; every 4th slice from the first bytes of its
#: frame (HTJ2K) filling two neighbours each side, so every slice shows something early; the
#: slices between from their first bytes; then everything final.
PROGRESSIVE: tuple[Stage, ...] = (
    Stage("initial", positions=(0.5, 0, -1), fill=2),
    Stage("quarter", decimate=4, offset=0, retrieve="leading", fill=2, priority=1),
    Stage("half", decimate=4, offset=2, retrieve="leading", fill=1, priority=2),
    Stage("final", priority=3),
)


def plan_of(stages: str | Iterable[Stage | Mapping[str, Any]]) -> tuple[Stage, ...]:
    """A plan from ``"progressive"`` or a list of stages (``Stage`` or keyword mappings)."""
    if isinstance(stages, str):
        if stages != "progressive":
            raise ValueError(f"stages={stages!r}: use 'progressive' or a list of Stage")
        return PROGRESSIVE
    plan = tuple(s if isinstance(s, Stage) else Stage(**dict(s)) for s in stages)
    if not plan:
        raise ValueError("stages: an empty plan loads nothing")
    return plan


def uncovered(plan: Sequence[Stage], n: int) -> list[int]:
    """Slices no stage of ``plan`` takes final: the runner adds a last stage for them."""
    final = {k for s in plan if s.retrieve == "final" for k in s.slices(n)}
    return [k for k in range(n) if k not in final]
