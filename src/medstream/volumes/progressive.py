"""Running a plan of stages (``stages.py``) on a streaming volume.

Stages run one after another; within a stage every request is queued at once at the stage's
priority. A ``"leading"`` stage reads the first bytes of each HTJ2K frame through its scheme's
piece reader, decodes them lossy (``codecs/htj2k.py``) and keeps the piece; the final stage
completes it with one more range. Every slice written fills its stage's neighbours that have
nothing better. What cannot be read in pieces (another codec, a source without ranges) is loaded
whole, so a plan never loads less than a plain load, only in another order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..codecs.htj2k import decode_leading
from ..codecs.pixels import PixelHeader, frame_to_image
from ..core.events import Events, events
from ..core.loading import run_loader
from ..core.metadata import metadata
from ..core.registry import call_kwargs, image_loaders, scheme_of
from ..core.runtime import runtime
from ..dicom.part10 import decode_to_image
from ..errors import ImageLoadError, VolumeError
from .stages import SliceStatus, Stage, uncovered

if TYPE_CHECKING:
    from ..loaders.frameranges import FramePiece
    from .streaming import VolumeProgress

log = logging.getLogger("medstream.volumes")

#: scheme -> ``async fn(image_id, nbytes, **options) -> FramePiece | None``: the first ``nbytes``
#: of a frame's codestream, or None where that frame cannot be read in pieces.
frame_pieces: dict[str, Callable[..., Any]] = {}
#: scheme -> ``fn(image_id, query) -> str | None``: the ID of a server rendering of the frame.
rendered_ids: dict[str, Callable[[str, str], str | None]] = {}
CT_RANGE = (-1024.0, 3071.0)  # a rendered CT stand-in spans air to dense bone, not 16 bits

Progress = Callable[["VolumeProgress"], Any] | None


class StagedLoading:
    """The stage runner of :class:`StreamingImageVolume` (a mixin: it uses the volume's own
    frame paths, so a staged load ends bit-identical to a plain one)."""

    image_ids: list[str]
    scalar_data: Any
    options: dict[str, Any]
    priority: float
    request_type: Any
    status: Any
    volume_id: str
    _scope: Any
    _stage: str | None

    loaded_mask: np.ndarray

    if TYPE_CHECKING:  # the volume's own frame paths (StreamingImageVolume)
        async def _frame(self, k: int, on_progress: Progress, priority: float = 0) -> None: ...
        async def _fast_frames(self, todo: list[int], on_progress: Progress) -> list[int]: ...
        def _write(self, k: int, image: Any) -> None: ...
        def _store(self, k: int, px: np.ndarray) -> None: ...
        def _accept(self, k: int, image: Any) -> None: ...
        def _progress(self, k: int, error: str | None, on_progress: Progress,
                      quality: SliceStatus = SliceStatus.FINAL) -> None: ...

    # -- status --------------------------------------------------------------------------------
    @property
    def slice_status(self) -> np.ndarray:
        """Per slice, a :class:`SliceStatus` value: ``FINAL`` where loaded, else what a staged
        load put there meanwhile (``NONE``, ``FILLED`` or ``LOSSY``)."""
        standins = self._standins
        if len(standins) != len(self.loaded_mask):  # resampled onto another grid
            standins = np.zeros(len(self.loaded_mask), np.uint8)
        return np.where(self.loaded_mask, np.uint8(SliceStatus.FINAL), standins)

    @property
    def _standins(self) -> np.ndarray:
        """What each slice not yet loaded holds (NONE/FILLED/LOSSY), and from how far a filled
        one was copied."""
        d = getattr(self, "_standin_state", None)
        if d is None:
            d = self._standin_state = np.zeros(len(self.image_ids), np.uint8)
            self._fill_dist = np.zeros(len(self.image_ids), np.int32)
        return d  # type: ignore[no-any-return]

    def _fill(self, k: int, reach: int) -> None:
        """Copy slice ``k`` into neighbours within ``reach`` that hold nothing nearer."""
        status, dist, loaded = self._standins, self._fill_dist, self.loaded_mask
        for j in range(max(0, k - reach), min(len(status), k + reach + 1)):
            if j != k and not loaded[j] and (status[j] == SliceStatus.NONE or (
                    status[j] == SliceStatus.FILLED and dist[j] > abs(j - k))):
                self.scalar_data[j] = self.scalar_data[k]
                status[j], dist[j] = SliceStatus.FILLED, abs(j - k)

    @property
    def _pieces(self) -> dict[int, FramePiece]:
        """Lossy slices' pieces, kept until the final stage reads the rest of them."""
        p: dict[int, FramePiece] | None = getattr(self, "_kept_pieces", None)
        if p is None:
            p = {}
            self._kept_pieces = p
        return p

    # -- running -------------------------------------------------------------------------------
    async def _run_stages(self, plan: Sequence[Stage], on_progress: Progress,
                          left: Callable[[], float | None]) -> None:
        n = len(self.image_ids)
        stages = list(plan)
        if uncovered(stages, n):
            stages.append(Stage("final", priority=max(s.priority for s in stages) + 1))
        final_of: dict[int, int] = {}
        leading_of: dict[int, int] = {}
        for i, stage in enumerate(stages):
            for k in stage.slices(n):
                if stage.retrieve == "final":
                    final_of.setdefault(k, i)
                elif k not in final_of:
                    leading_of.setdefault(k, i)
        for i, stage in enumerate(stages):
            started = time.perf_counter()
            status = self.slice_status
            ks = [k for k in stage.slices(n) if status[k] < SliceStatus.FINAL and (
                final_of.get(k) == i or (leading_of.get(k) == i and status[k] < SliceStatus.LOSSY))]
            self._stage = stage.name
            if ks:
                await asyncio.wait_for(self._one_stage(stage, ks, on_progress), left())
            events.trigger(Events.IMAGE_VOLUME_STAGE_COMPLETED, volume_id=self.volume_id,
                           stage=stage.name, index=i, slices=len(ks),
                           seconds=time.perf_counter() - started,
                           status=np.bincount(self.slice_status, minlength=4).tolist())
        self._stage = None

    async def _one_stage(self, stage: Stage, ks: list[int], on_progress: Progress) -> None:
        if stage.retrieve != "final":
            one = self._leading if stage.retrieve == "leading" else self._rendered
            await asyncio.gather(*(one(k, stage, on_progress) for k in ks))
            return
        pieces = [k for k in ks if k in self._pieces]
        whole = [k for k in ks if k not in self._pieces]
        rest = await self._fast_frames(whole, on_progress)
        rest = [k for k in rest if not self.loaded_mask[k]]
        await asyncio.gather(*(self._frame(k, on_progress, stage.priority) for k in rest),
                             *(self._complete(k, stage, on_progress) for k in pieces))
        for k in ks:
            if stage.fill and self.loaded_mask[k]:
                self._fill(k, stage.fill)

    async def _queued(self, fn: Callable[[], Any], priority: float, image_id: str) -> Any:
        return await self._scope.pools.run(fn, self.request_type, self.priority + priority,
                                           {"id": image_id, "type": "volume",
                                            "volume_id": self.volume_id})

    async def _leading(self, k: int, stage: Stage, on_progress: Progress) -> None:
        """Slice ``k`` from the first bytes of its frame (lossy), else its whole frame."""
        image_id = self.image_ids[k]
        reader = frame_pieces.get(scheme_of(image_id))
        piece = None
        if reader is not None:
            opts = call_kwargs(reader, dict(self.options))
            try:
                piece = await self._queued(lambda: reader(image_id, stage.leading_bytes, **opts),
                                           stage.priority, image_id)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the final stage loads it whole and reports its error
                log.info("%s: first bytes not read (%s); loaded whole later", image_id, exc)
                return
        if piece is None:
            await self._frame(k, on_progress, stage.priority)
        elif piece.complete:
            try:
                await self._accept_piece(k, piece, on_progress)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the plain frame path reports what is wrong with it
                log.info("%s: frame not decoded (%s); loading it whole", image_id, exc)
                await self._frame(k, on_progress, stage.priority)
        else:
            try:
                image = await runtime.to_thread(self._lossy_image, piece)
                self._write(k, image)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("%s: first bytes not decoded (%s); loaded whole later", image_id, exc)
                return
            self._pieces[k] = piece
            self._standins[k] = SliceStatus.LOSSY
            self._progress(k, None, on_progress, SliceStatus.LOSSY)
        if stage.fill and (self.loaded_mask[k] or self._standins[k] == SliceStatus.LOSSY):
            self._fill(k, stage.fill)

    async def _rendered(self, k: int, stage: Stage, on_progress: Progress) -> None:
        """Slice ``k`` from the server's rendering of its frame (lossy), else its whole frame."""
        image_id = self.image_ids[k]
        make = rendered_ids.get(scheme_of(image_id))
        modules = metadata_modules(image_id)
        header = PixelHeader.from_modules(modules) if modules else None
        if make is None or header is None or header.color or header.lut_sequence \
                or header.float_pixels:
            return await self._frame(k, on_progress, stage.priority)
        lo, hi = header.value_range()
        if header.modality == "CT":
            lo, hi = max(lo, CT_RANGE[0]), min(hi, CT_RANGE[1])
        rows, cols = self.scalar_data.shape[1:3]
        query = (f"window={(lo + hi) / 2 + 0.5:g},{hi - lo + 1:g},linear&accept=image/jpeg"
                 + (f"&viewport={-(-cols // stage.shrink)},{-(-rows // stage.shrink)}"
                    if stage.shrink > 1 else ""))
        rendered = make(image_id, query)
        if rendered is None:
            return await self._frame(k, on_progress, stage.priority)
        opts = dict(self.options)
        try:
            loader = image_loaders.resolve(rendered)
            picture = await self._queued(lambda: run_loader(loader, rendered, opts),
                                         stage.priority, image_id)
            values = await runtime.to_thread(stand_in, picture.get_pixel_data(), (rows, cols),
                                             lo, hi, header, self.options.get("prescale", True))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the final stage loads it and reports any error
            log.info("%s: no rendered stand-in (%s); loaded whole later", image_id, exc)
            return None
        if self.loaded_mask[k]:
            return None
        self._store(k, values.astype(self.scalar_data.dtype))
        self._standins[k] = SliceStatus.LOSSY
        self._progress(k, None, on_progress, SliceStatus.LOSSY)
        if stage.fill:
            self._fill(k, stage.fill)
        return None

    def _lossy_image(self, piece: FramePiece) -> Any:
        raw = decode_leading(piece.image_id, piece.data, piece.info)
        return frame_to_image(piece.image_id, raw, piece.info.photometric_interpretation,
                              piece.info, piece.modules,
                              prescale=self.options.get("prescale", True),
                              lut_source=piece.lut_source)

    async def _complete(self, k: int, stage: Stage, on_progress: Progress) -> None:
        """A lossy slice made final with the rest of its codestream (one more range)."""
        image_id = self.image_ids[k]
        try:
            piece = await self._queued(lambda: self._pieces[k].more(), stage.priority, image_id)
            if not piece.complete:  # a server that never says it sent everything
                raise ImageLoadError(image_id, "the rest of the frame did not complete it")
            await self._accept_piece(k, piece, on_progress)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the plain frame path reports what is wrong with it
            log.info("%s: rest of the frame not read (%s); loading it whole", image_id, exc)
            self._pieces.pop(k, None)
            await self._frame(k, on_progress, stage.priority)

    def _drop_pieces(self) -> None:
        """Forget kept pieces of slices that are final now (all of them once loaded)."""
        pieces = self._pieces
        for k in [k for k in pieces if self.loaded_mask[k]]:
            del pieces[k]

    async def _accept_piece(self, k: int, piece: FramePiece, on_progress: Progress) -> None:
        image = await runtime.to_thread(
            decode_to_image, piece.image_id, piece.data, piece.info, piece.modules,
            prescale=self.options.get("prescale", True), lut_source=piece.lut_source)
        self._accept(k, image)
        self._pieces.pop(k, None)
        self._progress(k, None, on_progress)



def metadata_modules(image_id: str) -> dict[str, Any] | None:
    """The slice modules the volume's metadata gave ``image_id`` (None if none)."""
    mods = {name: metadata.get(name, image_id) for name in
            ("imagePixelModule", "modalityLutModule", "generalSeriesModule")}
    return mods if mods["imagePixelModule"] else None


def stand_in(picture: np.ndarray, shape: tuple[int, int], lo: float, hi: float,
             header: PixelHeader, prescale: bool) -> np.ndarray:
    """Values from an 8-bit rendering through the linear window [lo, hi]: the window's inverse
    (PS3.3 C.11.2.1.2), enlarged to ``shape`` by repetition, as stored values if not
    ``prescale``, rounded where the volume holds integers."""
    if picture.ndim != 2:
        raise ValueError(f"rendered picture has shape {picture.shape}, not one channel")
    ry, rx = -(-shape[0] // picture.shape[0]), -(-shape[1] // picture.shape[1])
    big = np.repeat(np.repeat(picture, ry, axis=0), rx, axis=1)[: shape[0], : shape[1]]
    if big.shape != shape:
        raise ValueError(f"rendered picture {picture.shape} does not cover {shape}")
    level = big.astype(np.float64) / 255.0
    if header.photometric == "MONOCHROME1":  # rendered for display, inverted: dark is high
        level = 1.0 - level
    values = lo + level * (hi - lo)
    if not prescale:
        values = (values - header.intercept) / (header.slope or 1.0)
    return np.rint(values) if header.dtype(prescale).kind in "iu" else values
