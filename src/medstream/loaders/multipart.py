"""A minimal multipart/related reader for DICOMweb responses (binary parts, no size limits)."""

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


def parse_multipart_related(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart body into parts; a non-multipart body is one part."""
    if not content_type.lower().startswith("multipart/"):
        return [Part(content_type, body)]
    boundary = content_type_param(content_type, "boundary")
    if not boundary:
        raise MultipartError("multipart response without a boundary")
    delim = b"--" + boundary.encode("latin-1")
    pos = body.find(delim)
    if pos < 0:
        raise MultipartError("multipart body has no boundary delimiter (truncated?)")
    parts: list[Part] = []
    while True:
        pos += len(delim)
        if body[pos : pos + 2] == b"--":
            return parts
        header_end = body.find(b"\r\n\r\n", pos)
        if header_end < 0:
            raise MultipartError("truncated multipart part headers")
        headers = body[pos:header_end].decode("latin-1").strip().split("\r\n")
        ctype = "application/octet-stream"
        for line in headers:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-type":
                ctype = value.strip()
        start = header_end + 4
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            raise MultipartError("truncated multipart body (no closing boundary)")
        parts.append(Part(ctype, body[start:nxt]))
        pos = nxt + 2
