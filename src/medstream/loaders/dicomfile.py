"""``dicomfile:/path/file.dcm[?frame=N]`` — a local Part 10 file (frames are 1-based)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, unquote

from ..core.runtime import runtime
from ..core.image import Image
from ..dicom.part10 import ParsedDicom, decode_parsed_frame, parse_part10
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


def load_sync(image_id: str, prescale: bool = True) -> Image:
    path, frame = parse_image_id(image_id)
    parsed = parsed_files.get(image_id, path)
    return decode_parsed_frame(image_id, parsed, frame or 1, prescale)


async def load_dicomfile(image_id: str, prescale: bool = True, **_: Any) -> Image:
    """Read and decode in the worker pool: the caller's loop is never blocked by file I/O."""
    return await runtime.to_thread(load_sync, image_id, prescale)
