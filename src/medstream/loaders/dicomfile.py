"""``dicomfile:/path/file.dcm[?frame=N]`` — a local Part 10 file (frames are 1-based)."""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote

import numpy as np

from ..codecs.pixels import frame_to_image
from ..codecs.registry import decode_frame
from ..core.image import Image
from ..core.kept import KeptMap
from ..core.runtime import runtime
from ..dicom.fastheader import FastHeader, read_fast_header
from ..dicom.frames import number_of_frames
from ..dicom.header import PixelLocator, locators, read_header
from ..dicom.instance import header_sources, headers
from ..dicom.modules import build_modules
from ..dicom.mosaic import MosaicError, cut_tile, mosaic_layout, tile_modules
from ..dicom.part10 import (
    ParsedDicom,
    check_frame,
    decode_parsed_frame,
    decode_to_image,
    frame_payload,
    parse_part10,
)
from ..dicom.store import module_store
from ..errors import DicomParseError, ImageLoadError, MedstreamError
from ..storage import file_version, is_remote, local_path, storage

SCHEME = "dicomfile"


def parse_image_id(image_id: str) -> tuple[str, int | None]:
    """(path, 1-based frame or None)."""
    path, query = _split(image_id)
    return path, _query_int(image_id, query, "frame")


def tile_of(image_id: str) -> int | None:
    """The 1-based mosaic tile an ID names (``?tile=K``), or None."""
    return _query_int(image_id, _split(image_id)[1], "tile")


def _split(image_id: str) -> tuple[str, str]:
    rest = image_id[len(SCHEME) + 1 :] if image_id.startswith(SCHEME + ":") else image_id
    path, _, query = rest.partition("?")
    if path.startswith("//"):  # dicomfile:///abs/path (URL style)
        path = path[2:]
    return local_path(unquote(path)), query


def _query_int(image_id: str, query: str, name: str) -> int | None:
    values = parse_qs(query).get(name) if query else None
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError as exc:
        raise ImageLoadError(image_id, f"invalid {name} number {values[0]!r}") from exc


def image_id_for(path: str | os.PathLike[str], frame: int | None = None,
                 tile: int | None = None) -> str:
    """The ID of a file or object; "%", "?" and "#" in its name are escaped, so the name
    comes back whole from :func:`parse_image_id` (object keys may hold them)."""
    name = absolute(path).replace("%", "%25").replace("?", "%3F").replace("#", "%23")
    ident = f"{SCHEME}:{name}"
    if tile is not None:
        return f"{ident}?tile={tile}"
    return ident if frame is None else f"{ident}?frame={frame}"


def absolute(path: str | os.PathLike[str]) -> str:
    """An absolute local path, or a remote URL (``s3://...``) as it is."""
    name = local_path(os.fspath(path))
    return name if is_remote(name) else os.path.abspath(name)


class _ParsedFiles:
    """A few recently parsed multi-frame files and mosaics, so frame-by-frame (tile-by-tile)
    loads read and parse each file once, even when its frames are requested concurrently."""

    def __init__(self, max_bytes: int = 512 * 1024**2) -> None:
        self._lock = threading.Lock()
        self._items: KeptMap[tuple[str, int, int], ParsedDicom] = KeptMap(
            "parsed files", max_bytes=max_bytes, max_value_bytes=max_bytes)
        self._parsing: dict[tuple[str, int, int], threading.Lock] = {}

    def get(self, image_id: str, path: str, keep: bool = False) -> ParsedDicom:
        """Parse ``path`` (cached when multi-frame, or with ``keep`` for mosaics)."""
        remote = is_remote(path)
        try:
            key = (path, *file_version(path, image_id))
        except OSError:
            return parse_part10(image_id, path)  # reports the missing file under its ID
        with self._lock:
            gate = self._parsing.setdefault(key, threading.Lock())
        with gate:  # one parse per file at a time; the others wait and take the result
            hit = self._items.get(key)
            if hit is not None:
                return hit
            try:
                parsed = parse_part10(image_id, storage.read_all(image_id, path) if remote
                                      else path)
            finally:
                with self._lock:
                    self._parsing.pop(key, None)
            if keep or parsed.info.number_of_frames > 1:
                # a mosaic also keeps its decoded frame: counted twice
                self._items.put(key, parsed, nbytes=parsed.nbytes * (2 if keep else 1))
            return parsed

    def clear(self) -> None:
        self._items.clear()


parsed_files = _ParsedFiles()


def _fast_path(image_id: str, path: str, frame: int, prescale: bool) -> Image | None:
    """Decode from the bytes a header read located, skipping a second parse; None if unusable."""
    loc = locators.get(path)
    modules = module_store.get_modules(image_id)
    if loc is None or modules is None or not loc.still_valid():
        return None
    if modules["imagePixelModule"]["photometric_interpretation"] == "PALETTE COLOR" or modules[
        "modalityLutModule"
    ].get("has_modality_lut_sequence"):
        return None  # LUTs live in the dataset: take the full path
    info = loc.info
    check_frame(image_id, frame, info.number_of_frames)
    index = frame - 1
    if info.number_of_frames > 1:
        frame_bytes = info.rows * info.columns * info.samples_per_pixel * info.bits_allocated // 8
        if not info.native or info.bits_allocated < 8 or loc.length is None:
            return None  # the parsed-object cache serves multi-frame files frame by frame
        data: bytes | memoryview = loc.read(index * frame_bytes, frame_bytes)
        return decode_to_image(image_id, data, dataclasses.replace(info, number_of_frames=1),
                               modules, index=0, prescale=prescale)
    data, index = frame_payload(image_id, info, loc.read(), index)
    return decode_to_image(image_id, data, info, modules, index=index, prescale=prescale)


def load_sync(image_id: str, prescale: bool = True) -> Image:
    path, frame = parse_image_id(image_id)
    tile = tile_of(image_id)
    if tile is not None:
        return _load_tile(image_id, path, tile, prescale)
    if module_store.get_modules(image_id) is None:
        if is_remote(path):  # by ranges, with the bounded probe: never a whole non-DICOM object
            read_file_header(path)
        else:
            fast = _classic_header(path)
            if fast is not None:  # modules + pixel locator from the compact reader
                read_file_header(path, fast)
    image = _fast_path(image_id, path, frame or 1, prescale)
    if image is not None:
        return image
    parsed = parsed_files.get(image_id, path)
    return decode_parsed_frame(image_id, parsed, frame or 1, prescale)


def _classic_header(path: str) -> FastHeader | None:
    """The compact header of a regular local file it can read (then no pydicom parse is
    needed)."""
    try:
        return read_fast_header(path) if stat.S_ISREG(os.stat(path).st_mode) else None
    except OSError:
        return None


def _load_tile(image_id: str, path: str, tile: int, prescale: bool) -> Image:
    """One slice of a mosaic: the mosaic is decoded once (shared by its tiles), then cut."""
    modules = module_store.get_modules(image_id)
    if modules is None:
        read_file_header(path)
        modules = module_store.get_modules(image_id)
    mosaic = (modules or {}).get("mosaicModule")
    if modules is None or mosaic is None:
        raise ImageLoadError(image_id, f"{path} is not a mosaic with a tile {tile}")
    parsed = parsed_files.get(image_id, path, keep=True)
    return tile_image(image_id, parsed, modules, tile, prescale)


def tile_image(image_id: str, parsed: ParsedDicom, modules: dict[str, Any], tile: int,
               prescale: bool) -> Image:
    """Tile ``tile`` of a parsed mosaic as an image: the mosaic is decoded once (kept with the
    parsed object, shared by its tiles), then the tile is cut and converted with its modules."""
    raw, photometric = mosaic_pixels(image_id, parsed)
    part = cut_tile(raw, modules["mosaicModule"], tile)
    info = dataclasses.replace(parsed.info, rows=part.shape[0], columns=part.shape[1])
    start = time.perf_counter()
    image = frame_to_image(image_id, np.ascontiguousarray(part), photometric, info, modules,
                           prescale=prescale, lut_source=parsed.dataset)
    image.decode_time_ms = (time.perf_counter() - start) * 1000.0
    return image


async def mosaic_tile_ids(image_id: str) -> list[str] | None:
    """The tile IDs of a mosaic file given as one ``dicomfile:`` ID (a list of files, not a
    folder scan), their modules recorded; None if it is not a mosaic that can be split."""
    path, frame = parse_image_id(image_id)
    if frame not in (None, 1) or tile_of(image_id) is not None:
        return None
    try:
        found, _ = await runtime.to_thread(read_file_modules, path)
    except ImageLoadError:
        return None
    tiles = [i for i in found if tile_of(i) is not None]
    return tiles or None


def mosaic_pixels(image_id: str, parsed: ParsedDicom) -> tuple[np.ndarray, str]:
    """The decoded (stored-value) mosaic of a parsed file, decoded once and kept with it."""
    with parsed.lock:
        if parsed.decoded is None:
            data, index = parsed.frame_payload(image_id, 0)
            parsed.decoded = decode_frame(image_id, data, parsed.info, index)
        return parsed.decoded


def read_file_modules(path: str, fast: FastHeader | None = None,
                      ) -> tuple[dict[str, dict[str, Any]], PixelLocator | None]:
    """Header-read one file: the modules of each of its image IDs (one per frame of a
    multi-frame object, one per tile of a mosaic), also recorded in the metadata store, and the
    pixel locator. The caller gets the modules themselves: the store may evict them under a
    small cache budget before a scan is done with them. ``fast``: its compact header, when the
    caller read it already."""
    path = absolute(path)
    base = image_id_for(path)
    found: dict[str, dict[str, Any]] = {}
    try:  # pydicom converts elements lazily: a garbled one fails here, not in the parse
        ds, loc = read_header(base, path, fast)
        ts = str(ds.file_meta.TransferSyntaxUID)
        n = number_of_frames(base, ds)
        layout = mosaic_layout(base, ds)
        if layout is not None:
            whole = build_modules(ds, 0, ts)
            for k in range(1, layout.tiles + 1):
                found[image_id_for(path, tile=k)] = tile_modules(whole, layout, k)
            module_store.put(base, whole)
        else:
            ids = [base] if n == 1 else [image_id_for(path, k) for k in range(1, n + 1)]
            for k, ident in enumerate(ids):
                found[ident] = build_modules(ds, k, ts)
    except (NotImplementedError, ValueError, TypeError, KeyError, IndexError,
            OverflowError) as exc:
        raise DicomParseError(base, f"malformed header element ({type(exc).__name__}: "
                                    f"{exc})") from exc
    for ident, modules in found.items():
        module_store.put(ident, modules)
    if loc is not None:
        locators.put(loc)
    else:
        locators.discard(path)
    return found, loc


def read_file_header(path: str, fast: FastHeader | None = None,
                     ) -> tuple[list[str], PixelLocator | None]:
    """Header-read one file (see ``read_file_modules``): its image IDs and pixel locator."""
    found, loc = read_file_modules(path, fast)
    return list(found), loc


async def read_headers(paths: list[str]) -> dict[str, dict[str, dict[str, Any]] | ImageLoadError]:
    """Header-read many files: path -> its image IDs with their modules, or the error naming it.

    Parsing is pure Python and holds the GIL, so threads only contend: files are read in
    sequential chunks, a few chunks at a time on machines with many cores (for network storage).
    The heads of remote objects are fetched in batches, each batch's requests in flight at once.
    """
    import asyncio

    out: dict[str, dict[str, dict[str, Any]] | ImageLoadError] = {}

    def chunk(part: list[str]) -> None:
        for path in part:
            try:
                out[path] = read_file_modules(path)[0]
            except ImageLoadError as exc:
                out[path] = exc

    size = 32
    gate = asyncio.Semaphore(max(1, min(2, runtime.workers // 4)))  # more only fight over the GIL

    async def run(part: list[str]) -> None:
        async with gate:
            await runtime.to_thread(chunk, part)

    async def parse(part: list[str]) -> None:
        await asyncio.gather(*(run(part[i : i + size]) for i in range(0, len(part), size)))

    remote = [p for p in paths if is_remote(p)]
    for i in range(0, len(remote), 256):  # fetched together, parsed before the next batch
        batch = remote[i : i + 256]  # (the head cache holds about a thousand)
        failed = await runtime.to_thread(storage.prefetch_heads, batch)
        for path, exc in failed.items():
            out[path] = exc if isinstance(exc, ImageLoadError) else ImageLoadError(path, str(exc))
        await parse([p for p in batch if p not in failed])
    await parse([p for p in paths if not is_remote(p)])
    return out


async def preload_dicomfile_metadata(image_ids: list[str], **_: Any) -> None:
    """Header-read the files of ``image_ids`` whose modules are not known yet. Errors are left
    for each frame load to report under its own image ID."""
    paths = sorted({parse_image_id(i)[0] for i in image_ids if module_store.get_modules(i) is None})
    if paths:
        await read_headers(paths)


async def load_dicomfile(image_id: str, prescale: bool = True, **_: Any) -> Image:
    """Read and decode in the worker pool: the caller's loop is never blocked by file I/O."""
    return await runtime.to_thread(load_sync, image_id, prescale)


def file_header(image_id: str) -> Any:
    """The whole header (no pixel data) of a ``dicomfile:`` ID's file, kept a while
    (``metadata.get("instance", id)`` and keywords read it); None if unreadable."""
    path = parse_image_id(image_id)[0]
    remote = is_remote(path)

    def read_file() -> Any:
        import pydicom

        try:  # a remote object by ranges: its cached head, then more only if needed
            source: Any = storage.open(path, path) if remote else path
            return pydicom.dcmread(source, stop_before_pixels=True, force=True)
        except Exception:
            return None

    try:
        version, size = file_version(path)
    except (OSError, MedstreamError):
        return None
    return headers.get(f"{path}|{version}|{size}", read_file)


header_sources[SCHEME] = file_header


# -- mosaics held whole (WADO-URI objects, registered bytes): tiles named <ID>#tile=K ----------
TILE_MARK = "#tile="  # a mosaic's tile: medstream's own, never sent to the server


def split_tile(image_id: str) -> tuple[str, int | None]:
    """(the object's ID, the mosaic tile it names or None)."""
    base, mark, tile = image_id.partition(TILE_MARK)
    if not mark:
        return image_id, None
    if not tile.isdigit() or int(tile) < 1:
        raise ImageLoadError(image_id, f"bad tile number {tile!r}")
    return base, int(tile)


def record_tile_modules(object_id: str, parsed: ParsedDicom) -> dict[str, dict[str, Any]]:
    """The modules of each tile (``<object ID>#tile=K``) of a parsed mosaic object held whole
    (a WADO-URI object, registered bytes), recorded; {} for other objects."""
    base = split_tile(object_id)[0]
    try:
        layout = mosaic_layout(base, parsed.dataset)
    except MosaicError:
        return {}
    if layout is None:
        return {}
    ts = parsed.info.transfer_syntax_uid
    whole = build_modules(parsed.dataset, 0, ts)
    found = {f"{base}{TILE_MARK}{k}": tile_modules(whole, layout, k)
             for k in range(1, layout.tiles + 1)}
    for tile_id, modules in found.items():
        module_store.put(tile_id, modules)
    return found
