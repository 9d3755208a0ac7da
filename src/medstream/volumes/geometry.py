"""Volume geometry from per-slice metadata, never silently wrong.

Slices are ordered by ImagePositionPatient projected on the slice normal (never by InstanceNumber
or file name). Mixed series, size or orientation, duplicate positions, gaps and irregular spacing,
and gantry tilt are detected and handled by an explicit policy; the defaults raise or keep the
true (sheared) geometry rather than produce a plausible but wrong affine.

Index convention: the volume array is ``(slices, rows, columns)`` = ``(k, j, i)``; the affine maps
``(i, j, k, 1)`` (column index, row index, slice index) to LPS millimetres, as DICOM and ITK do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import GeometryError

SpacingPolicy = Literal["raise", "keep", "resample"]
TiltPolicy = Literal["shear", "raise"]

ORIENTATION_TOL = 1e-3  # direction cosines
DUPLICATE_TOL_MM = 1e-2
TILT_TOL_DEG = 0.05
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def median(values: np.ndarray, axis: int | None = None) -> Any:
    """``np.median`` of finite numbers, the same values bit for bit (the middle one, or the mean
    of the two middle ones), without its masked-array check: that imports numpy.ma, 10 ms of
    every command-line run."""
    a = np.sort(np.asarray(values), axis=axis)
    if axis is None:
        a, axis = a.ravel(), 0
    mid = a.shape[axis] // 2
    if a.shape[axis] % 2:
        return np.take(a, mid, axis=axis)
    return (np.take(a, mid - 1, axis=axis) + np.take(a, mid, axis=axis)) / 2


class GeometryWarning(UserWarning):
    """Geometry was built under a tolerant policy (kept irregular spacing, sheared tilt)."""


@dataclass(frozen=True)
class SliceInfo:
    """What geometry needs to know about one image (from its metadata modules)."""

    image_id: str
    rows: int
    columns: int
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None  # row cosines then column cosines
    pixel_spacing: tuple[float, float] | None = None  # (between rows, between columns)
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    samples_per_pixel: int = 1
    # Must be equal within one volume: stack, frame type, echo, diffusion, temporal position...
    volume_key: tuple[Any, ...] = ()
    # May tell stacked acquisitions at one position apart (repeats, cardiac phases).
    split_keys: tuple[Any, ...] = ()
    # Acquisition order of the volume this image belongs to (numbers, compared as numbers).
    order_key: tuple[Any, ...] = ()
    instance_number: int | None = None
    frame_number: int = 1
    vendor_warning: str | None = None  # a vendor layout medstream does not correct (dicom/ge.py)

    @classmethod
    def from_modules(cls, image_id: str, modules: dict[str, Any]) -> SliceInfo:
        plane = modules.get("imagePlaneModule") or {}
        pixel = modules.get("imagePixelModule") or {}
        series = modules.get("generalSeriesModule") or {}
        general = modules.get("generalImageModule") or {}
        ipp, iop, ps = (plane.get(k) for k in ("image_position_patient",
                                               "image_orientation_patient", "pixel_spacing"))
        rows = plane.get("rows") or pixel.get("rows")
        cols = plane.get("columns") or pixel.get("columns")
        return cls(
            image_id=image_id,
            rows=int(rows or 0),
            columns=int(cols or 0),
            position=tuple(float(x) for x in ipp[:3]) if ipp and len(ipp) >= 3 else None,
            orientation=tuple(float(x) for x in iop[:6]) if iop and len(iop) >= 6 else None,
            pixel_spacing=(float(ps[0]), float(ps[1 if len(ps) > 1 else 0])) if ps else None,
            series_uid=series.get("series_instance_uid"),
            frame_of_reference_uid=plane.get("frame_of_reference_uid"),
            slice_thickness=plane.get("slice_thickness"),
            spacing_between_slices=plane.get("spacing_between_slices"),
            samples_per_pixel=int(pixel.get("samples_per_pixel") or 1),
            volume_key=tuple(_hashable(general.get(k)) for k in VOLUME_KEYS),
            split_keys=tuple(_hashable(general.get(k)) for k in SPLIT_KEYS),
            order_key=tuple(_number(general.get(k)) for k in ORDER_KEYS),
            instance_number=general.get("instance_number"),
            frame_number=int((modules.get("multiframeModule") or {}).get("frame_number") or 1),
            vendor_warning=general.get("vendor_warning"),
        )

    @property
    def rank(self) -> tuple[Any, ...]:
        """Acquisition order: temporal keys, then InstanceNumber, then the frame as a number."""
        return (*self.order_key, _number(self.instance_number), self.frame_number)


# generalImageModule keys (see dicom/enhanced.py) that identify one acquired volume.
VOLUME_KEYS = ("stack_id", "dimension_key", "frame_type", "complex_image_component",
               "echo_number", "echo_time", "diffusion_b_value", "diffusion_direction",
               "temporal_position_index", "temporal_position")
SPLIT_KEYS = ("acquisition_number", "trigger_time", "image_type")
ORDER_KEYS = ("temporal_position_index", "temporal_position", "acquisition_number",
              "trigger_time", "acquisition_time")


def _hashable(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 3)
    if isinstance(v, list):
        return tuple(v)
    return v


def _number(v: Any) -> tuple[int, float]:
    """Sort key that puts numbers in numeric order and missing values last."""
    try:
        return (0, float(v)) if v is not None else (1, 0.0)
    except (TypeError, ValueError):
        return (1, 0.0)


def _describe_key(key: tuple[Any, ...]) -> str:
    parts = [f"{name}={value}" for name, value in zip(VOLUME_KEYS, key) if value is not None]
    return ", ".join(parts) or "(no keys)"


@dataclass
class VolumeGeometry:
    image_ids: list[str] = field(repr=False)  # in slice order
    shape: tuple[int, int, int]  # (slices, rows, columns)
    origin: np.ndarray  # LPS position of voxel (0, 0, 0)
    spacing: tuple[float, float, float]  # (x: between columns, y: between rows, z: between slices)
    direction: np.ndarray = field(repr=False)  # 3x3, columns: row direction, column direction, slice stacking direction
    affine: np.ndarray  # 4x4, (i, j, k, 1) -> LPS mm
    positions: np.ndarray = field(repr=False)  # (slices, 3) ImagePositionPatient of each slice, as acquired
    offsets: np.ndarray = field(repr=False)  # (slices,) position along the slice normal, ascending
    normal: np.ndarray = field(repr=False)
    tilt_degrees: float = 0.0
    regular: bool = True
    warnings: list[str] = field(default_factory=list)
    frame_of_reference_uid: str | None = None
    position_known: bool = True  # False: no ImagePositionPatient, the origin is made up

    @property
    def affine_ras(self) -> np.ndarray:
        """The affine NIfTI wants: RAS millimetres from (i, j, k)."""
        return LPS_TO_RAS @ self.affine

    @property
    def sheared(self) -> bool:
        return self.tilt_degrees > TILT_TOL_DEG

    def summary(self) -> dict[str, Any]:
        return {
            "shape": list(self.shape),
            "spacing": [round(s, 6) for s in self.spacing],
            "origin": [round(float(x), 6) for x in self.origin],
            "direction": np.round(self.direction, 6).tolist(),
            "tilt_degrees": round(self.tilt_degrees, 4),
            "regular": self.regular,
            "warnings": list(self.warnings),
        }


def _ids(slices: Sequence[SliceInfo], limit: int = 4) -> str:
    names = [s.image_id for s in slices[:limit]]
    more = len(slices) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _minority(groups: dict[Any, list[SliceInfo]]) -> list[SliceInfo]:
    largest = max(groups.values(), key=len)
    return [s for g in groups.values() if g is not largest for s in g]


def check_consistent(slices: Sequence[SliceInfo]) -> None:
    """One series, one frame of reference, one size, one orientation; else name the odd ones."""
    for attr, what in (("series_uid", "series"), ("frame_of_reference_uid", "frames of reference")):
        groups: dict[Any, list[SliceInfo]] = {}
        for s in slices:
            groups.setdefault(getattr(s, attr), []).append(s)
        if len(groups) > 1:
            detail = "; ".join(f"{k or '(none)'}: {len(g)} images ({_ids(g, 2)})"
                               for k, g in groups.items())
            raise GeometryError(f"{len(groups)} {what} mixed in one volume: {detail}",
                                [s.image_id for s in _minority(groups)])
    keys: dict[Any, list[SliceInfo]] = {}
    for s in slices:
        keys.setdefault(s.volume_key, []).append(s)
    if len(keys) > 1:
        detail = "; ".join(f"{_describe_key(k)}: {len(g)} images ({_ids(g, 2)})"
                           for k, g in keys.items())
        raise GeometryError(
            f"frames of {len(keys)} different acquisitions in one volume ({detail}); "
            "split them with medstream.split_series() or scan_folder()",
            [s.image_id for s in _minority(keys)])
    sizes: dict[Any, list[SliceInfo]] = {}
    for s in slices:
        sizes.setdefault((s.rows, s.columns, s.samples_per_pixel), []).append(s)
    if len(sizes) > 1:
        detail = "; ".join(f"{r}x{c}x{n}: {len(g)} images ({_ids(g, 2)})"
                           for (r, c, n), g in sizes.items())
        raise GeometryError(f"images of different sizes in one volume: {detail}",
                            [s.image_id for s in _minority(sizes)])
    if any(s.rows <= 0 or s.columns <= 0 for s in slices):
        bad = [s for s in slices if s.rows <= 0 or s.columns <= 0]
        raise GeometryError(f"images without rows/columns: {_ids(bad)}", [s.image_id for s in bad])
    with_iop = [s for s in slices if s.orientation is not None]
    if with_iop:
        ref = np.array(with_iop[0].orientation)
        odd = [s for s in with_iop if np.max(np.abs(np.array(s.orientation) - ref)) > ORIENTATION_TOL]
        if odd:
            raise GeometryError(
                f"mixed orientation: {_ids(odd)} differ from {with_iop[0].image_id} "
                f"({list(np.round(ref, 4))} vs {list(np.round(odd[0].orientation, 4))})",
                [s.image_id for s in odd],
            )


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def compute_geometry(
    slices: Sequence[SliceInfo],
    *,
    spacing: SpacingPolicy = "raise",
    tilt: TiltPolicy = "shear",
    warn: bool = True,
) -> VolumeGeometry:
    """Order ``slices`` and derive origin, spacing, direction and affine.

    ``spacing``: what to do with missing slices or irregular spacing — ``"raise"`` (default) a
    ``GeometryError`` with the numbers, ``"keep"`` the acquired positions (the affine uses the
    median spacing and ``positions`` keeps the truth), or ``"resample"`` (the volume is resampled
    onto a regular grid after loading). ``tilt``: a stack direction not perpendicular to the
    slices (gantry tilt) gives a sheared affine (default) or, with ``"raise"``, an error.
    """
    if not slices:
        raise GeometryError("no images to build a volume from")
    slices = list(slices)
    check_consistent(slices)
    first = slices[0]
    iop = np.array(first.orientation if first.orientation else (1, 0, 0, 0, 1, 0), dtype=float)
    row_dir, col_dir = _unit(iop[:3]), _unit(iop[3:])
    normal = _unit(np.cross(row_dir, col_dir))
    dy, dx = first.pixel_spacing or (1.0, 1.0)
    notes: list[str] = []
    if first.pixel_spacing is None:
        notes.append("no PixelSpacing: 1 mm assumed in-plane")
    if first.orientation is None:
        notes.append("no ImageOrientationPatient: axial assumed")
    notes.extend(sorted({s.vendor_warning for s in slices if s.vendor_warning}))

    missing = [s for s in slices if s.position is None]
    if missing and len(slices) > 1:
        raise GeometryError(
            f"{len(missing)} of {len(slices)} images have no ImagePositionPatient, so slices "
            f"cannot be ordered: {_ids(missing)}", [s.image_id for s in missing])
    if len(slices) == 1:
        pos = np.array(first.position or (0.0, 0.0, 0.0))
        if first.position is None:
            notes.append("no ImagePositionPatient: the position in space is unknown (the "
                         "affine's origin is not real; NIfTI output is written with "
                         "sform/qform code 0)")
        dz = float(first.spacing_between_slices or first.slice_thickness or 1.0)
        if warn:
            for note in notes:
                warnings.warn(note, GeometryWarning, stacklevel=3)
        geometry = _finish([first.image_id], (1, first.rows, first.columns), pos[None, :],
                           np.array([float(pos @ normal)]), row_dir, col_dir, normal,
                           normal * dz, (dx, dy, dz), 0.0, True, notes, first)
        geometry.position_known = first.position is not None
        return geometry

    positions = np.array([s.position for s in slices], dtype=float)
    offsets = positions @ normal
    order = np.argsort(offsets, kind="stable")
    slices = [slices[i] for i in order]
    positions, offsets = positions[order], offsets[order]
    gaps = np.diff(offsets)

    dup = np.flatnonzero(gaps < DUPLICATE_TOL_MM)
    if dup.size:
        pairs = [(slices[i].image_id, slices[i + 1].image_id) for i in dup[:3]]
        n_pos = len(slices) - dup.size
        raise GeometryError(
            f"duplicate slice positions: {dup.size + 1 if dup.size == 1 else dup.size} images share "
            f"a position with another ({len(slices)} images at {n_pos} positions; e.g. "
            + "; ".join(f"{a} and {b}" for a, b in pairs)
            + "). This looks like several acquisitions (echoes, phases) in one list; split them "
            "with medstream.split_series() or scan_folder(), which separates them.",
            sorted({i for p in pairs for i in p}),
        )

    step = float(median(gaps))
    tol = max(DUPLICATE_TOL_MM, 0.02 * step)
    # Stack vector: the median step between neighbours (keeps in-plane shift under tilt).
    vecs = np.diff(positions, axis=0) / gaps[:, None] * step
    stack = median(vecs, axis=0)
    predicted = positions[0] + np.outer((offsets - offsets[0]) / step, stack)
    residual = float(np.max(np.linalg.norm(positions - predicted, axis=1)))
    irregular = bool(np.any(np.abs(gaps - step) > tol)) or residual > max(tol, 0.05)
    regular = not irregular
    if irregular:
        odd = np.flatnonzero(np.abs(gaps - step) > tol)
        detail = ", ".join(
            f"{gaps[i]:.4g} mm between slices {i} and {i + 1} ({slices[i + 1].image_id})"
            for i in odd[:4]
        ) + (f" and {odd.size - 4} more" if odd.size > 4 else "")
        expected = int(round((offsets[-1] - offsets[0]) / step)) + 1
        msg = (
            f"irregular slice spacing: typical {step:.4g} mm, but {detail or 'positions off the stack line by %.3g mm' % residual}"
            + (f"; {expected - len(slices)} slice(s) appear to be missing" if expected > len(slices) else "")
        )
        if spacing == "raise":
            raise GeometryError(
                msg + ". Pass spacing='resample' to resample onto a regular grid (spacing='keep' "
                "keeps the acquired positions for inspection, but such a volume cannot be saved "
                "as one NIfTI).",
                [slices[i + 1].image_id for i in odd] or [s.image_id for s in slices],
            )
        notes.append(msg + (" (positions kept)" if spacing == "keep" else " (resampled)"))

    if regular:  # first-to-last over n-1: exact for a regular series (no rounding of steps)
        stack = (positions[-1] - positions[0]) / (len(slices) - 1)
    cosang = abs(float(_unit(stack) @ normal))
    tilt_deg = math.degrees(math.acos(min(1.0, cosang)))
    if tilt_deg > TILT_TOL_DEG:
        msg = (f"gantry tilt: slices are stacked {tilt_deg:.2f} degrees off their normal; "
               "the affine is sheared to keep every voxel in place")
        if tilt == "raise":
            raise GeometryError(msg.split(";")[0] + " (pass tilt='shear' for a sheared affine)",
                                [s.image_id for s in slices])
        notes.append(msg)
    dz = float(np.linalg.norm(stack))
    if warn:
        for note in notes:
            warnings.warn(note, GeometryWarning, stacklevel=3)
    return _finish([s.image_id for s in slices], (len(slices), first.rows, first.columns),
                   positions, offsets, row_dir, col_dir, normal, stack, (dx, dy, dz), tilt_deg,
                   regular, notes, first)


def _finish(ids: list[str], shape: tuple[int, int, int], positions: np.ndarray,
            offsets: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, normal: np.ndarray,
            stack: np.ndarray, spacing: tuple[float, float, float], tilt_deg: float,
            regular: bool, notes: list[str], first: SliceInfo) -> VolumeGeometry:
    dx, dy, dz = spacing
    affine = np.eye(4)
    affine[:3, 0] = row_dir * dx
    affine[:3, 1] = col_dir * dy
    affine[:3, 2] = stack
    affine[:3, 3] = positions[0]
    direction = np.stack([row_dir, col_dir, _unit(stack)], axis=1)
    if not (np.isfinite(affine).all() and np.isfinite(direction).all()
            and np.isfinite(positions).all()):
        raise GeometryError(f"the header's geometry gives a non-finite affine (spacing "
                            f"{spacing}, origin {positions[0].tolist()}): {_ids([first])}",
                            [first.image_id])
    return VolumeGeometry(
        image_ids=ids, shape=shape, origin=positions[0].copy(), spacing=(dx, dy, dz),
        direction=direction, affine=affine, positions=positions, offsets=offsets,
        normal=normal, tilt_degrees=tilt_deg, regular=regular, warnings=notes,
        frame_of_reference_uid=first.frame_of_reference_uid,
    )


def regular_grid(geometry: VolumeGeometry) -> VolumeGeometry:
    """The regular geometry an irregular one is resampled onto (same extent, median step)."""
    offsets = geometry.offsets
    step = float(median(np.diff(offsets)))
    n = int(round((offsets[-1] - offsets[0]) / step)) + 1
    stack = geometry.affine[:3, 2]
    new_offsets = offsets[0] + step * np.arange(n)
    positions = geometry.origin + np.outer(np.arange(n), stack)
    return VolumeGeometry(
        image_ids=[], shape=(n, geometry.shape[1], geometry.shape[2]), origin=geometry.origin,
        spacing=geometry.spacing, direction=geometry.direction, affine=geometry.affine.copy(),
        positions=positions, offsets=new_offsets, normal=geometry.normal,
        tilt_degrees=geometry.tilt_degrees, regular=True, warnings=list(geometry.warnings),
        frame_of_reference_uid=geometry.frame_of_reference_uid,
    )


def resample_slices(data: np.ndarray, offsets: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Linear interpolation along the slice axis from ``offsets`` to ``target`` (both ascending)."""
    out = np.empty((len(target),) + data.shape[1:], dtype=data.dtype)
    hi = np.clip(np.searchsorted(offsets, target, side="left"), 1, len(offsets) - 1)
    lo = hi - 1
    w = np.clip((target - offsets[lo]) / (offsets[hi] - offsets[lo]), 0.0, 1.0)
    for k in range(len(target)):
        a, b = data[lo[k]], data[hi[k]]
        if w[k] == 0:
            out[k] = a
        elif w[k] == 1:
            out[k] = b
        else:
            mixed = a.astype(np.float32) * (1 - w[k]) + b.astype(np.float32) * w[k]
            out[k] = np.round(mixed) if out.dtype.kind in "iu" else mixed
    return out


def _position_key(s: SliceInfo) -> tuple[int, ...]:
    return tuple(round(x / DUPLICATE_TOL_MM) for x in (s.position or (0.0, 0.0, 0.0)))


def _has_duplicates(group: Sequence[SliceInfo]) -> bool:
    keys = [_position_key(s) for s in group]
    return len(set(keys)) < len(keys)


def _in_acquisition_order(groups: list[list[SliceInfo]]) -> list[list[SliceInfo]]:
    """Volumes in acquisition order: by the temporal keys that are constant within every volume
    (a key that varies inside a volume, such as a Philips DTI's AcquisitionNumber or per-slice
    acquisition times, says nothing about the order of volumes), then by each volume's first
    InstanceNumber, then its first frame number."""
    for g in groups:
        g.sort(key=lambda s: s.rank)
    n = min((len(s.order_key) for g in groups for s in g), default=0)
    steady = [k for k in range(n) if all(len({s.order_key[k] for s in g}) == 1 for g in groups)]

    def volume_rank(g: list[SliceInfo]) -> tuple[Any, ...]:
        return (*(g[0].order_key[k] for k in steady),
                min(_number(s.instance_number) for s in g), min(s.frame_number for s in g))

    return sorted(groups, key=volume_rank)


def split_series(slices: Sequence[SliceInfo]) -> list[list[SliceInfo]]:
    """Split images into volumes of one acquisition each, in acquisition order.

    First by the keys that must be equal within a volume (stack, frame type, echo, diffusion,
    temporal position: see ``VOLUME_KEYS``); then, where positions still repeat, by acquisition
    number / trigger time / image type if that yields at most as many stacks as a position has
    images; else the k-th image (in acquisition order) at each position goes to stack k. Never
    interleaves two stacks, and orders stacks by time numerically (never as strings).
    """
    slices = list(slices)
    if not slices:
        return []
    by_volume: dict[Any, list[SliceInfo]] = {}
    for s in slices:
        by_volume.setdefault(s.volume_key, []).append(s)
    out: list[list[SliceInfo]] = []
    for group in by_volume.values():
        if not _has_duplicates(group):
            out.append(group)
            continue
        by_pos: dict[tuple[int, ...], list[SliceInfo]] = {}
        for s in group:
            by_pos.setdefault(_position_key(s), []).append(s)
        depth = max(len(g) for g in by_pos.values())
        for k in range(len(SPLIT_KEYS)):
            parts: dict[Any, list[SliceInfo]] = {}
            for s in group:
                parts.setdefault(s.split_keys[: k + 1], []).append(s)
            if 1 < len(parts) <= depth and not any(_has_duplicates(p) for p in parts.values()):
                out.extend(parts.values())
                break
        else:
            stacks: list[list[SliceInfo]] = [[] for _ in range(depth)]
            for members in by_pos.values():
                members.sort(key=lambda s: s.rank)
                for k, s in enumerate(members):
                    stacks[k].append(s)
            out.extend(stacks)
    return _in_acquisition_order(out)
