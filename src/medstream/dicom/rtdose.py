"""RT Dose grids: one multi-frame object whose frames share one ImagePositionPatient; each frame's
place along the slice normal is in GridFrameOffsetVector (PS3.3 C.8.8.3.2), and DoseGridScaling
turns stored values into Gy.

Without this every frame of a dose grid sat at the same position ("duplicate slice positions").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .values import as_finite_float, as_finite_floats


def dose_frame_position(ds: Any, frame: int, ipp: list[float] | None,
                        iop: list[float] | None) -> list[float] | None:
    """Where frame ``frame`` (0-based) lies, or None when the object has no usable offsets.

    Offsets whose first value is 0 are relative to ImagePositionPatient along the slice normal;
    otherwise they are absolute coordinates along that normal (z for axial grids)."""
    if ipp is None or iop is None or len(ipp) < 3 or len(iop) < 6:
        return None
    if ds.get("PerFrameFunctionalGroupsSequence") is not None:
        return None  # an enhanced object places its frames itself
    offsets = as_finite_floats(ds.get("GridFrameOffsetVector"))
    if not offsets or frame >= len(offsets):
        return None
    origin = np.asarray(ipp[:3], dtype=float)
    normal = np.cross(np.asarray(iop[:3], dtype=float), np.asarray(iop[3:6], dtype=float))
    if not np.isfinite(normal).all() or np.linalg.norm(normal) == 0:
        return None
    normal /= np.linalg.norm(normal)
    if offsets[0] == 0:
        position = origin + offsets[frame] * normal
    else:
        position = origin + (offsets[frame] - float(origin @ normal)) * normal
    return [float(x) for x in position]


def dose_scaling(ds: Any) -> float | None:
    """DoseGridScaling (Gy per stored unit), or None."""
    return as_finite_float(ds.get("DoseGridScaling"))
