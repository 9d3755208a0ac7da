"""One byte budget for everything an input can make medstream allocate.

Why: a 174 kB codestream or a 6 MB deflate stream can claim gigabytes. Every size an input
*claims* (a header, a Content-Length, a frame count, an inflated stream) is checked here before
anything is allocated, and an over-budget claim raises ``ResourceLimitError`` naming the ID and
both sizes, never numpy's ``MemoryError``.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, replace
from typing import Any

from .errors import DecodeError, ResourceLimitError

GiB = 1024**3


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * GiB


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 2 * GiB  # one object: an HTTP body, an inflated stream, one decoded frame
    max_volume_bytes: int = _physical_memory()  # one volume array
    max_frames: int = 100_000  # frames of one object or one DICOMweb series (image IDs built)
    max_header_bytes: int = 1024**2  # multipart part headers, preambles


_limits = Limits()


def configure_limits(**changes: Any) -> Limits:
    """Change the budgets for every later load (``max_bytes``, ``max_volume_bytes``,
    ``max_frames``)."""
    global _limits
    _limits = replace(_limits, **changes)
    return _limits


def limits() -> Limits:
    return _limits


def check_size(item_id: str, what: str, size: int, limit: int | None = None,
               detail: str = "", unit: str = "bytes") -> None:
    """Raise ``ResourceLimitError`` if ``size`` is over ``limit`` (default: ``max_bytes``)."""
    limit = _limits.max_bytes if limit is None else limit
    if size > limit:
        raise ResourceLimitError(item_id, what, size, limit, detail, unit)


def check_frames(item_id: str, what: str, n: int) -> None:
    check_size(item_id, what, n, _limits.max_frames, unit="frames")


def inflate(item_id: str, data: bytes | memoryview, limit: int, *, wbits: int = -zlib.MAX_WBITS,
            what: str = "inflated data", step: int = 4 * 1024**2) -> bytes:
    """Inflate ``data`` in steps of ``step`` output bytes and stop past ``limit``: a bomb costs
    at most ``limit`` bytes, never its full inflated size."""
    d = zlib.decompressobj(wbits)
    out = bytearray()
    pending: bytes | memoryview = memoryview(data)
    while True:
        try:
            chunk = d.decompress(pending, step)
        except zlib.error as exc:
            raise DecodeError(item_id, f"{what}: corrupt compressed data ({exc})") from exc
        out += chunk
        if len(out) > limit:
            raise ResourceLimitError(item_id, what, len(out), limit, "stopped inflating")
        pending = d.unconsumed_tail
        if d.eof and d.unused_data and wbits & 16:  # the next member of a multi-member gzip
            pending, d = d.unused_data, zlib.decompressobj(wbits)
            continue
        if d.eof or (not pending and not chunk):
            break
    return bytes(out)


class BoundedDecoder:
    """Content-Encoding (identity, gzip, deflate) decoded chunk by chunk, each step capped, so the
    inflated size is bounded whatever one compressed chunk holds."""

    def __init__(self, item_id: str, encoding: str, limit: int) -> None:
        enc = (encoding or "identity").strip().lower()
        if enc in ("", "identity"):
            self._d: Any = None
        elif enc in ("gzip", "x-gzip"):
            self._d = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif enc == "deflate":
            self._d = "deflate"  # zlib-wrapped or raw: both are seen; told by the first bytes
        else:
            raise ResourceLimitError(item_id, f"unsupported Content-Encoding {enc!r}", 0, 0)
        self._id, self._limit, self._enc, self.total = item_id, limit, enc, 0
        self._head = b""  # deflate: the first bytes, until there are two to tell zlib from raw

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self._d is None:
            self._count(len(chunk))
            return [chunk]
        if self._d == "deflate":
            chunk = self._head + chunk
            if len(chunk) < 2:
                self._head = chunk
                return out
            zlib_header = chunk[0] & 0x0F == 8 and ((chunk[0] << 8) | chunk[1]) % 31 == 0
            self._d = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        pending = chunk
        while pending:
            try:
                piece = self._d.decompress(pending, 1024**2)
            except zlib.error as exc:
                raise DecodeError(self._id, f"corrupt {self._enc} body ({exc})") from exc
            self._count(len(piece))
            if piece:
                out.append(piece)
            pending = self._d.unconsumed_tail
            if not piece and not pending:
                break
        return out

    def finish(self) -> None:
        """At the end of the body: a compressed stream that did not reach its end is an error
        (a body cut short), not a shorter result."""
        if self._d is not None and (self._d == "deflate" or not self._d.eof):
            raise DecodeError(self._id, f"{self._enc} body ended before its compressed stream did")

    def _count(self, n: int) -> None:
        self.total += n
        if self.total > self._limit:
            raise ResourceLimitError(self._id, "response body", self.total, self._limit,
                                     "stopped reading")
