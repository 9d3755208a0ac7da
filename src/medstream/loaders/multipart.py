"""A minimal multipart/related reader for DICOMweb responses, whole or incremental."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message


@dataclass
class Part:
    content_type: str
    data: bytes

    def param(self, name: str) -> str | None:
        return content_type_param(self.content_type, name)


def content_type_param(content_type: str, name: str) -> str | None:
    msg = Message()
    msg["content-type"] = content_type
    value = msg.get_param(name)
    if isinstance(value, tuple):  # RFC 2231 encoded
        value = value[2]
    return None if value is None else str(value).strip('"')


class MultipartError(ValueError):
    pass


class MultipartReader:
    """Incremental multipart reader: ``feed`` chunks as they arrive and get each part as soon as
    its closing boundary is in, so a series response can be decoded while it downloads.

    Each search resumes where the last one stopped (a body without boundaries costs linear time,
    not quadratic), and the preamble, part headers and part bodies are capped: an endless part
    raises ``MultipartError`` instead of growing the buffer without end.
    """

    def __init__(self, content_type: str, max_part: int | None = None,
                 max_header: int | None = None) -> None:
        from ..limits import limits

        boundary = content_type_param(content_type, "boundary")
        if not boundary:
            raise MultipartError("multipart response without a boundary")
        self._delim = b"--" + boundary.encode("latin-1")
        self._buf = bytearray()
        self._started = False
        self._done = False
        self._scan = 0  # where to resume the current search (the buffer before it was searched)
        self._max_part = max_part or limits().max_bytes
        self._max_header = max_header or limits().max_header_bytes

    def _find(self, needle: bytes, start: int, cap: int, what: str) -> int:
        """Find ``needle`` from the resume point; remember how far was searched; enforce ``cap``."""
        buf = self._buf
        pos = buf.find(needle, max(start, self._scan))
        if pos < 0:
            self._scan = max(start, len(buf) - len(needle) + 1)
            if len(buf) - start > cap:
                raise MultipartError(f"multipart {what} over {cap} bytes (no boundary found)")
            return -1
        self._scan = 0
        return pos

    def feed(self, chunk: bytes) -> list[Part]:
        self._buf += chunk
        parts: list[Part] = []
        delim, buf = self._delim, self._buf
        while not self._done:
            if not self._started:
                pos = self._find(delim, 0, self._max_header, "preamble")
                if pos < 0:
                    return parts
                del buf[: pos + len(delim)]
                self._started = True
            if len(buf) < 2:
                return parts
            if buf[:2] == b"--":
                self._done = True
                break
            header_end = self._header_end
            if header_end < 0:
                header_end = self._find(b"\r\n\r\n", 0, self._max_header, "part header")
                if header_end < 0:
                    return parts
                self._header_end = header_end
            start = header_end + 4
            nxt = self._find(b"\r\n" + delim, start, self._max_part, "part")
            if nxt < 0:
                return parts
            ctype = "application/octet-stream"
            for line in bytes(buf[:header_end]).decode("latin-1").strip().split("\r\n"):
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-type":
                    ctype = value.strip()
            with memoryview(buf) as view:  # one copy (a bytearray slice would be two)
                parts.append(Part(ctype, bytes(view[start:nxt])))
            del buf[: nxt + 2 + len(delim)]
            self._header_end = -1
        return parts

    _header_end = -1

    def close(self) -> None:
        if not self._started:
            raise MultipartError("multipart body has no boundary delimiter (truncated?)")
        if not self._done:
            raise MultipartError("truncated multipart body (no closing boundary)")


def parse_multipart_related(body: bytes, content_type: str,
                            max_part: int | None = None) -> list[Part]:
    """Split a whole multipart body into parts; a non-multipart body is one part."""
    if not content_type.lower().startswith("multipart/"):
        return [Part(content_type, body)]
    reader = MultipartReader(content_type, max_part=max_part)
    parts = reader.feed(body)
    reader.close()
    return parts
