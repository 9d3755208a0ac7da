"""A compact header reader for the common case: one classic image per file, little endian.

A folder scan reads dozens of attributes from every file; building a pydicom ``Dataset`` costs
about 1 ms a file, most of a scan. This reader walks the elements once up to the pixel data,
keeps (VR, bytes) of the top-level ones, converts only the values asked for, and records where
the pixel data starts. Anything it is not sure about (big endian, deflated, enhanced functional
groups, mosaics, LUTs, non-Latin character sets, odd structure) returns None, and pydicom reads
the file as before: this is a fast path, never the only path.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from .keywords import dictionary_vr, known_vr, tag_for_keyword
from .values import KeywordAttributes

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
_NOT_HERE = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})  # big endian, deflated
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData",
               0x7FE00009: "DoubleFloatPixelData"}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
# Present in the file -> let pydicom read it (layouts and LUTs handled on the full path).
_FALLBACK_TAGS = frozenset({
    0x52009229, 0x52009230,  # Shared / Per-Frame Functional Groups
    0x00283000, 0x00281201, 0x00281221,  # Modality LUT Sequence, palette LUT data
    0x00291010, 0x00291110, 0x00291210,  # Siemens CSA headers (mosaics)
})
_TEXT_CHARSETS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1",
                  "ISO_IR 192": "utf-8"}
_NUMERIC_TEXT = frozenset({"DS", "IS"})
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}
_CHUNK = 16384


class _Fallback(Exception):
    """This file is for pydicom."""


@functools.lru_cache(maxsize=4096)
def _dict_vr(tag: int) -> str:
    try:
        return dictionary_vr(tag).split(" ")[0]
    except KeyError:
        return "UN"


def _quick_vr(tag: int) -> str | None:
    """The dictionary VR where it is known without pydicom: the keyword table's, "UN" for a
    private tag (no dictionary has those); None for any other tag, whose VR is looked up only
    if someone asks for that element (by a keyword outside the table, so pydicom is loaded)."""
    vr = known_vr(tag)
    if vr is not None:
        return vr.split(" ")[0]
    return "UN" if (tag >> 16) & 1 else None


# Private elements vendor layouts read (dicom/ge.py), by tag as their vendors place them.
VENDOR_PRIVATE_TAGS = frozenset({0x0019109C, 0x001910B3})


@functools.lru_cache(maxsize=4096)
def _tag(keyword: str) -> int | None:
    """A keyword's tag; 8 hex digits name a tag directly (private elements)."""
    if len(keyword) == 8 and all(c in "0123456789abcdefABCDEF" for c in keyword):
        return int(keyword, 16)
    return tag_for_keyword(keyword)


_MISSING = object()


@dataclass(frozen=True)
class PixelElement:
    """What ``Dataset.get_item(..., keep_deferred=True)`` tells about deferred pixel data."""

    VR: str
    value_tell: int
    length: int
    value: None = None


class _FileMeta:
    def __init__(self, transfer_syntax_uid: str) -> None:
        self.TransferSyntaxUID = transfer_syntax_uid

    def __contains__(self, keyword: str) -> bool:
        return keyword == "TransferSyntaxUID"


class FastHeader(KeywordAttributes):
    """Read-only, ``Dataset``-like view of a header: ``get``, ``in``, attributes by keyword."""

    functional_groups = False  # files with functional groups are left to pydicom

    def __init__(self, elements: dict[int, tuple[str | None, bytes | None]], transfer_syntax_uid: str,
                 pixel: tuple[str, PixelElement], encoding: str) -> None:
        self._elements = elements
        self._values: dict[str, Any] = {}  # keyword -> its converted value (lists as tuples)
        self.file_meta = _FileMeta(transfer_syntax_uid)
        self._pixel_keyword, self._pixel = pixel
        self._encoding = encoding

    def __contains__(self, keyword: object) -> bool:
        if keyword == self._pixel_keyword:
            return True
        tag = _tag(keyword) if isinstance(keyword, str) else None
        return tag is not None and self._element(tag) is not None

    def _element(self, tag: int) -> tuple[str, bytes] | None:
        """(VR, raw value) of an element that was kept; an element read without its VR (a tag
        outside the keyword table) gets it now, and is what it would have been with it."""
        found = self._elements.get(tag)
        if found is None or found[0] is not None:
            return found  # type: ignore[return-value]
        vr, raw = _dict_vr(tag), found[1]
        if vr == "SQ":
            kept: tuple[str, bytes] | None = ("SQ", b"")
        else:  # as the parse keeps a value: public, short enough (the long ones not at all)
            kept = None if raw is None else (vr, raw)
        if kept is None:
            self._elements.pop(tag, None)
        else:
            self._elements[tag] = kept
        return kept

    def get_item(self, keyword: str, keep_deferred: bool = True) -> PixelElement | None:
        return self._pixel if keyword == self._pixel_keyword else None

    def get(self, keyword: str, default: Any = None) -> Any:
        value = self._values.get(keyword, _MISSING)
        if value is _MISSING:  # converted once: module builders ask for some keywords often
            value = self._values[keyword] = self._value(keyword)
        if value.__class__ is tuple:
            return list(value)  # a fresh list each time, as before
        return default if value is None else value

    def _value(self, keyword: str) -> Any:
        tag = _tag(keyword)
        if tag is None or tag not in self._elements:  # most keywords a builder asks for
            return None
        found = self._element(tag)
        value = None if found is None else self._convert(*found)
        return tuple(value) if isinstance(value, list) else value

    def _convert(self, vr: str, raw: bytes) -> Any:
        if vr == "AT":  # written as pydicom prints tags (one, or a list of them)
            if not raw or len(raw) % 4:
                return None
            pairs = struct.unpack(f"<{len(raw) // 2}H", raw)
            tags = [f"({g:04X},{e:04X})" for g, e in zip(pairs[::2], pairs[1::2])]
            return tags[0] if len(tags) == 1 else "[" + ", ".join(tags) + "]"
        code = _BINARY.get(vr)
        if code is not None:
            size = struct.calcsize(code)
            if not raw or len(raw) % size:
                return None
            items = struct.unpack(f"<{len(raw) // size}{code}", raw)
            return items[0] if len(items) == 1 else list(items)
        if vr in ("SQ", "OB", "OW", "UN", "OF", "OD", "OL"):
            return raw or None
        text = raw.decode(self._encoding if vr not in _NUMERIC_TEXT else "latin-1",
                          "replace").rstrip(" \x00")
        if vr in ("LT", "ST", "UT"):
            return text or None
        text = text.strip(" \x00")
        if not text:
            return None
        parts = [t.strip(" \x00") for t in text.split("\\")]
        return parts if len(parts) > 1 else parts[0]


class _Reader:
    """Reads a file forward in chunks; never reads the pixel data."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.buf = b""
        self.base = 0  # file offset of buf[0]

    def need(self, pos: int, n: int) -> bytes:
        """``n`` bytes at file offset ``pos`` (never before the last request's offset)."""
        start = pos - self.base
        if start < 0:
            raise _Fallback("read backwards")
        if start + n > len(self.buf):
            if start > len(self.buf):  # jump past a long value: seek instead of reading it
                self.f.seek(pos)
                self.buf = b""
            else:
                self.buf = self.buf[start:]
            self.base, start = pos, 0
            self.buf += self.f.read(max(_CHUNK, n - len(self.buf)))
            if len(self.buf) < n:
                raise _Fallback("short file")
        return self.buf[start : start + n]


_HEAD = struct.Struct("<HHI")  # group, element, then a 4-byte length (implicit VR, items)
_SHORT = struct.Struct("<HH2sH")  # group, element, VR, 2-byte length (explicit VR)
_U32 = struct.Struct("<I")


def _element_head(r: _Reader, pos: int, explicit: bool) -> tuple[int, str | None, int, int]:
    """(tag, VR, length, offset of the value) of the element at ``pos`` (one 8-byte read: this
    runs for every element of every file a scan reads). The VR of an implicit-VR element is
    None where it is not known without pydicom (see ``_quick_vr``)."""
    head = r.need(pos, 8)
    group, elem, vr_raw, short = _SHORT.unpack(head)
    tag = group << 16 | elem
    if tag in (_ITEM, _ITEM_END, _SEQ_END):
        return tag, "", _HEAD.unpack(head)[2], pos + 8
    if not explicit:
        return tag, _quick_vr(tag), _HEAD.unpack(head)[2], pos + 8
    vr = _VR_TEXT.get(vr_raw)
    if vr is None:
        if not (65 <= vr_raw[0] <= 90 and 65 <= vr_raw[1] <= 90):
            raise _Fallback("not an explicit VR")
        vr = _VR_TEXT.setdefault(vr_raw, vr_raw.decode("ascii"))
    if vr_raw in _LONG_VRS:
        (length,) = _U32.unpack(r.need(pos + 8, 4))
        return tag, vr, length, pos + 12
    return tag, vr, short, pos + 8


_VR_TEXT: dict[bytes, str] = {}


def _skip_sequence(r: _Reader, pos: int, explicit: bool, depth: int = 0) -> int:
    """Offset after an undefined-length sequence starting at ``pos`` (its first item)."""
    if depth > 16:
        raise _Fallback("sequences nested too deep")
    while True:
        tag, _, length, value = _element_head(r, pos, explicit)
        if tag == _SEQ_END:
            return value
        if tag != _ITEM:
            raise _Fallback("expected a sequence item")
        if length != UNDEFINED:
            pos = value + length
            continue
        pos = value
        while True:  # elements of an undefined-length item
            tag, vr, length, value = _element_head(r, pos, explicit)
            if tag == _ITEM_END:
                pos = value
                break
            if length == UNDEFINED:
                pos = _skip_sequence(r, value, explicit and vr != "UN", depth + 1)
            else:
                pos = value + length


def read_fast_header(source: str | os.PathLike[str] | bytes | memoryview | BinaryIO | io.RawIOBase,
                     ) -> FastHeader | None:
    """The header of a classic little-endian Part 10 file (a path, the object's bytes or a
    seekable file object), or None to use pydicom instead. Pixel offsets count from the start
    of the file or bytes."""
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            return _parse(_Reader(io.BytesIO(source)))
        if hasattr(source, "read"):
            return _parse(_Reader(source))
        with open(source, "rb") as f:
            return _parse(_Reader(f))
    except (_Fallback, struct.error, UnicodeDecodeError, OSError, ValueError):
        return None


def _parse(r: _Reader) -> FastHeader | None:
    if r.need(128, 4) != b"DICM":
        return None
    pos = 132
    ts = None
    while True:  # group 2: always explicit VR little endian
        group = struct.unpack("<H", r.need(pos, 2))[0]
        if group != 0x0002:
            break
        tag, vr, length, value = _element_head(r, pos, True)
        if length == UNDEFINED:
            return None
        if tag == 0x00020010:
            ts = r.need(value, length).decode("ascii").strip(" \x00")
        pos = value + length
    if ts is None or ts in _NOT_HERE:
        return None
    explicit = ts != IMPLICIT_LE
    elements: dict[int, tuple[str | None, bytes | None]] = {}
    while True:
        tag, vr, length, value = _element_head(r, pos, explicit)
        if tag in _PIXEL_TAGS:
            if not explicit and tag == 0x7FE00010:  # implicit VR Pixel Data is OW (PS3.5 A.1)
                vr = "OW"
            elif vr is None:
                vr = _dict_vr(tag)
            return _finish(elements, ts, _PIXEL_TAGS[tag], vr, length, value)
        if tag in _FALLBACK_TAGS or tag >> 16 == 0xFFFE:
            return None
        if length == UNDEFINED:  # a sequence (or UN holding one): skip it, keep that it is there
            pos = _skip_sequence(r, value, explicit and vr != "UN")
            elements[tag] = ("SQ", b"")
            continue
        if vr == "UN":  # a known tag written as UN: read it with its dictionary VR, as pydicom
            vr = _quick_vr(tag)
        if vr is None:  # VR looked up later, only if the element is asked for (``_element``)
            elements[tag] = (None, r.need(value, length) if length <= 1024 else None)
        elif vr != "SQ" and length <= 1024 and (not (tag >> 16) & 1 or tag in VENDOR_PRIVATE_TAGS):
            elements[tag] = (vr, r.need(value, length))  # public values we may use
        elif vr == "SQ":
            elements[tag] = ("SQ", b"")
        pos = value + length


def _finish(elements: dict[int, tuple[str | None, bytes | None]], ts: str, keyword: str, vr: str,
            length: int, value: int) -> FastHeader | None:
    charset = (elements.get(0x00080005, ("CS", b""))[1] or b"").decode("latin-1").strip(" \x00")
    encoding = _TEXT_CHARSETS.get(charset)
    if encoding is None:
        return None
    header = FastHeader(elements, ts, (keyword, PixelElement(vr, value, length)), encoding)
    image_type = header.get("ImageType") or ()
    types = {image_type} if isinstance(image_type, str) else set(image_type)
    if types & {"MOSAIC", "VFRAME"} or header.get("PhotometricInterpretation") == "PALETTE COLOR":
        return None
    return header
