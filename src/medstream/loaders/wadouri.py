"""``wadouri:http(s)://...`` — HTTP GET of a Part 10 object (WADO-URI).

The parsed object is shared by URL without the ``frame`` parameter, so the frames of one
multi-frame object are fetched and parsed once.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..core.image import Image
from ..core.runtime import runtime
from ..dicom.part10 import ParsedDicom, decode_parsed_frame, parse_part10
from ..dicom.store import module_store
from ..errors import ImageLoadError
from .dicomfile import record_tile_modules, split_tile, tile_image
from .http import fetch, http_config
from .shared import SharedResults

SCHEME = "wadouri"
objects: SharedResults[ParsedDicom] = SharedResults(
    "WADO-URI objects", max_items=64, size_of=lambda p: p.nbytes, max_bytes=512 * 1024**2
)


def split_frame(url: str) -> tuple[str, int | None]:
    """(object URL without ``frame``, frame). The rest of the query is kept byte for byte:
    servers differ in how they decode it."""
    parts = urlsplit(url)
    kept, frame = [], None
    for item in parts.query.split("&") if parts.query else []:
        key, _, value = item.partition("=")
        if key == "frame":
            frame = int(value) if value.isdigit() else None
        else:
            kept.append(item)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "&".join(kept), parts.fragment))
    return base, frame


async def fetch_part10(image_id: str, url: str, accept: str | None, **http: Any) -> ParsedDicom:
    """Fetch and parse (in the worker pool) one Part 10 object, shared by URL."""

    cfg = http_config(**http)

    async def get() -> ParsedDicom:
        resp = await fetch(url, image_id, accept=accept, config=cfg)
        body = resp.content
        if accept and accept.startswith("multipart/"):
            from .multipart import MultipartError, parse_multipart_related

            try:
                parts = parse_multipart_related(body, resp.headers.get("content-type", ""))
            except MultipartError as exc:
                raise ImageLoadError(image_id, f"{exc} from {url.split('?')[0]}") from exc
            if not parts:
                raise ImageLoadError(image_id, "empty multipart response")
            body = parts[0].data
        return await runtime.to_thread(parse_part10, image_id, body)

    return await objects.get(f"{url}\n{cfg.credentials_key()}", get)  # per credentials


async def load_wadouri(image_id: str, prescale: bool = True, **http: Any) -> Image:
    object_id, tile = split_tile(image_id)
    url = object_id[len(SCHEME) + 1 :]
    if not url.startswith(("http://", "https://")):
        raise ImageLoadError(image_id, "wadouri IDs must hold an http(s) URL")
    base, frame = split_frame(url)
    parsed = await fetch_part10(image_id, base, "application/dicom", **http)
    if tile is not None:
        modules = module_store.get_modules(image_id) or record_tile_modules(image_id, parsed).get(
            image_id)
        if not modules:
            raise ImageLoadError(image_id, "not a mosaic with this tile")
        return await runtime.to_thread(tile_image, image_id, parsed, modules, tile, prescale)
    return await runtime.to_thread(decode_parsed_frame, image_id, parsed, frame or 1, prescale)


async def mosaic_tile_ids(image_id: str, **http: Any) -> list[str] | None:
    """The tile IDs of a mosaic object given as one ``wadouri:`` ID, their modules recorded
    (the object is fetched once, shared with its tiles' loads); None for other objects."""
    object_id, tile = split_tile(image_id)
    base, frame = split_frame(object_id[len(SCHEME) + 1 :])
    if tile is not None or frame not in (None, 1):
        return None
    parsed = await fetch_part10(image_id, base, "application/dicom", **http)
    found = await runtime.to_thread(record_tile_modules, object_id, parsed)
    return list(found) or None
