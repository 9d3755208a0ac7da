"""What tells the stacks of a split series apart, for reports (``medstream info``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.metadata import metadata
from ..volumes.geometry import SPLIT_KEYS, VOLUME_KEYS, SliceInfo
from .folder import SeriesInfo


def _facts(image_id: str) -> dict[str, Any]:
    s = SliceInfo.from_modules(image_id, metadata.get("all", image_id) or {})
    facts: dict[str, Any] = {"size": f"{s.rows}x{s.columns}"}
    if s.orientation:
        facts["orientation"] = tuple(float(x) for x in np.round(s.orientation, 3))
    facts.update(zip(VOLUME_KEYS, s.volume_key))
    facts.update(zip(SPLIT_KEYS, s.split_keys))
    return facts


def stack_keys(series: list[SeriesInfo]) -> dict[str, str]:
    """``{key: "echo_number=2, echo_time=9.5"}`` for each part of a split series: the values
    (of its first image) that differ between the parts of one SeriesInstanceUID."""
    groups: dict[str, list[SeriesInfo]] = {}
    for s in series:
        if "#" in s.key and s.image_ids:
            groups.setdefault(s.key.split("#")[0], []).append(s)
    out: dict[str, str] = {}
    for parts in groups.values():
        facts = {p.key: _facts(p.image_ids[0]) for p in parts}
        names = list(next(iter(facts.values())))
        differ = [n for n in names if len({repr(f.get(n)) for f in facts.values()}) > 1]
        for key, f in facts.items():
            out[key] = ", ".join(f"{n}={f.get(n)}" for n in differ) or "same keys (positions repeat)"
    return out
