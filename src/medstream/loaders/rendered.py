"""``wadors:<...>/rendered`` and ``wadors:<...>/thumbnail``: pictures the DICOMweb server renders
(PS3.18 WADO-RS Rendered and Thumbnail resources), loaded as uint8 images.

IDs name a study, series, instance or frame, then the resource; the query goes to the server as
it is (``viewport=w,h``, ``window=center,width,linear``, ``quality=``)::

    wadors:<root>/studies/S/series/Se/instances/I/frames/N/rendered?window=40,400,linear
    wadors:<root>/studies/S/series/Se/instances/I/rendered
    wadors:<root>/studies/S/series/Se/thumbnail?viewport=128,128

Grayscale stays one channel, ``(rows, columns)``, so a rendered frame lines up with the DICOM
frame; colour is RGB as for web images. PNG is asked for first (lossless), then JPEG, which
every server must render; one media type per request, since some servers (Orthanc's plugin 1.7)
answer 400 to an Accept list. ``accept=image/jpeg`` in the query picks the format instead (it is
the standard ``accept`` query parameter, so it reaches the server too).

Thumbnails fall back to ``/rendered`` at the same level (same query) where the server answers
404, 406 or 501: ``/thumbnail`` is optional in PS3.18 and often missing (Orthanc's plugin,
Google's Healthcare API), while ``/rendered`` is widely served, and a caller asking for a
thumbnail wants a picture of that object, not an error. ``image.extra["resource"]`` says which
resource answered. A series or study rendering that comes back as multipart gives its first
image (the body is bounded by the byte budget like any other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from ..core.image import Image
from ..core.runtime import runtime
from ..errors import DecodeError, HTTPStatusError, ImageLoadError
from ..redact import redact_url
from .http import Body, HttpConfig, fetch, http_config
from .multipart import MultipartError, parse_multipart_related
from .web import decode_web_image

SCHEME = "wadors"
MEDIA_TYPES = ("image/png", "image/jpeg")
_REFUSED = (400, 406, 415)  # this media type is not offered: try the next one
_NO_THUMBNAIL = (404, 406, 501)  # no thumbnail resource: render instead

_RE = re.compile(
    r"^(?P<target>.+?/studies/[^/?]+(?:/series/[^/?]+(?:/instances/[^/?]+"
    r"(?:/frames/\d+)?)?)?)/(?P<resource>rendered|thumbnail)$"
)


@dataclass(frozen=True)
class RenderedId:
    """A parsed rendered/thumbnail ID: the target object's URL, the resource, the query."""

    target: str
    resource: str
    query: str = ""

    def url(self, resource: str | None = None) -> str:
        query = f"?{self.query}" if self.query else ""
        return f"{self.target}/{resource or self.resource}{query}"

    def accept(self) -> tuple[str, ...]:
        """Media types to ask for, one per request: the query's ``accept=``, else PNG, JPEG."""
        asked = [v for k, v in parse_qsl(self.query) if k.lower() == "accept" and v]
        return (asked[0],) if asked else MEDIA_TYPES


def parse_rendered_id(image_id: str) -> RenderedId | None:
    """The parsed ID if ``image_id`` names a rendered or thumbnail resource, else None."""
    url = image_id[len(SCHEME) + 1:] if image_id.startswith(SCHEME + ":") else image_id
    path, _, query = url.partition("?")
    m = _RE.match(path)
    if m is None:
        return None
    return RenderedId(m["target"], m["resource"], query)


def is_rendered_id(image_id: str) -> bool:
    return image_id.split("?", 1)[0].rstrip("/").endswith(("/rendered", "/thumbnail"))


async def _negotiate(url: str, image_id: str, cfg: HttpConfig, accept: tuple[str, ...],
                     ok: tuple[int, ...]) -> Body:
    """The first answer that is not a refusal of the media type (statuses in ``ok`` are
    returned, not raised, so the caller can fall back)."""
    for media in accept[:-1]:
        resp = await fetch(url, image_id, accept=media, config=cfg,
                           ok_statuses=tuple(set(ok) | set(_REFUSED)))
        if resp.status_code not in _REFUSED:
            return resp
    return await fetch(url, image_id, accept=accept[-1], config=cfg, ok_statuses=ok)


def _raise_for(image_id: str, resp: Body, detail: str = "") -> None:
    if not resp.is_success:
        raise HTTPStatusError(image_id, resp.status_code, redact_url(resp.url),
                              detail or resp.text.strip().replace("\n", " ")[:200])


def _picture(image_id: str, resp: Body) -> bytes:
    """The image bytes: the body, or the first part of a multipart answer."""
    ctype = resp.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/"):
        return resp.content
    try:
        parts = parse_multipart_related(resp.content, ctype)
    except MultipartError as exc:
        raise ImageLoadError(image_id, f"{exc} from {redact_url(resp.url)}") from exc
    if not parts or not parts[0].data:
        raise DecodeError(image_id, f"no image in the multipart answer of {redact_url(resp.url)}")
    return parts[0].data


async def load_rendered(image_id: str, **http: Any) -> Image:
    """Load a ``/rendered`` or ``/thumbnail`` ID (see the module docstring)."""
    rid = parse_rendered_id(image_id)
    if rid is None:
        raise ImageLoadError(image_id, "not a rendered/thumbnail ID "
                                       "(<root>/studies/S[/series/Se[/instances/I[/frames/N]]]"
                                       "/rendered or /thumbnail)")
    cfg = http_config(**http)
    resource = rid.resource
    resp = await _negotiate(rid.url(), image_id, cfg, rid.accept(),
                            _NO_THUMBNAIL if resource == "thumbnail" else ())
    if resource == "thumbnail" and resp.status_code in _NO_THUMBNAIL:
        first = resp
        resource = "rendered"
        resp = await _negotiate(rid.url(resource), image_id, cfg, rid.accept(), _NO_THUMBNAIL)
        _raise_for(image_id, resp, f"no thumbnail (HTTP {first.status_code}) and rendering "
                                   f"failed: HTTP {resp.status_code}")
    _raise_for(image_id, resp)
    if not resp.content:
        raise DecodeError(image_id, f"empty response from {redact_url(resp.url)}")
    data = _picture(image_id, resp)
    image = await runtime.to_thread(decode_web_image, image_id, data, keep_gray=True)
    image.extra["resource"] = resource
    return image

