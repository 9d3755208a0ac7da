"""Batched loading of local-file frames into a volume: few tasks, not one per frame.

The per-frame path (a request, a task, a pool slot and a loader call for every slice) costs
Python time that holds the GIL, so it stops scaling past a few cores. Here a worker takes a run
of frames whose bytes a header read already located, reads and decodes each (codecs release
the GIL), applies the modality LUT and writes it straight into its slice; the loop then marks
the whole run loaded, with the usual per-frame events and progress. Decoding goes through the
same functions as a single image load, so the volume is identical to the per-frame one; any
frame this path cannot take, or that fails here, is left to the per-frame path, which reports
it under its own image ID.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..codecs.pixels import decode_native_into, read_native_into
from ..core.runtime import runtime
from ..dicom.header import PixelLocator, locators
from ..dicom.part10 import decode_to_image, frame_payload
from ..dicom.store import module_store

if TYPE_CHECKING:
    from .streaming import StreamingImageVolume, VolumeProgress

RAMP = (2, 8)  # the first runs are short, so the first slices land early
BATCH = 24


@dataclass(frozen=True)
class LocatedFrame:
    """A frame whose pixel bytes a header read located in a local file."""

    k: int  # slice index in the volume
    image_id: str
    loc: PixelLocator
    modules: dict[str, Any]


def locate(image_id: str, k: int) -> LocatedFrame | None:
    """Slice ``k`` as a located one-frame file, or None (other schemes, frames of multi-frame
    files, mosaic tiles, LUT data only the full dataset has)."""
    from ..core.registry import image_loaders
    from ..loaders.dicomfile import SCHEME, load_dicomfile, parse_image_id, tile_of

    if not image_id.startswith(SCHEME + ":"):
        return None
    try:  # a user's own loader for the scheme is honoured: frame by frame then
        if image_loaders.resolve(image_id) is not load_dicomfile:
            return None
    except Exception:
        return None
    try:
        path, frame = parse_image_id(image_id)
        if frame not in (None, 1) or tile_of(image_id) is not None:
            return None
    except Exception:
        return None
    loc, modules = locators.get(path), module_store.get_modules(image_id)
    if loc is None or modules is None or loc.info.number_of_frames != 1:
        return None
    pixel = modules.get("imagePixelModule") or {}
    if pixel.get("photometric_interpretation") == "PALETTE COLOR" or (
            modules.get("modalityLutModule") or {}).get("has_modality_lut_sequence"):
        return None
    return LocatedFrame(k, image_id, loc, modules)


def runs(frames: list[LocatedFrame], most: int = BATCH) -> list[list[LocatedFrame]]:
    """Consecutive runs: short ones first (the first slices land early), then ``most``."""
    out, i = [], 0
    for size in (*RAMP, *[most] * len(frames)):
        if i >= len(frames):
            break
        out.append(frames[i : i + min(size, most)])
        i += size
    return out


def _fetch_remote(run: list[LocatedFrame]) -> dict[int, bytes]:
    """The pixel bytes of a run's remote frames, all ranges in flight at once; {} on a failure
    (each frame then reports its own error on the per-frame path)."""
    from ..limits import limits
    from ..storage import storage

    remote = [f for f in run if f.loc.remote]
    spans = [(f.loc.path, *f.loc.span()) for f in remote]
    if not remote or sum(end - start for _, start, end in spans) > limits().max_bytes:
        return {}  # none, or more than one object's budget at once: frame by frame
    try:
        got = storage.read_ranges(remote[0].image_id, spans)
    except Exception:
        return {}
    return {f.k: data for f, data in zip(remote, got)}


def _decode_run(volume: StreamingImageVolume, run: list[LocatedFrame], prescale: bool,
                stop: threading.Event) -> tuple[list[int], list[int]]:
    """(landed, left to the per-frame path) for one run, in a worker thread."""
    done: list[int] = []
    rest: list[int] = []
    fetched = _fetch_remote(run)
    for f in run:
        if stop.is_set():
            rest.append(f.k)
            continue
        try:
            if not f.loc.still_valid():
                raise OSError("file changed since its header was read")
            raw = fetched.pop(f.k, None)
            slot = volume.scalar_data[f.k]  # distinct slices: no lock needed
            if raw is None and not f.loc.remote and read_native_into(
                    slot, f.loc.read_into, f.loc.info, f.modules, prescale):
                done.append(f.k)  # read from the file straight into its slice
                continue
            if raw is None:
                raw = f.loc.read()
            data, index = frame_payload(f.image_id, f.loc.info, raw, 0)
            if not decode_native_into(slot, data, index, f.loc.info, f.modules, prescale):
                image = decode_to_image(f.image_id, data, f.loc.info, f.modules, index=index,
                                        prescale=prescale)
                volume._write(f.k, image)
            done.append(f.k)
        except Exception:  # the per-frame path reports it under its image ID
            rest.append(f.k)
    return done, rest


async def load_runs(volume: StreamingImageVolume, todo: list[int],
                    on_progress: Callable[[VolumeProgress], Any] | None) -> list[int]:
    """Load what it can of ``todo`` in runs on the worker pool (as many at once as there are
    workers); returns the slices left for per-frame requests."""
    located = [(k, locate(volume.image_ids[k], k)) for k in todo]
    rest = [k for k, f in located if f is None]
    frames = [f for _, f in located if f is not None]
    if not frames:
        return rest
    prescale = bool(volume.options.get("prescale", True))
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    gate = asyncio.Semaphore(runtime.workers)

    working: list[concurrent.futures.Future[tuple[list[int], list[int]]]] = []

    async def one(run: list[LocatedFrame]) -> tuple[list[int], list[int]]:
        async with gate:
            if stop.is_set():
                return [], [f.k for f in run]
            job = runtime.executor.submit(_decode_run, volume, run, prescale, stop)
            working.append(job)
            return await asyncio.wrap_future(job, loop=loop)

    tasks = [asyncio.ensure_future(one(r)) for r in runs(frames)]
    try:
        for task in tasks:  # runs decode in parallel but land in load order (preview first)
            done, left = await task
            rest.extend(left)
            volume._landed(done, on_progress)
    finally:
        stop.set()  # a cancelled load: runs still in a thread stop at their next frame
        for t in tasks:
            t.cancel()
        # ...and the load ends only when they have: a thread still writing a slice (its raw
        # bytes, then the rescale in place) must not meet the next load writing the same one
        busy = [asyncio.wrap_future(j, loop=loop) for j in working if not j.done()]
        if busy:
            await asyncio.gather(*busy, return_exceptions=True)
    return rest
