"""BulkDataURI values of DICOMweb metadata, fetched when asked for (PS3.18 F.2.6, 10.4.1.1.3).

Servers leave large binary elements out of ``/metadata`` (Orthanc's plugin: every OB/OW/UN
element, overlays, ICC profiles, private blobs) and give a URI instead. Fetching them all with
the metadata would cost a request per element per instance for values almost nobody reads, so
a :class:`~medstream.dicom.jsonmeta.BulkData` reference fetches only when read.

The URI comes from the server, so it is not trusted with credentials: the load's token, headers,
``httpx.Auth`` and client certificate go only to the origin the metadata came from (a URI on
another host is fetched without them, as a redirect would be). A same-origin URI without a query
gets the metadata URL's query (a token-in-query or signed root keeps working, as for every URL
derived from it). Relative URIs resolve against the metadata URL; only http(s) is fetched.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urljoin, urlsplit

from ..dicom.jsonmeta import BulkFetcher
from ..errors import ImageLoadError
from ..redact import redact_url
from .hosts import origin_of
from .http import HttpConfig, fetch
from .multipart import MultipartError, parse_multipart_related

BULK_ACCEPT = 'multipart/related; type="application/octet-stream"'


def scoped_config(config: HttpConfig, origin: str) -> HttpConfig:
    """``config`` with its credentials allowed on ``origin`` only (and only if they were
    allowed there already)."""
    if config.token_hosts is None:
        hosts: tuple[str, ...] = (origin,)
    else:
        hosts = tuple(h for h in config.token_hosts if h == origin)
    return replace(config, token_hosts=hosts)


def bulk_url(uri: str, metadata_url: str) -> str:
    """The URL to fetch for ``uri`` (absolute, or relative to the metadata URL)."""
    base, _, query = metadata_url.partition("?")
    url = urljoin(base, uri.strip())
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise ImageLoadError(redact_url(url), "a BulkDataURI that is not http(s) is not fetched")
    if query and "?" not in url and origin_of(url) == origin_of(base):
        url += "?" + query
    return url


def bulk_fetcher(metadata_url: str, config: HttpConfig) -> BulkFetcher:
    """The fetcher for the BulkDataURIs of one metadata response, bound to the load's HTTP
    settings scoped to that response's origin."""
    cfg = scoped_config(config, origin_of(metadata_url))

    async def fetch_bulk(uri: str) -> bytes:
        url = bulk_url(uri, metadata_url)
        resp = await fetch(url, url, accept=BULK_ACCEPT, config=cfg)
        ctype = resp.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/"):
            return resp.content  # a server that sends the bytes as they are
        try:
            parts = parse_multipart_related(resp.content, ctype)
        except MultipartError as exc:
            raise ImageLoadError(url, f"{exc} from {redact_url(url)}") from exc
        if len(parts) == 1:
            return parts[0].data
        return b"".join(p.data for p in parts)  # Pixel Data: a part per frame

    return fetch_bulk
