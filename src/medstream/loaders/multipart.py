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
    its closing boundary is in, so a series response can be decoded while it downloads."""

    def __init__(self, content_type: str) -> None:
        boundary = content_type_param(content_type, "boundary")
        if not boundary:
            raise MultipartError("multipart response without a boundary")
        self._delim = b"--" + boundary.encode("latin-1")
        self._buf = bytearray()
        self._started = False
        self._done = False
        self._scan = 0  # where to resume looking for the next boundary in a large part

    def feed(self, chunk: bytes) -> list[Part]:
        self._buf += chunk
        parts: list[Part] = []
        delim, buf = self._delim, self._buf
        while not self._done:
            if not self._started:
                pos = buf.find(delim)
                if pos < 0:
                    return parts
                del buf[: pos + len(delim)]
                self._started = True
            if len(buf) < 2:
                return parts
            if buf[:2] == b"--":
                self._done = True
                break
            header_end = buf.find(b"\r\n\r\n")
            if header_end < 0:
                return parts
            start = header_end + 4
            nxt = buf.find(b"\r\n" + delim, max(start, self._scan))
            if nxt < 0:
                self._scan = max(start, len(buf) - len(delim) - 2)
                return parts
            ctype = "application/octet-stream"
            for line in bytes(buf[:header_end]).decode("latin-1").strip().split("\r\n"):
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-type":
                    ctype = value.strip()
            parts.append(Part(ctype, bytes(buf[start:nxt])))
            del buf[: nxt + 2 + len(delim)]
            self._scan = 0
        return parts

    def close(self) -> None:
        if not self._started:
            raise MultipartError("multipart body has no boundary delimiter (truncated?)")
        if not self._done:
            raise MultipartError("truncated multipart body (no closing boundary)")


def parse_multipart_related(body: bytes, content_type: str) -> list[Part]:
    """Split a whole multipart body into parts; a non-multipart body is one part."""
    if not content_type.lower().startswith("multipart/"):
        return [Part(content_type, body)]
    reader = MultipartReader(content_type)
    parts = reader.feed(body)
    reader.close()
    return parts
