"""Decimated volumes: a quick look at a large series from a fraction of its bytes.

``open_volume(src, decimate=(kx, ky, kz))`` keeps every kz-th slice (only those are read) and
every kx-th column and ky-th row. Voxel (i, j, k) is voxel (kx*i, ky*j, kz*k) of the full grid,
so the origin stays and the spacing grows by the factors. An HTJ2K frame with kx = ky = 2^r is
decoded at its reduced resolution r (the wavelet's low band, sample n at full-grid 2^r n: the
same grid), from only the bytes that resolution needs where a TLM marker says where it ends.
Other frames are decoded whole and subsampled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..codecs.htj2k import decode_leading, resolutions
from ..codecs.pixels import frame_to_image
from ..core.registry import call_kwargs, scheme_of
from ..errors import ImageLoadError, VolumeError
from .geometry import VolumeGeometry
from .progressive import frame_pieces
from .streaming import StreamingImageVolume, VolumeProgress

log = logging.getLogger("medstream.volumes")
HEAD_BYTES = 16384  # a first read: the main header, its TLM and the coarsest resolutions


def factors_of(decimate: Any) -> tuple[int, int, int]:
    """(kx, ky, kz) from an int or a 3-sequence of positive ints."""
    f = (decimate,) * 3 if isinstance(decimate, int) else tuple(decimate)
    if len(f) != 3 or not all(isinstance(x, (int, np.integer)) and x >= 1 for x in f):
        raise VolumeError(f"decimate={decimate!r}: give (kx, ky, kz), positive integers")
    return int(f[0]), int(f[1]), int(f[2])


def decimated_geometry(g: VolumeGeometry, factors: tuple[int, int, int]) -> VolumeGeometry:
    kx, ky, kz = factors
    n, rows, cols = g.shape
    affine = g.affine.copy()
    affine[:3, 0] *= kx
    affine[:3, 1] *= ky
    affine[:3, 2] *= kz
    return dataclasses.replace(
        g, image_ids=list(g.image_ids[::kz]),
        shape=(-(-n // kz), -(-rows // ky), -(-cols // kx)),
        spacing=(g.spacing[0] * kx, g.spacing[1] * ky, g.spacing[2] * kz), affine=affine,
        positions=g.positions[::kz], offsets=g.offsets[::kz], warnings=list(g.warnings))


class DecimatedVolume(StreamingImageVolume):
    """A streaming volume on a decimated grid (see the module docstring)."""

    factors: tuple[int, int, int] = (1, 1, 1)
    first_read: int = HEAD_BYTES  # grows to what slices needed so far: one request per slice
    full_geometry: VolumeGeometry | None = None  # the grid it was decimated from

    @classmethod
    def create(cls, volume_id: str, geometry: VolumeGeometry, dtype: np.dtype,
               decimate: Any, **kwargs: Any) -> DecimatedVolume:
        factors = factors_of(decimate)
        volume = cls(volume_id, decimated_geometry(geometry, factors), dtype, **kwargs)
        volume.factors = factors
        volume.full_geometry = geometry
        return volume

    def load(self, on_progress: Any = None, *, stages: Any = None, **kwargs: Any) -> Any:
        """As a streaming volume's, without stages: a staged completion decodes frames whole,
        which is not what the reduced decode gives (the volume would depend on its path)."""
        if stages is not None:
            raise VolumeError(f"{self.volume_id}: stages= and decimate= do not combine")
        return super().load(on_progress, **kwargs)

    def _frame_pixels(self, image: Any) -> np.ndarray:
        px = image.get_pixel_data()
        kx, ky, _ = self.factors
        if px.shape[:2] == self.scalar_data.shape[1:3]:
            return px  # decoded at its reduced resolution already
        return px[::ky, ::kx]

    async def _fast_frames(self, todo: list[int],
                           on_progress: Callable[[VolumeProgress], Any] | None) -> list[int]:
        return todo  # the batched path writes whole frames

    def _slot(self, k: int) -> np.ndarray | None:
        return None  # frames are reduced on their way in

    async def _frame(self, k: int, on_progress: Callable[[VolumeProgress], Any] | None,
                     priority: float = 0) -> None:
        kx, ky, _ = self.factors
        image_id = self.image_ids[k]
        reader = frame_pieces.get(scheme_of(image_id))
        skip = int(math.log2(kx)) if kx == ky and kx > 1 and kx & (kx - 1) == 0 else 0
        if reader is None or not skip:
            return await super()._frame(k, on_progress, priority)
        try:
            image = await self._scope.pools.run(
                lambda: self._reduced(reader, image_id, skip), self.request_type,
                self.priority + priority,
                {"id": image_id, "type": "volume", "volume_id": self.volume_id})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the whole-frame path loads it and reports any error
            log.info("%s: no reduced decode (%s); loading it whole", image_id, exc)
            image = None
        if image is not None:
            try:
                self._accept(k, image)
            except (ImageLoadError, VolumeError) as exc:
                log.info("%s: reduced frame refused (%s); loading it whole", image_id, exc)
                image = None
        if image is None:
            return await super()._frame(k, on_progress, priority)
        self._progress(k, None, on_progress)
        return None

    async def _reduced(self, reader: Callable[..., Any], image_id: str, skip: int) -> Any:
        """The frame decoded ``skip`` resolutions down from the bytes that needs, or None."""
        from ..core.runtime import runtime

        piece = await reader(image_id, self.first_read,
                             **call_kwargs(reader, dict(self.options)))
        if piece is None:
            return None
        found = resolutions(piece.data)
        if found is None or skip >= found.levels:
            piece = await piece.more()
            found = resolutions(piece.data)
            if found is None or skip >= found.levels:
                return None
        end = found.end_for(skip)
        if end is not None:  # the next slices' first read: this one's need and a margin
            cap = max(HEAD_BYTES, piece.info.frame_nbytes() // 2)  # one crafted TLM: bounded
            self.first_read = min(max(self.first_read, int(end * 1.15)), cap)
            piece = await piece.more(end + 2)
            if not found.chain_ok(piece.data, end):  # the TLM does not match the tile-parts
                return None
            data = piece.data[:end]  # the same bytes each time
        else:
            piece = await piece.more()
            if not piece.complete:
                return None
            data = piece.data

        def decode() -> Any:
            raw = decode_leading(image_id, data, piece.info, skip)
            info = dataclasses.replace(piece.info, rows=raw.shape[0], columns=raw.shape[1])
            return frame_to_image(image_id, raw, info.photometric_interpretation, info,
                                  piece.modules, prescale=self.options.get("prescale", True),
                                  lut_source=piece.lut_source)

        return await runtime.to_thread(decode)

