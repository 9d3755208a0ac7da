"""Dynamic (4D) volumes: time points of one geometry in one (t, z, y, x) array.

Cornerstone's streaming dynamic volume, for fMRI runs, DTI directions, perfusion and cardiac
phases. The images of a series are split into acquisitions (``split_series``: stack, echo,
temporal position, diffusion, acquisition number; numeric order, never by string), each time
point is a ``StreamingImageVolume`` whose array is a view into the one 4D array, so frames
stream into place with the usual events, progress, cancel and failure lists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core import hooks
from ..core.image import as_array
from ..core.load_object import CancelSignal, LoadObject
from ..core.scope import using as using_scope
from ..core.metadata import metadata
from ..errors import GeometryError, VolumeError
from . import convert
from .geometry import VOLUME_KEYS, GeometryWarning, SliceInfo, VolumeGeometry, split_series
from .streaming import (
    Order,
    StreamingImageVolume,
    VolumeFacts,
    VolumeLoadError,
    VolumeLoadStatus,
    VolumeProgress,
    expand_mosaics,
    fill_missing_metadata,
    allocate_volume,
    streaming_volume_loader,
)

AFFINE_TOL_MM = 1e-3
# VOLUME_KEYS positions that say what an image is (not when): mixing them is not a time series.
_KIND_KEYS = tuple(VOLUME_KEYS.index(k) for k in ("frame_type", "complex_image_component",
                                                   "echo_number", "echo_time"))


class DynamicVolume(VolumeFacts):
    """``scalar_data`` is (time points, slices, rows, columns); ``time_points[t]`` is the 3D
    volume of time point t (sharing that memory), all with ``geometry``."""

    def __init__(self, volume_id: str, time_points: Sequence[StreamingImageVolume]) -> None:
        if not time_points:
            raise GeometryError(f"{volume_id}: no time points")
        first = time_points[0]
        for t, vol in enumerate(time_points[1:], start=1):
            if vol.shape != first.shape or not np.allclose(vol.affine, first.affine,
                                                           atol=AFFINE_TOL_MM):
                raise GeometryError(
                    f"{volume_id}: time point {t} does not share the geometry of time point 0 "
                    f"({vol.shape} vs {first.shape}); these acquisitions are not one 4D series",
                    vol.image_ids[:4])
        dtype = np.result_type(*(v.dtype for v in time_points))
        self.volume_id = volume_id
        self.time_points = list(time_points)
        self.scalar_data = allocate_volume(volume_id, (len(time_points), *first.shape), dtype)
        for t, vol in enumerate(time_points):
            self.scalar_data[t] = vol.scalar_data  # frames already loaded, if any
            vol.scalar_data = self.scalar_data[t]  # every later frame lands in the 4D array
        self._load: LoadObject[DynamicVolume] | None = None

    @property
    def geometry(self) -> VolumeGeometry:  # type: ignore[override]
        return self.time_points[0].geometry

    @property
    def loaded_mask(self) -> np.ndarray:
        """(time points, slices): True where the slice is loaded."""
        return np.stack([v.loaded_mask for v in self.time_points])

    @property
    def failed(self) -> dict[str, str]:
        return {k: v for vol in self.time_points for k, v in vol.status.failed.items()}

    @property
    def status(self) -> VolumeLoadStatus:
        """All time points together (a snapshot)."""
        parts = [v.status for v in self.time_points]
        return VolumeLoadStatus(
            total=sum(p.total for p in parts), frames_loaded=sum(p.frames_loaded for p in parts),
            loading=any(p.loading for p in parts), loaded=all(p.loaded for p in parts),
            cancelled=any(p.cancelled for p in parts), failed=self.failed)

    def __repr__(self) -> str:
        done = int(self.loaded_mask.sum())
        return (f"<DynamicVolume {self.shape} {self.dtype} {done}/{self.loaded_mask.size} "
                "loaded>")

    def load(self, on_progress: Callable[[VolumeProgress], Any] | None = None, *,
             order: Order = "interleaved", timeout: float | None = None,
             ) -> LoadObject[DynamicVolume]:
        """Stream every time point (concurrently, through the same request pools). Raises
        ``VolumeLoadError`` listing the failed frames of all time points; loaded ones stay."""
        if self._load is not None and not self._load.done():
            return self._load
        with using_scope(self.time_points[0].scope):  # the client that made it
            self._load = LoadObject(self.volume_id,
                                    lambda signal: self._run(signal, on_progress, order, timeout))
        return self._load

    def cancel_loading(self) -> bool:
        obj = self._load
        return obj.cancel() if obj is not None else False

    async def _run(self, signal: CancelSignal, on_progress: Callable[[VolumeProgress], Any] | None,
                   order: Order, timeout: float | None) -> DynamicVolume:
        total = sum(v.status.total for v in self.time_points)

        def progress(p: VolumeProgress) -> None:  # counts over all time points
            if on_progress is not None:
                on_progress(dataclasses.replace(
                    p, volume_id=self.volume_id, total=total, failed=len(self.failed),
                    frames_loaded=sum(v.status.frames_loaded for v in self.time_points)))

        jobs = [v.load(progress, order=order, timeout=timeout) for v in self.time_points]

        async def wait(job: LoadObject[Any]) -> Any:
            return await job

        try:
            await asyncio.gather(*(wait(j) for j in jobs), return_exceptions=True)
        except asyncio.CancelledError:
            for job in jobs:
                job.cancel()
            raise
        failed = self.failed
        if failed:
            raise VolumeLoadError(self.volume_id, failed, int(self.loaded_mask.size))
        return self

    def to_nifti(self) -> Any:
        from .export import to_nifti

        return to_nifti(self.scalar_data, self.geometry, time_axis=True)

    def save(self, path: Any, *, allow_partial: bool = False) -> Any:
        """4D NIfTI (x, y, z, t), or .npy / .npz (array (t, z, y, x) + affine). Slices not
        loaded raise ``VolumeError`` unless ``allow_partial`` (mask (t, z) written beside)."""
        from .export import save_partial, save_volume

        mask = self.loaded_mask
        missing = int(np.count_nonzero(~mask))
        if missing and not allow_partial:
            raise VolumeError(
                f"{self.volume_id}: {missing} of {mask.size} slices are not loaded; load() "
                "again, or save(..., allow_partial=True) to write it with its mask",
                [i for v in self.time_points for i, ok in zip(v.image_ids, v.loaded_mask)
                 if not ok])
        out = save_volume(self.scalar_data, self.geometry, path, time_axis=True)
        if missing:
            save_partial(out, mask)
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return as_array(self.scalar_data, dtype, copy)

    def to_torch(self, dtype: Any = None) -> Any:
        """``(t, z, y, x)`` as a torch tensor (see ``StreamingImageVolume.to_torch``)."""
        return convert.to_torch(self, dtype)

    def to_metatensor(self, *, channel_first: bool = True, dtype: Any = None) -> Any:
        """(t, x, y, z) with the RAS affine: time points as channels."""
        return convert.to_metatensor(self, channel_first=channel_first, dtype=dtype)

    def _repr_html_(self) -> str:
        return hooks.html("volume", self)


async def dynamic_volume_loader(volume_id: str, image_ids: Sequence[str] | None = None,
                                **options: Any) -> DynamicVolume:
    """Split ``image_ids`` into acquisitions and build one time point volume per acquisition."""
    ids = list(dict.fromkeys(image_ids or ()))
    options = {k: v for k, v in options.items() if k != "signal"}
    if not ids:
        raise GeometryError(f"{volume_id}: no images for a dynamic volume")
    http = {k: v for k, v in options.items() if k not in ("spacing", "tilt", "prescale",
                                                           "request_type", "priority",
                                                           "retrieve")}
    await metadata.preload(ids, **http)
    await fill_missing_metadata(ids, dict(http, prescale=options.get("prescale", True)))
    ids, modules = await expand_mosaics(ids, http)
    slices = [SliceInfo.from_modules(i, modules[i]) for i in ids]
    stacks = split_series(slices)
    kinds = {tuple(s[0].volume_key[i] for i in _KIND_KEYS) for s in stacks if s}
    if len(kinds) > 1:
        warnings.warn(f"{volume_id}: the 4th axis holds {len(kinds)} kinds of images (frame "
                      "type, complex component or echo differ), not only time points",
                      GeometryWarning, stacklevel=2)
    points = [await streaming_volume_loader(f"{volume_id}#t{t + 1}",
                                            image_ids=[s.image_id for s in stack], **options)
              for t, stack in enumerate(stacks)]
    return DynamicVolume(volume_id, points)
