"""``dicomfile:/path/file.dcm[?frame=N]`` — a local Part 10 file (frames are 1-based)."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, unquote

from ..core.image import Image
from ..core.runtime import runtime
from ..dicom.frames import number_of_frames
from ..dicom.header import PixelLocator, locators, read_header
from ..dicom.modules import build_modules
from ..dicom.part10 import (
    ParsedDicom,
    check_frame,
    decode_parsed_frame,
    decode_to_image,
    frame_payload,
    parse_part10,
)
from ..dicom.store import module_store
from ..errors import ImageLoadError

SCHEME = "dicomfile"


def parse_image_id(image_id: str) -> tuple[str, int | None]:
    rest = image_id[len(SCHEME) + 1 :] if image_id.startswith(SCHEME + ":") else image_id
    path, _, query = rest.partition("?")
    if path.startswith("//"):  # dicomfile:///abs/path (URL style)
        path = path[2:]
    frame = None
    if query:
        values = parse_qs(query).get("frame")
        if values:
            try:
                frame = int(values[0])
            except ValueError as exc:
                raise ImageLoadError(image_id, f"invalid frame number {values[0]!r}") from exc
    return unquote(path), frame


def image_id_for(path: str | os.PathLike[str], frame: int | None = None) -> str:
    ident = f"{SCHEME}:{os.path.abspath(os.fspath(path))}"
    return ident if frame is None else f"{ident}?frame={frame}"


class _ParsedFiles:
    """A few recently parsed multi-frame files, so frame-by-frame loads read the file once."""

    def __init__(self, max_bytes: int = 512 * 1024**2) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, int, int], ParsedDicom] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, image_id: str, path: str) -> ParsedDicom:
        try:
            st = os.stat(path)
        except OSError:
            st = None
        key = (path, st.st_mtime_ns, st.st_size) if st else None
        if key is not None:
            with self._lock:
                hit = self._items.get(key)
                if hit is not None:
                    self._items.move_to_end(key)
                    return hit
        parsed = parse_part10(image_id, path)
        if key is not None and parsed.info.number_of_frames > 1:
            with self._lock:
                self._items[key] = parsed
                self._bytes += parsed.nbytes
                while self._bytes > self._max and len(self._items) > 1:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= old.nbytes
        return parsed

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


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
    image = _fast_path(image_id, path, frame or 1, prescale)
    if image is not None:
        return image
    parsed = parsed_files.get(image_id, path)
    return decode_parsed_frame(image_id, parsed, frame or 1, prescale)


def read_file_header(path: str) -> tuple[list[str], PixelLocator | None]:
    """Header-read one file: record modules for each frame ID and the pixel locator.

    Returns the file's image IDs (one per frame for multi-frame objects).
    """
    path = os.path.abspath(path)
    base = image_id_for(path)
    ds, loc = read_header(base, path)
    ts = str(ds.file_meta.TransferSyntaxUID)
    n = number_of_frames(base, ds)
    ids = [base] if n == 1 else [image_id_for(path, k) for k in range(1, n + 1)]
    for k, ident in enumerate(ids):
        module_store.put(ident, build_modules(ds, k, ts))
    if loc is not None:
        locators.put(loc)
    else:
        locators.discard(os.path.abspath(path))
    return ids, loc


async def read_headers(paths: list[str]) -> dict[str, list[str] | ImageLoadError]:
    """Header-read many files: path -> its image IDs, or the error naming it.

    Parsing is pure Python and holds the GIL, so threads only contend: files are read in
    sequential chunks, a few chunks at a time on machines with many cores (for network storage).
    """
    import asyncio

    out: dict[str, list[str] | ImageLoadError] = {}

    def chunk(part: list[str]) -> None:
        for path in part:
            try:
                out[path] = read_file_header(path)[0]
            except ImageLoadError as exc:
                out[path] = exc

    size = 32
    gate = asyncio.Semaphore(max(1, runtime.workers // 4))

    async def run(part: list[str]) -> None:
        async with gate:
            await runtime.to_thread(chunk, part)

    await asyncio.gather(*(run(paths[i : i + size]) for i in range(0, len(paths), size)))
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
