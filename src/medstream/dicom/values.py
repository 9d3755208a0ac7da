"""Header values as plain Python numbers and strings, whatever read them.

pydicom gives DSfloat/IS/MultiValue, the light readers give text or lists; the module builders
and the functional-group keys convert through these, so both paths give the same modules.
"""

from __future__ import annotations

import math
from typing import Any


def as_float(v: Any) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def as_floats(v: Any) -> list[float] | None:
    if v is None or v == "":
        return None
    try:
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return [float(x) for x in v]
        return [float(v)]
    except (TypeError, ValueError):
        return None


def as_finite_floats(v: Any) -> list[float] | None:
    """Geometry values (positions, cosines, spacings): None when any is NaN or infinite, so a
    broken header reads as a missing value (a warning or a typed error), never as a NaN affine."""
    values = as_floats(v)
    return values if values is not None and all(math.isfinite(x) for x in values) else None


def as_finite_float(v: Any) -> float | None:
    value = as_float(v)
    return value if value is not None and math.isfinite(value) else None


def as_int(v: Any) -> int | None:
    try:
        return None if v is None or v == "" else int(v)
    except (TypeError, ValueError):
        try:
            return int(float(v))  # "12.0" in an IS
        except (TypeError, ValueError):
            return None


def as_strs(v: Any) -> list[str] | None:
    if v is None or v == "":
        return None
    return [v.strip()] if isinstance(v, str) else [str(x).strip() for x in v]


def as_str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


class KeywordAttributes:
    """``ds.Rows``-style attribute access over ``get(keyword)``, for the light readers' views."""

    def get(self, keyword: str, default: Any = None) -> Any:
        raise NotImplementedError

    def __getattr__(self, keyword: str) -> Any:
        if keyword.startswith("_"):
            raise AttributeError(keyword)
        value = self.get(keyword)
        if value is None:
            raise AttributeError(keyword)
        return value
