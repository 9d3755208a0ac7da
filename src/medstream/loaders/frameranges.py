"""The leading bytes of one frame's codestream, then the rest: one range read each.

Progressive loading shows a slice from the first part of its HTJ2K codestream and completes it
with the remainder, so the frame moves once over the wire, not once per quality step. Readers:

- ``wadors`` frames: an HTTP ``Range`` on the frame URL. A server that honours it answers 206
  with the leading bytes of its response (a multipart body cut short, or raw bytes); one that
  does not (Orthanc) answers 200 with the whole frame, which is then simply final.
- ``dicomfile`` (local paths, and files over HTTP or object stores through their ranged
  reader): the first fragment of a single-frame file, read from where the header located it.

Anything else (multi-frame files, mosaics, LUT data) is not read in pieces: the caller loads the
frame whole.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..codecs.frame import FrameInfo
from ..codecs.htj2k import partial_decodable
from ..dicom.header import PixelLocator, locators
from ..dicom.part10 import frame_info, frame_payload
from ..dicom.store import module_store
from ..errors import ImageLoadError
from ..redact import redact_url
from .http import fetch, http_config
from .multipart import MultipartError, parse_multipart_related

_ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
_CONTENT_RANGE = re.compile(r"bytes (?P<first>\d+)-(?P<last>\d+)/(?P<total>\d+|\*)")


@dataclass
class FramePiece:
    """``data``: the first bytes of a frame's codestream (all of it when ``complete``)."""

    image_id: str
    data: bytes
    complete: bool
    info: FrameInfo
    modules: dict[str, Any]
    lut_source: Any = None
    _more: Callable[[FramePiece, int | None], Any] | None = field(default=None, repr=False)

    async def more(self, end: int | None = None) -> FramePiece:
        """This frame with its codestream read up to ``end`` bytes (None: to its end)."""
        if self.complete or (end is not None and end <= len(self.data)) or self._more is None:
            return self
        return await self._more(self, end)  # type: ignore[no-any-return]


# -- wadors ------------------------------------------------------------------------------------
async def wadors_piece(image_id: str, nbytes: int, **http: Any) -> FramePiece | None:
    """The first ``nbytes`` of a DICOMweb frame by an HTTP Range request."""
    from . import wadors

    if wadors.is_rendered_id(image_id):
        return None
    wid = wadors.parse_image_id(image_id)
    if wid.tile is not None:
        return None
    datasets = await wadors.get_series_metadata(image_id, wid.series_url, **http)
    ds = datasets.get(wid.instance)
    modules = module_store.get_modules(image_id)
    if ds is None or modules is None:
        return None
    ts = str(ds.get("TransferSyntaxUID") or ds.get("AvailableTransferSyntaxUID") or "")
    info = dataclasses.replace(frame_info(image_id, ds, ts), number_of_frames=1)
    if not partial_decodable(info) or (modules.get("modalityLutModule") or {}).get(
            "has_modality_lut_sequence"):
        return None
    body = _WebBody(wid.frame_url, http, b"", None, "")
    piece = FramePiece(image_id, b"", False, info, modules, ds, _more=body.more)
    return await body.read(piece, nbytes)


@dataclass
class _WebBody:
    """The frame response read so far (a multipart body, or raw codestream bytes)."""

    url: str
    http: dict[str, Any]
    content: bytes
    total: int | None
    content_type: str

    async def more(self, piece: FramePiece, end: int | None) -> FramePiece:
        head = 0
        if "multipart" in self.content_type.lower():
            head = self.content.find(b"\r\n\r\n") + 4  # the part's headers come first
        return await self.read(piece, None if end is None else head + end)

    async def read(self, piece: FramePiece, upto: int | None) -> FramePiece:
        have = len(self.content)
        stop = self.total if upto is None else min(upto, self.total or upto)
        if stop is not None and stop <= have:
            return piece
        resp = await fetch(self.url, piece.image_id, accept=_accept(), config=http_config(
            **self.http), byte_range=None if stop is None else (have, stop))
        ctype = resp.headers.get("content-type", "") or self.content_type
        crange = resp.headers.get("content-range", "")
        if resp.status_code == 206:
            m = _CONTENT_RANGE.fullmatch(crange.strip())
            if m is None or int(m["first"]) != have:
                raise ImageLoadError(piece.image_id, f"{redact_url(self.url)} answered 206 "
                                     f"with Content-Range {crange[:60]!r}, asked from {have}")
            self.content += resp.content
            self.total = int(m["total"]) if m["total"] != "*" else None
        else:  # 200: the server sent the whole frame
            self.content, self.total = resp.content, len(resp.content)
        self.content_type = ctype
        return self._piece(piece)

    def _piece(self, piece: FramePiece) -> FramePiece:
        complete = self.total is not None and len(self.content) >= self.total
        if "multipart" not in self.content_type.lower():
            data = self.content
        elif complete:
            try:
                parts = parse_multipart_related(self.content, self.content_type)
            except MultipartError as exc:
                raise ImageLoadError(piece.image_id, f"{exc} from {redact_url(self.url)}") from exc
            if not parts or not parts[0].data:
                raise ImageLoadError(piece.image_id, "the server returned no frame data")
            data = bytes(parts[0].data)
        else:  # a multipart body cut short: the part's bytes after its headers
            head = self.content.find(b"\r\n\r\n")
            data = self.content[head + 4 :] if head >= 0 else b""
        return dataclasses.replace(piece, data=data, complete=complete)


def _accept() -> str:
    from .wadors import FRAME_ACCEPT

    return FRAME_ACCEPT


# -- dicomfile ---------------------------------------------------------------------------------
async def dicomfile_piece(image_id: str, nbytes: int, **_: Any) -> FramePiece | None:
    """The first ``nbytes`` of a single-frame file's (first) fragment."""
    from ..core.runtime import runtime
    from .dicomfile import parse_image_id, tile_of

    path, frame = parse_image_id(image_id)
    loc, modules = locators.get(path), module_store.get_modules(image_id)
    if (frame not in (None, 1) or tile_of(image_id) is not None or loc is None or modules is None
            or loc.info.number_of_frames != 1 or not partial_decodable(loc.info)
            or (modules.get("modalityLutModule") or {}).get("has_modality_lut_sequence")):
        return None
    region = FileRegion(loc)
    piece = FramePiece(image_id, b"", False, loc.info, modules, _more=region.more)
    return await runtime.to_thread(region.read, piece, nbytes)


@dataclass
class FileRegion:
    """The encapsulated pixel data of a single-frame file, its first fragment read in pieces:
    the offset table, the fragment's header and its first bytes in one read, the rest in one
    more (with the 8 bytes after it: an item there means a frame in several fragments, which
    is then read whole)."""

    loc: PixelLocator
    start: int = -1  # offset of the first fragment's bytes in the pixel data
    length: int = 0  # the first fragment's length

    def _first(self, piece: FramePiece, upto: int) -> FramePiece:
        buf = self.loc.read(0, 16 + 64 + upto)
        if len(buf) < 16 or buf[:4] != _ITEM:
            raise ImageLoadError(self.loc.path, "encapsulated pixel data without its offset table")
        bot = int.from_bytes(buf[4:8], "little")
        if len(buf) < 16 + bot:  # a long offset table: read past it
            buf = self.loc.read(0, 16 + bot + upto)
        frag = buf[8 + bot : 16 + bot]
        if len(frag) < 8 or frag[:4] != _ITEM:
            raise ImageLoadError(self.loc.path, "encapsulated pixel data without a fragment")
        self.start, self.length = 16 + bot, int.from_bytes(frag[4:8], "little")
        data = bytes(buf[self.start : self.start + min(self.length, upto)])
        return dataclasses.replace(piece, data=data, complete=False)

    def read(self, piece: FramePiece, upto: int | None) -> FramePiece:
        if self.start < 0:
            piece = self._first(piece, upto if upto is not None else 1 << 16)
        have = len(piece.data)
        if upto is not None and upto < self.length:
            if upto <= have:
                return piece
            more = self.loc.read(self.start + have, upto - have)
            return dataclasses.replace(piece, data=piece.data + bytes(more))
        if not self.loc.still_valid():  # the file changed since its first bytes were read
            raise ImageLoadError(piece.image_id, "the file changed while it was being read")
        tail = bytes(self.loc.read(self.start + have, self.length - have + 8))
        rest, after = tail[: self.length - have], tail[self.length - have :]
        if after[:4] == _ITEM:  # more fragments follow: the frame whole, as a plain load does
            data = bytes(frame_payload(piece.image_id, self.loc.info, self.loc.read(), 0)[0])
        else:
            data = piece.data + rest
        return dataclasses.replace(piece, data=data, complete=True)

    async def more(self, piece: FramePiece, end: int | None) -> FramePiece:
        from ..core.runtime import runtime

        return await runtime.to_thread(self.read, piece, end)
