"""The GPU volume: one CuPy array, filled by batched nvImageCodec decodes straight from files.

Why batches: nvImageCodec decodes a list of codestreams far faster than one at a time (its GPU
work overlaps and its per-call cost is paid once). So local DICOM frames whose header read left a
``PixelLocator`` are read in runs (a small first run, for a fast first slice), compressed ones
decoded on the GPU into their slices, uncompressed ones copied up from pinned host memory, and
the modality LUT applied on the GPU (``kernels``). Events, progress, cancel, timeouts and failure
lists are the CPU volume's: everything the batch path does not take (other schemes, colour,
RLE, JPEG-LS, frames the GPU failed to decode) goes through the per-frame CPU path and is
uploaded, counted in ``status.cpu_fallback_frames``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.codestream import check_codestream
from ..codecs.frame import FrameInfo
from ..core.runtime import runtime
from ..dicom.header import PixelLocator, locators
from ..dicom.part10 import frame_payload
from ..dicom.store import module_store
from ..loaders.dicomfile import SCHEME, parse_image_id
from ..volumes.geometry import VolumeGeometry, regular_grid, resample_slices
from ..volumes.streaming import (
    StreamingImageVolume,
    VolumeLoadStatus,
    VolumeProgress,
    volume_classes,
)
from . import decode, kernels
from .backend import GpuBackend, GpuMemoryError, require_gpu

log = logging.getLogger("medstream.gpu")

RAMP = (4, 32)  # the first runs are short, so the first slices land early and the pipeline fills
BATCH = 128  # compressed frames per run afterwards (decoded in place: no staging)
NATIVE_BATCH = 64  # uncompressed frames per run: bounds the pinned + device staging (32 MiB each)
READ_CHUNKS = 4  # reader tasks per run (file reads release the GIL; fewer tasks, less overhead)
_NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_readers = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="medstream-gpu-read")
# One thread drives the GPU: one nvImageCodec decoder (costly to create) and ordered batches.
_gpu_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="medstream-gpu")


def _chunked(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``[fn(x) for x in items]`` in a few reader threads, each taking a contiguous run."""
    size = max(8, -(-len(items) // READ_CHUNKS))
    runs = [items[i:i + size] for i in range(0, len(items), size)]
    if len(runs) == 1:
        return [fn(x) for x in runs[0]]
    return [r for part in _readers.map(lambda run: [fn(x) for x in run], runs) for r in part]


@dataclass
class GpuVolumeLoadStatus(VolumeLoadStatus):
    gpu_frames: int = 0  # decoded (or uploaded) by the batched GPU path
    cpu_fallback_frames: int = 0  # decoded on the CPU, then uploaded, frame by frame
    batches: int = 0
    decoded_in_place: bool | None = None  # nvImageCodec wrote straight into the volume's slices
    first_frame_seconds: float | None = None  # from load start to the first slice on the GPU


@dataclass(frozen=True)
class _Frame:
    k: int  # slice index
    loc: PixelLocator
    native: bool
    mode: int  # kernels.MODE_*
    slope: float
    intercept: float


class GpuStreamingVolume(StreamingImageVolume):
    """A ``StreamingImageVolume`` whose ``scalar_data`` is a CuPy array on the GPU."""

    device = "cuda"

    def __init__(self, volume_id: str, geometry: VolumeGeometry, dtype: np.dtype,
                 **kwargs: Any) -> None:
        self._gpu: GpuBackend = require_gpu()
        options = dict(kwargs.pop("options", None) or {})
        self.gpu_batch = int(options.pop("gpu_batch", BATCH))  # not an image-loader option
        super().__init__(volume_id, geometry, dtype, options=options, **kwargs)
        self.status = GpuVolumeLoadStatus(total=len(self.image_ids))

    # -- memory ------------------------------------------------------------------------------
    def _allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """Check free GPU memory for the volume plus staging, then allocate once."""
        gpu = require_gpu()
        nbytes = int(np.prod(shape)) * dtype.itemsize
        frame = int(np.prod(shape[1:])) * 8  # int64-wide worst case for a staging frame
        need = nbytes + 2 * BATCH * frame + (64 << 20)
        free = gpu.free_bytes()
        if need > free:
            raise GpuMemoryError(
                f"{self.volume_id}: the volume needs {nbytes / 2**20:.0f} MiB of GPU memory "
                f"(+ {(need - nbytes) / 2**20:.0f} MiB staging), only {free / 2**20:.0f} MiB are "
                "free; load it with device='cpu' or free GPU memory")
        with gpu.cupy.cuda.Device(gpu.device_id):
            return gpu.cupy.zeros(shape, dtype=dtype)

    def _store(self, k: int, px: np.ndarray) -> None:
        """A frame decoded on the CPU (fallback, DICOMweb): upload it into its slice."""
        self.scalar_data[k] = self._gpu.cupy.asarray(px)

    def _accept(self, k: int, image: Any) -> None:
        super()._accept(k, image)
        self.status.cpu_fallback_frames += 1  # type: ignore[attr-defined]

    def _slot(self, k: int) -> np.ndarray | None:
        return None  # a device slice: CPU frames are uploaded by _store

    # -- the batched path --------------------------------------------------------------------
    def _plan(self, k: int) -> _Frame | None:
        """How slice ``k`` can take the batched path, or None for the per-frame CPU path."""
        image_id = self.image_ids[k]
        if not image_id.startswith(SCHEME + ":"):
            return None
        try:
            path, frame = parse_image_id(image_id)
        except Exception:
            return None
        loc, modules = locators.get(path), module_store.get_modules(image_id)
        if loc is None or modules is None or frame not in (None, 1) or self.color:
            return None
        info: FrameInfo = loc.info
        native = info.transfer_syntax_uid in _NATIVE
        if (info.number_of_frames != 1 or info.samples_per_pixel != 1 or info.float_pixels
                or info.bits_allocated not in (8, 16)
                or info.photometric_interpretation not in ("MONOCHROME1", "MONOCHROME2")):
            return None
        if not native and (info.transfer_syntax_uid not in decode.GPU_SYNTAXES or (
                info.transfer_syntax_uid == decode.JPEG_BASELINE and info.bits_allocated != 8)):
            return None
        if native and (loc.length is None or loc.length < info.frame_nbytes()):
            return None  # let the CPU path report the short pixel data
        lut = modules.get("modalityLutModule") or {}
        if lut.get("has_modality_lut_sequence"):
            return None
        slope = float(lut["rescale_slope"]) if lut.get("rescale_slope") is not None else 1.0
        inter = float(lut["rescale_intercept"]) if lut.get("rescale_intercept") is not None else 0.0
        if not self.options.get("prescale", True) or (slope == 1 and inter == 0):
            mode = kernels.MODE_COPY
        elif slope.is_integer() and inter.is_integer():
            mode = kernels.MODE_INT
        else:
            mode = kernels.MODE_FLOAT
        return _Frame(k, loc, native, mode, slope, inter)

    async def _fast_frames(self, todo: list[int],
                           on_progress: Callable[[VolumeProgress], Any] | None) -> list[int]:
        planned = [(k, self._plan(k)) for k in todo]
        rest = [k for k, p in planned if p is None]
        frames = [p for _, p in planned if p is not None]
        # uncompressed and compressed frames batch separately (different staging)
        groups = [[f for f in frames if f.native], [f for f in frames if not f.native]]
        batches: list[list[_Frame]] = []
        for group in groups:
            most = self.gpu_batch
            if group and group[0].native:
                most = min(most, NATIVE_BATCH)
            i = 0
            for size in (*RAMP, *[most] * len(group)):
                if i >= len(group):
                    break
                size = min(size, most)
                batches.append(group[i:i + size])
                i += size
        if not batches:
            return rest
        loop = asyncio.get_running_loop()
        stream = self._gpu.cupy.cuda.Stream(non_blocking=True)
        pinned = [None, None]  # two host staging buffers: read one while the other uploads
        reads: list[asyncio.Future[Any]] = []

        def read(i: int) -> asyncio.Future[Any]:
            return loop.run_in_executor(runtime.executor, self._read_batch, batches[i], pinned, i % 2)

        try:
            reads.append(read(0))
            for i, batch in enumerate(batches):
                payload = await reads[i]
                if i + 1 < len(batches):
                    reads.append(read(i + 1))
                try:
                    done, failed = await loop.run_in_executor(
                        _gpu_thread, self._gpu_batch, batch, payload, stream)
                except Exception:  # a GPU/driver failure: these frames take the CPU path
                    log.warning("%s: GPU batch failed; decoding it on the CPU", self.volume_id,
                                exc_info=True)
                    done, failed = [], [f.k for f in batch]
                rest.extend(failed)
                self._landed(done, on_progress)
        finally:
            for r in reads:
                r.cancel()
        return rest

    def _landed(self, ks: list[int], on_progress: Callable[[VolumeProgress], Any] | None) -> None:
        st: GpuVolumeLoadStatus = self.status  # type: ignore[assignment]
        if ks and st.first_frame_seconds is None and st.started is not None:
            st.first_frame_seconds = time.perf_counter() - st.started
        st.batches += 1
        for k in ks:
            self.loaded_mask[k] = True
            st.frames_loaded += 1
            st.gpu_frames += 1
            self._progress(k, None, on_progress)

    def _read_batch(self, batch: list[_Frame], pinned: list[Any], slot: int) -> Any:
        """Read a batch's bytes (threads: file reads release the GIL). Compressed: one payload
        per frame (None if unreadable); uncompressed: into a pinned host buffer."""
        if not batch[0].native:
            def one(f: _Frame) -> bytes | None:
                try:
                    if not f.loc.still_valid():
                        return None
                    raw = f.loc.read()
                    frame = decode.single_frame(raw)
                    if frame is None:
                        data, _ = frame_payload(self.image_ids[f.k], f.loc.info, raw, 0)
                        frame = bytes(data)
                    check_codestream(self.image_ids[f.k], frame, f.loc.info)  # before nvImageCodec
                    return frame
                except Exception:
                    return None  # the CPU path reports why
            return _chunked(one, batch)
        info = batch[0].loc.info
        same = (info.stored_dtype, info.bits_stored, info.rows, info.columns)
        nbytes = info.frame_nbytes()
        need = len(batch) * nbytes
        buf = pinned[slot]
        if buf is None or buf.nbytes < need:
            mem = self._gpu.cupy.cuda.alloc_pinned_memory(max(need, BATCH * nbytes))
            buf = pinned[slot] = np.frombuffer(mem, dtype=np.uint8)

        def one_native(j_f: tuple[int, _Frame]) -> bool:
            j, f = j_f
            try:
                i = f.loc.info
                if (i.stored_dtype, i.bits_stored, i.rows, i.columns) != same or f.loc.remote \
                        or not f.loc.still_valid():
                    return False
                with open(f.loc.path, "rb") as fh:
                    fh.seek(f.loc.offset)
                    return fh.readinto(memoryview(buf)[j * nbytes:(j + 1) * nbytes]) == nbytes
            except OSError:
                return False
        ok = _chunked(one_native, list(enumerate(batch)))
        return buf[:need], ok

    def _gpu_batch(self, batch: list[_Frame], payload: Any,
                   stream: Any) -> tuple[list[int], list[int]]:
        """Decode/upload one batch into its slices (worker thread); (landed, for the CPU path)."""
        cupy = self._gpu.cupy
        st: GpuVolumeLoadStatus = self.status  # type: ignore[assignment]
        with cupy.cuda.Device(self._gpu.device_id), stream:
            if batch[0].native:
                host, ok = payload
                info = batch[0].loc.info
                src = cupy.empty((len(batch), info.rows, info.columns), dtype=info.stored_dtype)
                src.set(host.view(info.stored_dtype).reshape(src.shape), stream=stream)
                good = [j for j in range(len(batch)) if ok[j]]
                ubits, sbits = _conform_bits(info, signed_codestream=bool(info.pixel_representation))
                unfit = self._finish(src, [(j, batch[j]) for j in good], ubits, sbits, stream)
                return ([batch[j].k for j in good if batch[j].k not in unfit],
                        [batch[j].k for j in range(len(batch)) if not ok[j]] + unfit)
            return self._compressed(batch, payload, stream, st)

    def _compressed(self, batch: list[_Frame], payloads: list[bytes | None], stream: Any,
                    st: GpuVolumeLoadStatus) -> tuple[list[int], list[int]]:
        cupy, nv = self._gpu.cupy, self._gpu.nvimgcodec
        rows, cols = self.scalar_data.shape[1:3]
        parsed = [decode.parse(nv, p) if p is not None else None for p in payloads]
        failed = [f.k for f, s in zip(batch, parsed)
                  if s is None or s.shape[:2] != (rows, cols) or s.shape[2] != 1]
        items = [(f, s) for f, s in zip(batch, parsed) if s is not None and f.k not in failed]
        landed: list[int] = []
        # one launch per kind of sample (a series is uniform; a mixed one is split)
        def kind(item: tuple[_Frame, Any]) -> tuple[Any, ...]:
            i = item[0].loc.info
            return item[1].dtype, i.pixel_representation, i.bits_stored, i.stored_dtype

        for key in dict.fromkeys(kind(it) for it in items):
            group = [it for it in items if kind(it) == key]
            dt = key[0]
            vol = self.scalar_data
            direct = dt.itemsize == vol.dtype.itemsize and len({s.precision for _, s in group}) == 1
            targets = [vol[f.k].view(dt) for f, _ in group] if direct else None
            arrays, in_place = decode.decode_batch(self._gpu, [s for _, s in group], stream, targets)
            st.decoded_in_place = decode.direct_mode()
            good = [(j, f) for j, ((f, _), a) in enumerate(zip(group, arrays)) if a is not None]
            failed += [f.k for (f, _), a in zip(group, arrays) if a is None]
            if not good:
                continue
            if in_place:
                src, pairs = vol.view(dt), [(f.k, f) for _, f in good]
            else:
                src = cupy.empty((len(group), rows, cols), dtype=dt)
                for j, _ in good:
                    decoded = arrays[j]
                    assert decoded is not None  # `good` holds only the decoded ones
                    src[j] = decoded.reshape(rows, cols)
                pairs = good
            info = group[0][0].loc.info
            ubits, sbits = _conform_bits(info, signed_codestream=dt.kind == "i")
            unfit = self._finish(src, pairs, ubits, sbits, stream)
            landed += [f.k for _, f in good if f.k not in unfit]
            failed += unfit
        return landed, failed

    def _finish(self, src: Any, pairs: list[tuple[int, _Frame]], ubits: int, sbits: int,
                stream: Any) -> list[int]:
        """Modality LUT from ``src`` slices into the volume's; then wait for the batch. Frames
        whose values do not fit the volume's dtype (the one their headers imply) are left out
        and returned, for the CPU path to report as ``PixelRangeError``, as it does itself."""
        cupy = self._gpu.cupy
        vol = self.scalar_data
        if pairs and vol.dtype.kind in "iu":
            modes = np.array([f.mode for _, f in pairs], dtype=np.int32)
            sidx = cupy.asarray(np.array([j for j, _ in pairs], dtype=np.int32))
            lo, hi = kernels.minmax(cupy, src, sidx, len(pairs), ubits, sbits, stream)
            slope = np.array([f.slope for _, f in pairs], dtype=np.float64)
            inter = np.array([f.intercept for _, f in pairs], dtype=np.float64)
            use = modes != kernels.MODE_COPY
            a, b = np.where(use, lo * slope + inter, lo), np.where(use, hi * slope + inter, hi)
            info = np.iinfo(vol.dtype)
            fits = (np.minimum(a, b) >= info.min) & (np.maximum(a, b) <= info.max) & (
                modes != kernels.MODE_FLOAT)
            unfit = [f.k for (_, f), ok in zip(pairs, fits) if not ok]
            pairs = [p for p, ok in zip(pairs, fits) if ok]
        else:
            unfit = []
        if not pairs:
            stream.synchronize()
            return unfit
        n = len(pairs)
        sidx = cupy.asarray(np.array([j for j, _ in pairs], dtype=np.int32))
        didx = cupy.asarray(np.array([f.k for _, f in pairs], dtype=np.int32))
        slope = np.array([f.slope for _, f in pairs], dtype=np.float64)
        inter = np.array([f.intercept for _, f in pairs], dtype=np.float64)
        mode = np.array([f.mode for _, f in pairs], dtype=np.int32)
        kernels.apply_lut(cupy, src, sidx, self.scalar_data, didx, n, ubits, sbits,
                          cupy.asarray(slope), cupy.asarray(inter), cupy.asarray(mode), stream)
        stream.synchronize()
        return unfit

    # -- host-side helpers -------------------------------------------------------------------
    def to_numpy(self) -> np.ndarray:
        """A host copy of the volume."""
        return self._gpu.cupy.asnumpy(self.scalar_data)

    def _resample(self) -> None:
        cupy = self._gpu.cupy
        target = regular_grid(self.geometry)
        host = resample_slices(self.to_numpy(), self.geometry.offsets, target.offsets)
        self.scalar_data = cupy.asarray(host)
        target.image_ids = []
        self.acquired_geometry = self.geometry
        self.geometry = target
        self.loaded_mask = np.ones(target.shape[0], dtype=bool)


def _conform_bits(info: Any, signed_codestream: bool) -> tuple[int, int]:
    """(mask to, sign-extend from) bits: unsigned samples keep only their BitsStored, signed
    ones are sign-extended from it, as the CPU decoders do after every decode."""
    if info.pixel_representation:
        return 0, info.bits_stored
    return info.bits_stored, 0


volume_classes["cuda"] = GpuStreamingVolume
