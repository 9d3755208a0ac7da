"""The streaming image volume: metadata first, then frames streamed into ONE preallocated array.

``create_and_cache_volume(volume_id, image_ids=...)`` resolves as soon as the geometry is known;
``volume.load()`` then streams every frame through the prefetch request pool and writes each one
into its slice. Frames are not cached as separate images, so peak memory is the volume plus the
few frames in flight. A failed frame is listed with its reason and the rest keep loading;
``load()`` again (or ``retry_failed()``) fetches only what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..codecs.pixels import PixelHeader
from ..core.events import Events, events
from ..core import hooks
from ..core.image import Image, as_array
from ..core.load_object import CancelSignal, LoadObject
from ..core.loading import as_load_error, track_load, run_loader
from ..core.metadata import metadata
from ..core.registry import Loader, call_kwargs, image_loaders, scheme_of
from ..core.request_pools import RequestType
from ..core.scope import current as current_scope
from ..core.scope import current_pools
from ..core.scope import using as using_scope
from ..core.runtime import runtime
from ..errors import GeometryError, ImageLoadError, PixelRangeError, VolumeError
from ..redact import redact_text
from . import convert
from .progressive import StagedLoading
from .stages import SliceStatus, Stage, plan_of
from .geometry import (
    SliceInfo,
    SpacingPolicy,
    TiltPolicy,
    VolumeGeometry,
    compute_geometry,
    regular_grid,
    resample_slices,
)

log = logging.getLogger("medstream.volumes")

Order = Literal["interleaved", "sequential"]
Retrieve = Literal["auto", "frames"]

# scheme -> async fn(image_ids, deliver(image_id, image), **options): loads many frames with few
# requests (a whole DICOMweb series in one response); what it does not deliver is then requested
# frame by frame. ``retrieve="frames"`` on a volume skips it (e.g. for the interleaved preview).
bulk_retrievers: dict[str, Loader] = {}
_MODULES = ("imagePlaneModule", "imagePixelModule", "generalSeriesModule",
            "generalImageModule", "modalityLutModule", "voiLutModule", "multiframeModule",
            "mosaicModule")


class VolumeLoadError(VolumeError):
    """Some frames of a volume failed; the others are in the array. ``failed`` maps image ID
    to reason; ``volume.load()`` again retries only those."""

    def __init__(self, volume_id: str, failed: dict[str, str], total: int) -> None:
        self.volume_id = volume_id
        self.failed = dict(failed)
        self.total = total
        first = next(iter(failed.items()), ("", ""))
        super().__init__(
            f"{volume_id}: {len(failed)} of {total} frames failed (first: {first[1]})",
            list(failed),
        )

    def __reduce__(self):
        return (self.__class__, (self.volume_id, self.failed, self.total))


@dataclass
class VolumeLoadStatus:
    total: int
    frames_loaded: int = 0
    loading: bool = False
    loaded: bool = False
    cancelled: bool = False
    failed: dict[str, str] = field(default_factory=dict)  # image ID -> reason
    bulk_frames: int = 0  # frames that came with a whole-series request
    started: float | None = None
    finished: float | None = None

    def begin(self) -> None:
        self.loading, self.cancelled, self.failed = True, False, {}
        self.started, self.finished = time.perf_counter(), None

    def end(self) -> None:
        self.loading, self.finished = False, time.perf_counter()

    @property
    def seconds(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.perf_counter()) - self.started


@dataclass(frozen=True)
class VolumeProgress:
    """What ``on_progress`` receives after each frame (on the medstream loop: keep it quick)."""

    volume_id: str
    image_id: str
    index: int  # slice index in the volume
    frames_loaded: int
    total: int
    failed: int
    error: str | None = None
    stage: str | None = None  # the stage of a staged load (``load(stages=...)``)
    quality: SliceStatus = SliceStatus.FINAL  # what the slice holds now


def load_order(n: int, order: Order = "interleaved") -> list[int]:
    """Slice indices in retrieval order. Interleaved: middle, ends, every 4th, every 2nd, rest —
    so a coarse preview of the whole volume is there early."""
    if order == "sequential":
        return list(range(n))
    if order != "interleaved":
        raise ValueError(f"unknown order {order!r}; use 'interleaved' or 'sequential'")
    seen: set[int] = set()
    out: list[int] = []
    for k in [n // 2, 0, n - 1, *range(0, n, 4), *range(2, n, 4), *range(n)]:
        if 0 <= k < n and k not in seen:
            seen.add(k)
            out.append(k)
    return out


def volume_dtype(modules: Sequence[dict[str, Any]], prescale: bool = True) -> np.dtype:
    """The array dtype before any pixel is seen: every slice's header rule (``PixelHeader``,
    the same one each image follows) combined, so any slice fits without changing dtype."""
    return np.result_type(*(PixelHeader.from_modules(m).dtype(prescale) for m in modules))


def _fits(dtype: np.dtype, image: Image) -> bool:
    """Whether ``image``'s values are held exactly by ``dtype`` (the array is never promoted)."""
    px = image.get_pixel_data()
    if dtype.kind == "f":
        return px.dtype.kind != "f" or px.dtype.itemsize <= dtype.itemsize
    if px.dtype.kind == "f" and not np.all(np.mod(px, 1) == 0):
        return False
    info = np.iinfo(dtype)
    return info.min <= image.min_pixel_value and image.max_pixel_value <= info.max


class VolumeFacts:
    """Shape, dtype and geometry shortcuts of anything with ``scalar_data`` and ``geometry``
    (3D and dynamic volumes alike)."""

    scalar_data: Any
    geometry: VolumeGeometry

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.scalar_data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.scalar_data.dtype

    @property
    def size_in_bytes(self) -> int:
        return int(self.scalar_data.nbytes)

    @property
    def affine(self) -> np.ndarray:
        return self.geometry.affine

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing

    @property
    def origin(self) -> np.ndarray:
        return self.geometry.origin

    @property
    def direction(self) -> np.ndarray:
        return self.geometry.direction


class StreamingImageVolume(StagedLoading, VolumeFacts):
    """A volume whose geometry is known and whose pixels stream in (``load``).

    ``scalar_data`` is the one array, shape (slices, rows, columns[, 3]); slices are ordered by
    position along the normal and ``geometry`` holds the affine and any warnings.
    """

    def __init__(
        self,
        volume_id: str,
        geometry: VolumeGeometry,
        dtype: np.dtype,
        *,
        color: bool = False,
        options: dict[str, Any] | None = None,
        spacing: SpacingPolicy = "raise",
        request_type: RequestType | str = RequestType.PREFETCH,
        priority: float = 0,
        retrieve: Retrieve = "auto",
    ) -> None:
        self.volume_id = volume_id
        self.retrieve = retrieve
        self._scope = current_scope()  # the cache and pools of whoever created it
        self.geometry = geometry
        self.image_ids = list(geometry.image_ids)
        shape = geometry.shape + ((3,) if color else ())
        self.scalar_data = self._allocate(shape, np.dtype(dtype))
        self.color = color
        self.status = VolumeLoadStatus(total=len(self.image_ids))
        self.loaded_mask = np.zeros(len(self.image_ids), dtype=bool)
        self._stage: str | None = None
        self.options = dict(options or {})
        self.request_type = RequestType(request_type)
        self.priority = priority
        self._spacing = spacing
        self._load: LoadObject[StreamingImageVolume] | None = None
        self._index = {image_id: k for k, image_id in enumerate(self.image_ids)}
        self.metadata: dict[str, Any] = {}
        self.acquired_geometry: VolumeGeometry | None = None  # set when resampled

    def _allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """The one array every frame lands in, within the volume budget (a GPU volume allocates
        device memory instead)."""
        return allocate_volume(self.volume_id, shape, dtype)

    # -- description -------------------------------------------------------------------------
    device = "cpu"

    def get_scalar_data(self) -> np.ndarray:
        return self.scalar_data

    def __repr__(self) -> str:
        s = self.status
        return (f"<{type(self).__name__} {redact_text(self.volume_id)!r} {self.shape} {self.dtype} "
                f"{s.frames_loaded}/{s.total} loaded{', %d failed' % len(s.failed) if s.failed else ''}>")

    # -- loading -----------------------------------------------------------------------------
    def load(
        self,
        on_progress: Callable[[VolumeProgress], Any] | None = None,
        *,
        order: Order = "interleaved",
        timeout: float | None = None,
        stages: str | Sequence[Stage | dict[str, Any]] | None = None,
    ) -> LoadObject[StreamingImageVolume]:
        """Stream the missing frames into the array. Await it or call ``.result(timeout)``.

        ``stages="progressive"`` (or a list of :class:`Stage`) loads in stages: a few slices
        first, then every 4th from the first bytes of its HTJ2K frame, neighbours filled, then
        everything final; ``slice_status`` says what each slice holds meanwhile.

        With ``timeout`` (seconds) the load settles by then: frames still missing are cancelled
        and listed as failed ("not loaded within ..."), so a dead or stalled server cannot hold
        the caller longer than that.

        Resolves to the volume; raises ``VolumeLoadError`` listing failed frames (the others stay
        loaded). Calling it while a load runs returns that load; after a cancel or a failure it
        loads only what is missing. A finished volume resolves at once (and fires completion).
        ``order`` applies to frame requests; a volume that covers a whole DICOMweb series is
        fetched in one series request instead (server order) unless created with
        ``retrieve="frames"``.
        """
        with self._scope.cache.lock, using_scope(self._scope):  # its frames: its client's
            if self._load is not None and not self._load.done():
                return self._load
            plan = None if stages is None else plan_of(stages)
            obj: LoadObject[StreamingImageVolume] = LoadObject(
                self.volume_id,
                lambda signal: self._run(signal, on_progress, order, timeout, plan))
            track_load(obj)  # in flight: cancel_load_all() and interpreter exit reach it
            self._load = obj
            return obj

    @property
    def scope(self) -> Any:
        """The cache, pools and HTTP settings (an ``ms.Client``'s) its loads use."""
        return self._scope

    def retry_failed(self, on_progress: Callable[[VolumeProgress], Any] | None = None,
                     ) -> LoadObject[StreamingImageVolume]:
        return self.load(on_progress)

    def cancel_loading(self) -> bool:
        """Stop queued and in-flight frame requests; loaded frames stay."""
        obj = self._load
        return obj.cancel() if obj is not None else False

    async def _run(self, signal: CancelSignal, on_progress: Callable[[VolumeProgress], Any] | None,
                   order: Order, timeout: float | None = None,
                   plan: Sequence[Stage] | None = None) -> StreamingImageVolume:
        st = self.status
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - loop.time())

        if self.acquired_geometry is not None:  # resampled onto a regular grid: complete
            return self._completed()
        todo = [k for k in load_order(len(self.image_ids), order) if not self.loaded_mask[k]]
        st.begin()
        self._scope.cache.pin(self.volume_id, "loading")
        tasks: list[asyncio.Future[None]] = []
        try:
            if plan is not None:
                try:
                    await self._run_stages(plan, on_progress, left)
                except asyncio.TimeoutError:
                    pass  # what is missing is reported below
                # frames that failed in a stage were reported there: not asked for again
                todo = [k for k in todo if self.image_ids[k] not in st.failed]
            try:
                await asyncio.wait_for(
                    self._bulk([self.image_ids[k] for k in todo if not self.loaded_mask[k]],
                               on_progress), left())
            except asyncio.TimeoutError:
                pass  # what is missing is reported below
            todo = [k for k in todo if not self.loaded_mask[k]]
            try:
                rest = await asyncio.wait_for(self._fast_frames(todo, on_progress), left())
            except asyncio.TimeoutError:
                rest = todo
            todo = [k for k in rest if not self.loaded_mask[k]]
            tasks = [asyncio.ensure_future(self._frame(k, on_progress)) for k in todo]
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=left())
                for k, task in zip(todo, tasks):
                    if task in pending:
                        task.cancel()
                        st.failed[self.image_ids[k]] = (
                            f"{self.image_ids[k]}: not loaded within the {timeout:g} s load timeout")
                    elif not task.cancelled() and not self.loaded_mask[k]:
                        exc = task.exception()
                        if exc is not None:
                            st.failed[self.image_ids[k]] = str(as_load_error(self.image_ids[k],
                                                                             exc))
            for k in range(len(self.image_ids)):  # never a slice of zeros passed off as loaded
                if not self.loaded_mask[k] and self.image_ids[k] not in st.failed:
                    st.failed[self.image_ids[k]] = f"{self.image_ids[k]}: not loaded"
        except asyncio.CancelledError:
            st.cancelled = True
            raise
        finally:
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            st.end()
            self._stage = None
            self._drop_pieces()
            self._scope.cache.unpin(self.volume_id, "loading")
        if st.failed:
            st.loaded = False
            events.trigger(Events.IMAGE_VOLUME_LOADING_COMPLETED, volume_id=self.volume_id,
                           volume=self, failed=dict(st.failed))
            raise VolumeLoadError(self.volume_id, st.failed, st.total)
        if self._spacing == "resample" and not self.geometry.regular:
            await runtime.to_thread(self._resample)
        return self._completed()

    async def _fast_frames(self, todo: list[int],
                           on_progress: Callable[[VolumeProgress], Any] | None) -> list[int]:
        """The batched path (local files here, a GPU volume has its own); returns the frames
        left for per-frame requests."""
        from .batched import load_runs

        return await load_runs(self, todo, on_progress)

    def _landed(self, ks: list[int], on_progress: Callable[[VolumeProgress], Any] | None) -> None:
        """Frames a batch wrote into their slices: mark them and report each (loop thread)."""
        st = self.status
        for k in ks:
            self.loaded_mask[k] = True
            st.frames_loaded += 1
            self._progress(k, None, on_progress)

    async def _bulk(self, image_ids: list[str],
                    on_progress: Callable[[VolumeProgress], Any] | None) -> None:
        """Let the scheme's bulk retriever (one request for a whole series) deliver what it can."""
        schemes = {scheme_of(i) for i in image_ids}
        fn = bulk_retrievers.get(schemes.pop()) if len(schemes) == 1 else None
        if fn is None or self.retrieve != "auto":
            return

        def deliver(image_id: str, image: Image | None) -> None:
            k = self._index.get(image_id)
            if k is None or self.loaded_mask[k]:
                return
            try:
                if image is None:  # decoded into the slice that slot() gave
                    self._written(k)
                else:
                    self._accept(k, image)
            except (VolumeError, ImageLoadError):
                return  # the frame request will report it
            self.status.bulk_frames += 1
            self._progress(k, None, on_progress)

        def slot(image_id: str) -> np.ndarray | None:
            k = self._index.get(image_id)
            return None if k is None or self.loaded_mask[k] else self._slot(k)

        kwargs = call_kwargs(fn, {**self.options, "slots": slot})
        try:
            await self._scope.pools.run(
                lambda: fn(image_ids, deliver, **kwargs), self.request_type, self.priority,
                {"id": self.volume_id, "type": "volume", "volume_id": self.volume_id},
            )
        except Exception as exc:  # frame requests follow and report per-frame errors
            log.info("%s: bulk retrieval failed (%s); loading frame by frame", self.volume_id, exc)

    async def _frame(self, k: int, on_progress: Callable[[VolumeProgress], Any] | None,
                     priority: float = 0) -> None:
        image_id = self.image_ids[k]
        error: str | None = None
        try:
            loader = image_loaders.resolve(image_id)
            opts = dict(self.options)
            image = await self._scope.pools.run(
                lambda: run_loader(loader, image_id, opts),
                self.request_type,
                self.priority + priority,
                {"id": image_id, "type": "volume", "volume_id": self.volume_id},
            )
            self._accept(k, image)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # one frame's failure never stops the others
            err = as_load_error(image_id, exc)
            error = str(err)
            self.status.failed[image_id] = error
            events.trigger(Events.IMAGE_LOAD_FAILED, image_id=image_id, error=err,
                           volume_id=self.volume_id)
        self._progress(k, error, on_progress)

    def _progress(self, k: int, error: str | None,
                  on_progress: Callable[[VolumeProgress], Any] | None,
                  quality: SliceStatus = SliceStatus.FINAL) -> None:
        image_id = self.image_ids[k]
        st = self.status
        if error is not None:
            quality = SliceStatus(self.slice_status[k])  # what it still shows
        events.trigger(Events.IMAGE_VOLUME_MODIFIED, volume_id=self.volume_id, image_id=image_id,
                       index=k, frames_loaded=st.frames_loaded, total=st.total, error=error,
                       stage=self._stage, quality=quality)
        if on_progress is not None:
            try:
                on_progress(VolumeProgress(self.volume_id, image_id, k, st.frames_loaded,
                                           st.total, len(st.failed), error, self._stage, quality))
            except BaseException:  # even SystemExit: it would stop the shared loop
                log.exception("on_progress callback raised; ignored")

    def _completed(self) -> StreamingImageVolume:
        self.status.loaded = True
        events.trigger(Events.IMAGE_VOLUME_LOADING_COMPLETED, volume_id=self.volume_id,
                       volume=self, failed={})
        events.trigger(Events.VOLUME_LOADED, volume_id=self.volume_id, volume=self)
        return self

    def _accept(self, k: int, image: Any) -> None:
        self._write(k, image)
        self._written(k)

    def _written(self, k: int) -> None:
        """Slice ``k`` holds its final pixels: mark it loaded (loop thread)."""
        self.loaded_mask[k] = True
        self.status.frames_loaded += 1
        self.status.failed.pop(self.image_ids[k], None)  # an earlier try of this load failed

    def _slot(self, k: int) -> np.ndarray | None:
        """The slice a worker thread may decode frame ``k`` straight into (distinct slices need
        no lock), or None where frames change on their way in (decimated, on a GPU)."""
        return self.scalar_data[k]

    def _write(self, k: int, image: Any) -> None:
        """Copy one decoded frame into its slice (on the loop thread: no locking needed)."""
        if not isinstance(image, Image):
            raise VolumeError(f"{self.image_ids[k]}: loader returned {type(image).__name__}")
        px = self._frame_pixels(image)
        want = self.scalar_data.shape[1:]
        if px.shape != want:
            raise VolumeError(f"{image.image_id}: frame shape {px.shape} does not match the "
                              f"volume's {want}", [image.image_id])
        dtype = self.scalar_data.dtype
        if not np.can_cast(px.dtype, dtype) and not _fits(dtype, image):
            raise PixelRangeError(image.image_id, f"values {image.min_pixel_value:g}.."
                                  f"{image.max_pixel_value:g} ({px.dtype}) do not fit the volume's "
                                  f"{dtype}, the dtype its headers imply")
        self._store(k, px)

    def _frame_pixels(self, image: Image) -> np.ndarray:
        """The pixels of a frame as they go into a slice (a decimated volume subsamples)."""
        return image.get_pixel_data()

    def _store(self, k: int, px: np.ndarray) -> None:
        self.scalar_data[k] = px

    def _resample(self) -> None:
        target = regular_grid(self.geometry)
        self.scalar_data = resample_slices(self.scalar_data, self.geometry.offsets, target.offsets)
        target.image_ids = []
        self.acquired_geometry = self.geometry
        self.geometry = target
        self.loaded_mask = np.ones(target.shape[0], dtype=bool)

    # -- output ------------------------------------------------------------------------------
    def to_torch(self, dtype: Any = None) -> Any:
        """The array as a torch tensor sharing its memory (no copy) when its dtype stays;
        uint16/32/64, which torch cannot compute on, become float32 unless ``dtype`` is given."""
        return convert.to_torch(self, dtype)

    def to_numpy(self) -> np.ndarray:
        """The array in host memory (the array itself on the CPU; a copy from a GPU)."""
        return self.scalar_data

    def to_nifti(self) -> Any:
        from .export import to_nifti

        return to_nifti(self.to_numpy(), self.geometry)

    def save(self, path: Any, *, allow_partial: bool = False, allow_lossy: bool = False) -> Any:
        """Write ``.nii``/``.nii.gz`` (RAS affine), ``.npy`` (array) or ``.npz`` (array+affine).

        A volume with slices not loaded raises ``VolumeError``: zeros must not pass for data;
        nor may a staged load's lossy or neighbour-filled slices pass for final ones.
        ``allow_partial=True`` (slices missing) or ``allow_lossy=True`` (slices lossy or filled)
        writes it anyway, with the per-slice mask beside it (``<name>.mask.npy``, True where
        final)."""
        from .export import save_partial, save_volume

        status = self.slice_status
        missing = int(np.count_nonzero(status == SliceStatus.NONE))
        standin = (status > SliceStatus.NONE) & (status < SliceStatus.FINAL)
        stand_ins = int(np.count_nonzero(standin))
        if missing and not allow_partial:
            raise VolumeError(
                f"{self.volume_id}: {missing} of {len(status)} slices are not loaded; "
                "load() again, or save(..., allow_partial=True) to write it with its mask",
                [i for i, s in zip(self.image_ids, status) if s == SliceStatus.NONE])
        if stand_ins and not allow_lossy:
            raise VolumeError(
                f"{self.volume_id}: {stand_ins} of {len(status)} slices are lossy or copies of a "
                "neighbour (a staged load not finished); load() again, or save(..., "
                "allow_lossy=True) to write them with the mask of final slices",
                [i for i, s in zip(self.image_ids, standin) if s])
        out = save_volume(self.to_numpy(), self.geometry, path)
        if missing or stand_ins:
            save_partial(out, status == SliceStatus.FINAL)
        return out

    # -- interop: numpy, torch, SimpleITK, MONAI, TorchIO (volumes/convert.py), notebooks ------
    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return as_array(self.scalar_data, dtype, copy)

    def to_sitk(self) -> Any:
        return convert.to_sitk(self)

    def to_metatensor(self, *, channel_first: bool = True, dtype: Any = None) -> Any:
        return convert.to_metatensor(self, channel_first=channel_first, dtype=dtype)

    def to_torchio(self, *, label: bool = False, dtype: Any = None) -> Any:
        """A TorchIO image; a ``label`` map keeps integers (int32 unless ``dtype``)."""
        return convert.to_torchio(self, label=label, dtype=dtype)

    @classmethod
    def from_array(cls, array: Any, affine: Any = None, **kwargs: Any) -> StreamingImageVolume:
        """See :func:`medstream.interop.volume_from_array`."""
        return hooks.factory("array")(array, affine, **kwargs)  # type: ignore[no-any-return]

    @classmethod
    def from_sitk(cls, image: Any, **kwargs: Any) -> StreamingImageVolume:
        """See :func:`medstream.interop.volume_from_sitk`."""
        return hooks.factory("sitk")(image, **kwargs)  # type: ignore[no-any-return]

    @classmethod
    def from_nifti(cls, image: Any, **kwargs: Any) -> Any:
        """See :func:`medstream.interop.volume_from_nifti`."""
        return hooks.factory("nifti")(image, **kwargs)

    def resample_to(self, target: Any, *, fill: float = 0.0, nearest: bool = False) -> Any:
        """This volume's values on ``target``'s grid (a volume or a ``VolumeGeometry``), by world
        coordinates: trilinear (float32), or ``nearest`` for labels; ``fill`` outside. A dose
        grid on its CT: ``dose.resample_to(ct)``."""
        from .resample import resample_array

        if not self.status.loaded:
            self.load().result()
        geometry = getattr(target, "geometry", target)
        data = resample_array(np.asarray(self.scalar_data), self.geometry, geometry, fill, nearest)
        return hooks.factory("array")(data, geometry, cache=False)

    def _repr_html_(self) -> str:
        return hooks.html("volume", self)


class NiftiVolume(StreamingImageVolume):
    """A NIfTI file as a volume: one read and scale in the worker pool, then per-slice events
    (stages do not apply: the file is read whole)."""

    async def _run(self, signal: CancelSignal, on_progress: Callable[[VolumeProgress], Any] | None,
                   order: Order, timeout: float | None = None,
                   plan: Sequence[Stage] | None = None) -> StreamingImageVolume:
        from ..loaders.nifti import open_nifti, parse_id, read_volume

        st = self.status
        st.begin()

        async def read() -> np.ndarray:
            data = await open_nifti(self.volume_id, **self.options)
            t = parse_id(self.volume_id)[1].get("volume", 0)
            return await runtime.to_thread(read_volume, data, t)

        try:
            try:
                arr = await asyncio.wait_for(read(), timeout)
            except asyncio.TimeoutError:
                raise VolumeError(f"not loaded within the {timeout:g} s load timeout") from None
            if arr.dtype != self.scalar_data.dtype:
                self.scalar_data = np.empty(arr.shape, dtype=arr.dtype)
            await runtime.to_thread(np.copyto, self.scalar_data, arr)
        except asyncio.CancelledError:
            st.cancelled = True
            raise
        except Exception as exc:
            st.failed = {i: str(as_load_error(self.volume_id, exc)) for i in self.image_ids}
            raise VolumeLoadError(self.volume_id, st.failed, st.total) from exc
        finally:
            st.end()
        self.loaded_mask[:] = True
        st.frames_loaded = st.total
        for k in load_order(st.total, order):
            self._progress(k, None, on_progress)
        return self._completed()


async def nifti_volume_loader(volume_id: str, **options: Any) -> NiftiVolume:
    """The volume of a ``nifti:`` ID (geometry from the header); ``load()`` reads and scales."""
    from ..loaders.nifti import open_nifti

    http = {k: v for k, v in options.items() if k not in ("signal", "image_ids")}
    data = await open_nifti(volume_id, **http)
    dtype = np.result_type(data.image.get_data_dtype(), np.float32) if not (
        float(data.slope).is_integer() and float(data.inter).is_integer()) else np.dtype(
        data.image.get_data_dtype())
    if dtype.kind not in "iuf":
        raise VolumeError(f"{volume_id}: unsupported NIfTI data type {dtype}")
    return NiftiVolume(volume_id, data.geometry, np.dtype(dtype), options=http)


def allocate_volume(volume_id: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The volume's one array, after checking its size against ``max_volume_bytes``: a header
    claiming a huge volume gets a ``ResourceLimitError``, never numpy's ``MemoryError``."""
    from ..errors import ResourceLimitError
    from ..limits import check_size, limits

    nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    check_size(volume_id, f"volume {'x'.join(map(str, shape))} {np.dtype(dtype)}", nbytes,
               limits().max_volume_bytes)
    try:
        return np.zeros(shape, dtype=dtype)
    except MemoryError:
        raise ResourceLimitError(volume_id, "volume array", nbytes, nbytes,
                                 "the allocation failed") from None


# -- the streaming volume loader ---------------------------------------------------------------
#: The volume class per device; the GPU package adds "cuda" when its device check first passes.
volume_classes: dict[str, type[StreamingImageVolume]] = {"cpu": StreamingImageVolume}
#: ``fn(volume_id, geometry, dtype, decimate, **kwargs)``: the volume of ``decimate=`` (from
#: ``volumes/decimate.py``, registered by the package).
decimated_volume: list[Callable[..., StreamingImageVolume]] = []


def slice_modules(image_id: str) -> dict[str, Any] | None:
    mods = {name: metadata.get(name, image_id) for name in _MODULES}
    return mods if mods["imagePlaneModule"] or mods["imagePixelModule"] else None


async def fill_missing_metadata(image_ids: list[str], options: dict[str, Any]) -> None:
    """IDs whose scheme has no cheap metadata path: load the image once to learn it."""
    missing = [i for i in image_ids if slice_modules(i) is None]
    if not missing:
        return

    async def one(image_id: str) -> None:
        loader = image_loaders.resolve(image_id)
        await current_pools().run(lambda: run_loader(loader, image_id, dict(options)),
                                RequestType.PREFETCH, 0, {"id": image_id, "type": "metadata"})

    results = await asyncio.gather(*(one(i) for i in missing), return_exceptions=True)
    for image_id, res in zip(missing, results):
        if isinstance(res, BaseException) and not isinstance(res, asyncio.CancelledError):
            raise as_load_error(image_id, res)


def unsplit_mosaic(modules: dict[str, Any] | None) -> bool:
    """Whether these are the modules of a whole mosaic image (not one of its tiles)."""
    if not modules or modules.get("mosaicModule"):
        return False
    kinds = (modules.get("generalImageModule") or {}).get("image_type") or ()
    return bool({str(t).upper() for t in kinds} & {"MOSAIC", "VFRAME"})


#: scheme -> ``async fn(image_id, **options)``: the tile IDs of a whole mosaic image given as one
#: ID (their modules recorded), or None where the source cannot split it.
mosaic_expanders: dict[str, Callable[..., Any]] = {}


async def expand_mosaics(ids: list[str], options: dict[str, Any],
                         ) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """(IDs, their slice modules): each whole mosaic replaced by its tiles where its scheme
    can split it. The modules are looked up once here, for the caller too."""
    modules = {i: slice_modules(i) or {} for i in ids}

    async def one(image_id: str) -> list[str]:
        fn = mosaic_expanders.get(scheme_of(image_id))
        if fn is None or not unsplit_mosaic(modules[image_id]):
            return [image_id]
        tiles = await fn(image_id, **call_kwargs(fn, dict(options)))
        return list(tiles) if tiles else [image_id]

    if not any(unsplit_mosaic(m) for m in modules.values()):
        return ids, modules
    expanded = [t for tiles in await asyncio.gather(*(one(i) for i in ids)) for t in tiles]
    return expanded, {i: modules.get(i) or slice_modules(i) or {} for i in expanded}


def _refuse_unsplit_mosaics(volume_id: str, modules: dict[str, dict[str, Any]]) -> None:
    """A mosaic that reached here whole (a source without tile splitting) is many slices
    posing as one: refuse it rather than build a one-slice volume with a meaningless affine."""
    whole = [i for i, m in modules.items() if unsplit_mosaic(m)]
    if whole:
        raise GeometryError(f"{volume_id}: {len(whole)} mosaic image(s) (MOSAIC/VFRAME) were not "
                            "split into slices: their tiles could not be placed (a MosaicError "
                            "says why when the image is loaded)", whole[:4])


async def streaming_volume_loader(
    volume_id: str,
    image_ids: Sequence[str] | None = None,
    *,
    spacing: SpacingPolicy = "raise",
    tilt: TiltPolicy = "shear",
    prescale: bool = True,
    request_type: RequestType | str = RequestType.PREFETCH,
    priority: float = 0,
    retrieve: Retrieve = "auto",
    device: str = "cpu",
    decimate: Any = None,
    **options: Any,
) -> StreamingImageVolume:
    """Build the volume from its images' metadata (pixels are loaded by ``volume.load()``).

    ``device="cuda"``: the array lives in GPU memory and frames are decoded there in batches
    (``medstream.gpu``). ``decimate=(kx, ky, kz)``: every kz-th slice, subsampled in-plane
    (``volumes/decimate.py``)."""
    cls: type[StreamingImageVolume] = StreamingImageVolume
    if decimate is not None and device != "cpu":
        raise VolumeError(f"{volume_id}: decimate= is for CPU volumes")
    if device != "cpu":
        cls = volume_classes[hooks.check_device(device)]
    if not image_ids:
        raise VolumeError(f"{volume_id}: no image_ids given for a streaming volume")
    ids = list(dict.fromkeys(image_ids))
    options = {k: v for k, v in options.items() if k != "signal"}
    await metadata.preload(ids, **options)
    await fill_missing_metadata(ids, dict(options, prescale=prescale))
    ids, modules = await expand_mosaics(ids, options)
    _refuse_unsplit_mosaics(volume_id, modules)
    slices = [SliceInfo.from_modules(i, modules[i]) for i in ids]
    try:
        geometry = compute_geometry(slices, spacing=spacing, tilt=tilt)
    except GeometryError as exc:
        raise GeometryError(f"{volume_id}: {exc}", exc.image_ids) from None
    ordered = [modules[i] for i in geometry.image_ids]
    pixel = ordered[0].get("imagePixelModule") or {}
    color = (pixel.get("samples_per_pixel") or 1) > 1 or pixel.get(
        "photometric_interpretation") == "PALETTE COLOR"
    kwargs: dict[str, Any] = dict(
        color=color, options=dict(options, prescale=prescale), spacing=spacing,
        request_type=request_type, priority=priority, retrieve=retrieve)
    dtype = volume_dtype(ordered, prescale)
    if decimate is not None:
        if spacing == "resample" and not geometry.regular:
            raise VolumeError(f"{volume_id}: decimate= needs a regular grid; not with "
                              "spacing='resample' on irregular slices")
        volume = decimated_volume[0](volume_id, geometry, dtype, decimate, **kwargs)
    else:
        volume = cls(volume_id, geometry, dtype, **kwargs)
    volume.metadata = ordered[0]
    return volume

