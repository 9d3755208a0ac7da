"""Header-only reads that remember where the pixel bytes are.

A folder scan or volume set-up reads each file's header once (pixel data deferred). It records the
metadata modules and a ``PixelLocator``: file offset of the pixel data, the file's size and mtime.
A later pixel load then reads just those bytes and decodes them — no second pydicom parse — which
is what makes series loading from files faster than a parse-everything loop.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ..codecs.frame import FrameInfo
from ..core.kept import KeptMap
from ..errors import DicomParseError, ImageLoadError, MissingPixelDataError
from ..storage import file_version, is_remote, storage
from .fastheader import FastHeader, read_fast_header
from .frames import check_frames_fit
from .part10 import PIXEL_KEYWORDS, frame_info, read_dataset
from .regular import open_regular

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DEFLATED = "1.2.840.10008.1.2.1.99"
_DEFER = 2048
_PROBE = 1024**2  # bytes a header read without "DICM" may look at in a remote object
_LOCATOR_NBYTES = 600  # a PixelLocator with its FrameInfo and path, roughly


@dataclass(frozen=True)
class PixelLocator:
    path: str
    mtime_ns: int
    size: int
    offset: int
    length: int | None  # None: encapsulated, read to the end of the file
    info: FrameInfo

    @property
    def remote(self) -> bool:
        return is_remote(self.path)

    def still_valid(self) -> bool:
        try:
            return file_version(self.path) == (self.mtime_ns, self.size)
        except (OSError, ImageLoadError):
            return False

    def span(self, start: int = 0, size: int | None = None) -> tuple[int, int]:
        """[first, end) file offsets of the pixel bytes, or of ``size`` of them from ``start``."""
        first = self.offset + start
        if size is None:
            size = self.size - first if self.length is None else self.length - start
        return first, first + size

    def read(self, start: int = 0, size: int | None = None) -> bytes:
        """The pixel bytes, or ``size`` of them from ``start`` (one frame of a native file)."""
        first, end = self.span(start, size)
        if self.remote:
            return storage.read_range(self.path, self.path, first, end)
        with open_regular(self.path, self.path) as f:
            f.seek(first)
            return f.read(end - first)

    def read_into(self, buffer: memoryview) -> int:
        """Fill ``buffer`` with the pixel bytes of a local file from the first one (the bytes
        of one frame land where they go, with no buffer in between); the count read."""
        if self.remote or (self.length is not None and self.length < len(buffer)):
            return 0
        got = 0
        with open_regular(self.path, self.path) as f:
            reader = cast(io.BufferedIOBase, f)  # os.fdopen(fd, "rb"): a BufferedReader
            reader.seek(self.offset)
            while got < len(buffer):
                n = reader.readinto(buffer[got:])
                if not n:
                    break
                got += n
        return got


def read_header(image_id: str, path: str, fast: FastHeader | None = None,
                ) -> tuple[Dataset | FastHeader, PixelLocator | None]:
    """Parse everything but large pixel values; raise typed errors naming ``image_id``.

    Classic little-endian files go through the compact reader (``fastheader``; ``fast`` if the
    caller read it already), the rest through pydicom.

    Raises ``MissingPixelDataError`` for an object without pixel data. The locator is None where
    the bytes cannot be addressed in the file (deflated) or were small enough to read already.
    A remote object (``s3://``...) is read by ranges; one pydicom must parse is read whole.
    """
    if is_remote(path):
        info = storage.info(path, image_id)
        if fast is None:
            fast = read_fast_header(storage.open(image_id, path))
        if fast is None:  # by ranges first: a large object that is not DICOM stays unread
            head = storage.head(image_id, path)
            probe = storage.open(image_id, path, None if head[128:132] == b"DICM" else _PROBE)
            read_dataset(image_id, probe, stop_before_pixels=True)
        ds: Any = fast if fast is not None else read_dataset(
            image_id, io.BytesIO(storage.read_all(image_id, path)))
        return _locate(image_id, path, ds, info.size, info.version_key)
    try:
        st = os.stat(path)
    except OSError:
        st = None
    if fast is None and st is not None and stat.S_ISREG(st.st_mode):
        fast = read_fast_header(path)
    ds = fast if fast is not None else read_dataset(image_id, path, defer_size=_DEFER)
    if st is None:
        raise ImageLoadError(image_id, f"cannot stat {path}")
    return _locate(image_id, path, ds, st.st_size, st.st_mtime_ns)


def _locate(image_id: str, path: str, ds: Any, file_size: int, version: int,
            ) -> tuple[Dataset | FastHeader, PixelLocator | None]:
    """The checks and the pixel locator shared by local files and remote objects."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise DicomParseError(image_id, "no transfer syntax in the file meta information")
    ts = str(meta.TransferSyntaxUID)
    kw = next((k for k in PIXEL_KEYWORDS if k in ds), None)
    if kw is None:
        raise MissingPixelDataError(image_id, "the object has no pixel data")
    info = frame_info(image_id, ds, ts)
    raw = ds.get_item(kw, keep_deferred=True)
    tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    undefined = length in (None, 0xFFFFFFFF)
    value = getattr(raw, "value", None)
    if value is not None:
        check_frames_fit(image_id, info, len(value))
    elif ts != DEFLATED and tell is not None:
        check_frames_fit(image_id, info, file_size - tell if undefined else int(length or 0))
    if ts == DEFLATED or tell is None or value is not None:
        return ds, None
    if not undefined and tell + length > file_size:
        raise MissingPixelDataError(
            image_id, f"pixel data truncated: {length} bytes declared, "
            f"{max(0, file_size - tell)} in the file"
        )
    return ds, PixelLocator(path, version, file_size, tell, None if undefined else length, info)


class LocatorStore:
    """Bounded path -> PixelLocator map, shared by every image ID that names the file."""

    def __init__(self, max_items: int = 200_000) -> None:
        self._items: KeptMap[str, PixelLocator] = KeptMap(
            "pixel locators", max_items=max_items, size_of=lambda _loc: _LOCATOR_NBYTES,
            shrinkable=False)

    def put(self, locator: PixelLocator) -> None:
        self._items.put(locator.path, locator)

    def get(self, path: str) -> PixelLocator | None:
        return self._items.get(path)

    def discard(self, path: str) -> None:
        self._items.pop(path)

    def clear(self) -> None:
        self._items.clear()


locators = LocatorStore()
