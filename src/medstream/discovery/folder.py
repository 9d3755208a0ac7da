"""Scan a folder into series: header-only reads in parallel, grouped and checked.

Files are grouped by SeriesInstanceUID, then split where one series mixes image sizes or
orientations (a localizer among axials) or repeats positions (echoes, phases). Each part gets
its geometry checked, so a report can show slice counts and warnings before any pixel is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.metadata import metadata
from ..core.runtime import runtime
from ..dicom.regular import is_regular
from ..errors import GeometryError, MedstreamError
from ..loaders.dicomfile import absolute, read_headers
from ..storage import is_remote, local_path, storage
from ..volumes.geometry import SliceInfo, VolumeGeometry, compute_geometry, split_series

_SKIP_NAMES = {"DICOMDIR"}


@dataclass
class SeriesInfo:
    key: str  # SeriesInstanceUID, with "#2", "#3"... for the parts of a split series
    series_uid: str | None
    study_uid: str | None
    modality: str | None
    description: str | None
    series_number: int | None
    image_ids: list[str] = field(repr=False)  # in slice order when the geometry is valid
    geometry: VolumeGeometry | None = field(default=None, repr=False)
    geometry_error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    def summary(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "key": self.key, "series_uid": self.series_uid, "study_uid": self.study_uid,
            "modality": self.modality, "description": self.description,
            "series_number": self.series_number, "images": self.n_images,
            "shape": list(g.shape) if g else None,
            "spacing": [round(s, 4) for s in g.spacing] if g else None,
            "warnings": self.warnings + ([self.geometry_error] if self.geometry_error else []),
        }


@dataclass
class FolderScan:
    root: str
    series: list[SeriesInfo]
    skipped: dict[str, str]  # path -> why it is not an image of any series
    files: int = 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)


def _walk(root: str, recursive: bool) -> list[str]:
    if is_remote(root):  # one listing of the prefix (sizes and versions come with it)
        return storage.listing(root, recursive)
    if os.path.isfile(root):
        return [os.path.abspath(root)]
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames)
                   if not f.startswith(".") and f not in _SKIP_NAMES
                   and is_regular(os.path.join(dirpath, f)))  # a FIFO would block the scan
        if not recursive:
            break
    return [os.path.abspath(p) for p in out]


def describe_series(key: str, slices: list[SliceInfo]) -> SeriesInfo:
    """Geometry check of one group; ``image_ids`` in slice order when it forms a volume."""
    first = slices[0].image_id
    series = metadata.get("generalSeriesModule", first) or {}
    info = SeriesInfo(
        key=key, series_uid=series.get("series_instance_uid"),
        study_uid=series.get("study_instance_uid"), modality=series.get("modality"),
        description=series.get("series_description"), series_number=series.get("series_number"),
        image_ids=[s.image_id for s in slices],
    )
    try:
        geometry = compute_geometry(slices, spacing="keep", warn=False)
    except GeometryError as exc:
        info.geometry_error = str(exc)
        return info
    info.geometry = geometry
    info.image_ids = list(geometry.image_ids)
    info.warnings = list(geometry.warnings)
    return info


def group_slices(slices: list[SliceInfo]) -> list[SeriesInfo]:
    """Series UID, then size/orientation, then acquisitions (see ``split_series``) -> one
    SeriesInfo per stack. Parts are numbered in acquisition order ("#1" is the first time
    point, echo or stack), after any larger group of another size or orientation."""
    by_series: dict[str | None, list[SliceInfo]] = {}
    for s in slices:
        by_series.setdefault(s.series_uid, []).append(s)
    out: list[tuple[tuple[Any, ...], SeriesInfo]] = []
    for uid, members in by_series.items():
        shapes: dict[tuple[Any, ...], list[SliceInfo]] = {}
        for s in members:
            iop = tuple(np.round(s.orientation, 3)) if s.orientation else None
            shapes.setdefault((s.rows, s.columns, s.samples_per_pixel, iop), []).append(s)
        groups = sorted(shapes.values(), key=len, reverse=True)
        parts = [stack for group in groups for stack in split_series(group)]
        first: tuple[str, int] | None = None  # the parts of one UID stay together, in order
        for n, part in enumerate(parts):
            key = (uid or "(no series UID)") + (f"#{n + 1}" if len(parts) > 1 else "")
            info = describe_series(key, part)
            if len(parts) > 1:
                info.warnings.insert(0, f"series split into {len(parts)} stacks "
                                        "(different size, orientation or acquisitions)")
            first = first or (info.study_uid or "", info.series_number or 0)
            out.append(((*first, uid or "", n), info))
    out.sort(key=lambda item: item[0])
    return [info for _, info in out]


async def scan_folder_async(path: str | os.PathLike[str], *, recursive: bool = True) -> FolderScan:
    root = local_path(os.fspath(path))
    if not is_remote(root) and not os.path.exists(root):
        raise MedstreamError(f"{root}: no such file or folder")
    files = await runtime.to_thread(_walk, root, recursive)
    if not files and is_remote(root):
        raise MedstreamError(f"{root}: no objects under this prefix")
    results = await read_headers(files)
    skipped = {p: r.cause for p, r in results.items() if isinstance(r, MedstreamError)}
    found = [r for p in files if not isinstance(r := results[p], MedstreamError)]
    slices = [SliceInfo.from_modules(i, modules) for ids in found for i, modules in ids.items()]
    series = await runtime.to_thread(group_slices, slices)
    return FolderScan(absolute(root), series, skipped, len(files))


def scan_folder(path: str | os.PathLike[str] | Path, *, recursive: bool = True) -> FolderScan:
    """Find the DICOM series under ``path`` (header-only, parallel reads): a local folder, or
    an object-store prefix (``s3://bucket/study/``; see ``configure_storage``)."""
    return runtime.run_sync(scan_folder_async(path, recursive=recursive))
