"""Shared async HTTP: one httpx client per TLS setting, retries with backoff, typed errors.

Every request is bounded: ``timeout`` is a deadline for the whole request (connect, headers and
body), not per read, so a server dripping one byte at a time cannot hold a load; bodies are
streamed against a byte budget (Content-Length checked first, gzip/deflate inflated in capped
steps); redirects are followed here, so credentials never go to another origin.

Credentials (Authorization headers, tokens in query strings, user:password in URLs) never appear
in errors or logs: every URL is redacted before it is shown, and httpx's own loggers are filtered.
A token set with ``configure_http`` is sent only to the hosts it is configured for; so are an
``httpx.Auth``, a token provider (see ``auth.py``: refreshed on 401 and before expiry) and a
client certificate (mTLS).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from ..core.runtime import closers
from ..core.scope import current as current_scope
from ..errors import HTTPStatusError, MedstreamError, NetworkError
from ..limits import BoundedDecoder, check_size, limits
from ..redact import install_log_filter, redact_url
from .auth import Cert, ssl_context, token_from
from .hosts import breaker, origin_of
from .httpconfig import HttpConfig, configure_http, http_config  # noqa: F401  (re-exported)

log = logging.getLogger("medstream.http")
install_log_filter()

RETRY_STATUS = frozenset({429, 502, 503, 504})
MAX_REDIRECTS = 5
MIN_RATE = 1024  # bytes per `timeout` window below which a streamed body counts as stalled
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


_clients: dict[tuple[str, int, bool | str, Cert | None], httpx.AsyncClient] = {}

# httpcore asks its stream for 64 kB a read, while asyncio receives up to 256 kB at a time: anyio
# then hands each chunk out in 64 kB pieces, copying the rest each time, with a timeout scope,
# a reader registration and a task switch per piece. On a 158 MB series response that was most
# of the loop thread's time. Reads of asyncio's own size take each chunk whole (a larger value
# set by the application is kept).
_ASYNCIO_READ = 256 * 1024
if getattr(httpcore.AsyncHTTP11Connection, "READ_NUM_BYTES", _ASYNCIO_READ) < _ASYNCIO_READ:
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = _ASYNCIO_READ




def _client(verify: bool | str, cert: Cert | None = None) -> httpx.AsyncClient:
    """Clients belong to the running loop (the medstream loop), keyed by the ``ms.Client``
    whose load this is (each closes its own connections), loop and TLS setting (CA bundle and
    client certificate are per client in httpx)."""
    loop = asyncio.get_running_loop()
    scope_key = current_scope().key
    if scope_key in _closed_scopes:  # a straggler of a closed ms.Client opens nothing new
        raise MedstreamError("this medstream Client is closed")
    key = (scope_key, id(loop), verify, cert)
    client = _clients.get(key)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            verify=ssl_context(verify, cert),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=False,  # followed in _open, where credentials are re-scoped
        )
        _clients[key] = client
    return client


@dataclass
class Body:
    """A fully read response: status, headers, the (decoded, size-checked) body."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Failure(Exception):
    """One attempt's failure: the typed error, and whether a retry may help."""

    def __init__(self, err: MedstreamError, retry: bool, after: float | None = None,
                 connection: bool = False) -> None:
        super().__init__(str(err))  # not err itself: err.__context__ is this (a pickling cycle)
        self.err, self.retry, self.after, self.connection = err, retry, after, connection

    def typed(self) -> MedstreamError:
        """The typed error to raise, its cause kept and no context pointing back here."""
        self.err.__cause__ = self.__cause__
        self.err.__context__ = None
        self.err.__suppress_context__ = True
        return self.err


def _headers(cfg: HttpConfig, accept: str | None, url: str, token: str | None,
             byte_range: tuple[int, int] | None = None) -> dict[str, str]:
    headers = public_headers(accept, byte_range)
    headers.setdefault("Accept-Encoding", "gzip, deflate")
    if cfg.credentials_for(url):
        headers.update(cfg.headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
    return headers


def public_headers(accept: str | None, byte_range: tuple[int, int] | None) -> dict[str, str]:
    """The headers any origin may see: Accept, and a byte range (of the unencoded object)."""
    headers = {"Accept": accept} if accept else {}
    if byte_range is not None:
        headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1] - 1}"
        headers["Accept-Encoding"] = "identity"
    return headers


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _client_for(cfg: HttpConfig, url: str, trusted: bool, image_id: str) -> httpx.AsyncClient:
    """The client for one hop: with the client certificate only where credentials may go."""
    cert = cfg.cert if trusted else None
    try:
        return _client(cfg.verify, cert)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise _Failure(NetworkError(image_id, f"cannot load the CA bundle or client "
                                              f"certificate: {_msg(exc)}"), retry=False) from exc


async def _token(cfg: HttpConfig, stale: str | None = None) -> str | None:
    if callable(cfg.token):
        return await token_from(cfg.token, stale)
    return cfg.token


async def _open(url: str, cfg: HttpConfig, accept: str | None, image_id: str,
                byte_range: tuple[int, int] | None = None) -> httpx.Response:
    """Send the GET; a 401 to a token from a provider is tried once more with a fresh one."""
    token = await _token(cfg) if cfg.credentials_for(url) else None
    resp, used = await _follow(url, cfg, accept, image_id, token, byte_range)
    if resp.status_code == 401 and used and callable(cfg.token):
        await resp.aclose()
        token = await _token(cfg, stale=token)
        resp, _ = await _follow(url, cfg, accept, image_id, token, byte_range)
    return resp


async def _follow(url: str, cfg: HttpConfig, accept: str | None, image_id: str,
                  token: str | None, byte_range: tuple[int, int] | None = None,
                  ) -> tuple[httpx.Response, bool]:
    """Send the GET and follow redirects by hand: on a change of origin, the token, the auth,
    the client certificate and every configured header are dropped (httpx drops only
    Authorization). Returns the response and whether the credentials went with it."""
    first = origin_of(url)
    for _ in range(MAX_REDIRECTS + 1):
        trusted = origin_of(url) == first and cfg.credentials_for(url)
        headers = _headers(cfg, accept, url, token, byte_range) if trusted else public_headers(
            accept, byte_range)
        client = _client_for(cfg, url, trusted, image_id)
        request = client.build_request("GET", url, headers=headers, timeout=cfg.timeout)
        auth = cfg.auth if trusted else None
        resp = await client.send(request, stream=True, auth=auth)
        if resp.status_code not in _REDIRECTS or "location" not in resp.headers:
            return resp, trusted
        await resp.aclose()
        nxt = str(resp.url.join(resp.headers["location"]))
        if urlsplit(url).scheme == "https" and urlsplit(nxt).scheme != "https" and not _is_loopback(nxt):
            raise _Failure(NetworkError(image_id, f"refused redirect from https to "
                                                  f"{redact_url(nxt)}"), retry=False)
        url = nxt
    raise _Failure(NetworkError(image_id, f"more than {MAX_REDIRECTS} redirects"), retry=False)


async def _read(resp: httpx.Response, image_id: str, limit: int, cfg: HttpConfig,
                safe: str) -> AsyncIterator[bytes]:
    """The decoded body in chunks, checked against ``limit`` (Content-Length first) and against
    a stall rule: less than MIN_RATE bytes in a ``timeout`` window is a stalled body."""
    try:
        declared = int(resp.headers.get("content-length", ""))
    except ValueError:
        declared = None
    if declared is not None:
        check_size(image_id, f"Content-Length of {safe}", declared, limit)
    decoder = BoundedDecoder(image_id, resp.headers.get("content-encoding", ""), limit)
    window_start, window_bytes = time.monotonic(), 0
    async for raw in resp.aiter_raw():
        window_bytes += len(raw)
        now = time.monotonic()
        if now - window_start >= cfg.timeout:
            if window_bytes < MIN_RATE:
                raise _Failure(NetworkError(image_id, f"body stalled ({window_bytes} bytes in "
                                                      f"{now - window_start:.1f} s): {safe}"),
                               retry=True, connection=True)
            window_start, window_bytes = now, 0
        for piece in decoder.feed(raw):
            yield piece
    decoder.finish()


async def _attempt(url: str, image_id: str, cfg: HttpConfig, accept: str | None,
                   ok_statuses: tuple[int, ...], limit: int,
                   byte_range: tuple[int, int] | None = None) -> Body:
    safe = redact_url(url)
    try:
        async with asyncio.timeout(cfg.timeout):
            resp = await _open(url, cfg, accept, image_id, byte_range)
            try:
                if not (resp.is_success or resp.status_code in ok_statuses):
                    detail = await _error_detail(resp)
                    raise _Failure(HTTPStatusError(image_id, resp.status_code, safe, detail),
                                   retry=resp.status_code in RETRY_STATUS,
                                   after=_retry_after_header(resp))
                chunks = [c async for c in _read(resp, image_id, limit, cfg, safe)]
            finally:
                await resp.aclose()
    except TimeoutError as exc:
        raise _Failure(NetworkError(image_id, f"timed out after {cfg.timeout:g} s: {safe}"),
                       retry=True, connection=True) from exc
    except httpx.TimeoutException as exc:
        raise _Failure(NetworkError(image_id, f"timed out after {cfg.timeout:g} s: {safe}"),
                       retry=True, connection=True) from exc
    except (httpx.TransportError, ssl.SSLError) as exc:  # httpcore lets a TLS alert through
        raise _Failure(NetworkError(image_id, f"{type(exc).__name__} for {safe}: {_msg(exc)}"),
                       retry=True, connection=True) from exc
    content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    del chunks
    return Body(resp.status_code, resp.headers, content, url)


async def fetch(
    url: str,
    image_id: str,
    *,
    accept: str | None = None,
    config: HttpConfig | None = None,
    ok_statuses: tuple[int, ...] = (),
    max_bytes: int | None = None,
    byte_range: tuple[int, int] | None = None,
) -> Body:
    """GET ``url`` and read the whole body (at most ``max_bytes``, default the configured
    budget). Retries transient failures with jittered backoff. ``byte_range``: ask for bytes
    ``[start, end)`` only (the caller checks for 206 and the length).

    Returns the body for 2xx or a status in ``ok_statuses``; raises ``HTTPStatusError``,
    ``NetworkError`` or ``ResourceLimitError`` otherwise. Cancellation aborts the request.
    """
    cfg = config or http_config()
    limit = max_bytes or cfg.max_bytes or limits().max_bytes
    safe = redact_url(url)
    attempt = 0
    while True:
        probe, reason = await breaker.admit(url)
        if reason is not None:
            raise NetworkError(image_id, f"{safe}: {reason}")
        failure: _Failure | None = None
        try:
            body = await _attempt(url, image_id, cfg, accept, ok_statuses, limit, byte_range)
        except _Failure as exc:
            failure = exc
        except BaseException:
            breaker.release(url)
            raise
        if failure is None:
            breaker.success(url)
            return body
        if failure.connection:
            breaker.failure(url, str(getattr(failure.err, "cause", failure.err)))
        else:
            breaker.success(url)
        if not failure.retry or attempt >= cfg.retries or probe:  # a probe is not retried
            raise failure.typed()  # (outside the except: no context cycle back to failure)
        delay = min(10.0, cfg.backoff * (2**attempt) * (0.75 + 0.5 * random.random()))
        if failure.after is not None:
            delay = min(10.0, failure.after)
        attempt += 1
        log.info("retrying %s in %.2fs (attempt %d): %s", safe, delay, attempt, failure.err)
        await asyncio.sleep(delay)


async def stream_chunks(
    url: str, image_id: str, *, accept: str | None = None, config: HttpConfig | None = None,
    max_bytes: int | None = None,
) -> AsyncGenerator[tuple[str, bytes], None]:
    """GET ``url`` and yield (content type, chunk) as the body arrives; no retries (the caller
    falls back to smaller requests). The body is bounded by ``max_bytes`` (default: the volume
    budget) and the stall rule; the caller's own deadline bounds the total time.
    Errors are ``HTTPStatusError`` / ``NetworkError`` / ``ResourceLimitError``."""
    cfg = config or http_config()
    limit = max_bytes or limits().max_volume_bytes
    safe = redact_url(url)
    _, reason = await breaker.admit(url)
    if reason is not None:
        raise NetworkError(image_id, f"{safe}: {reason}")
    failure: _Failure | None = None
    try:
        async with asyncio.timeout(cfg.timeout):  # until the headers are in
            resp = await _open(url, cfg, accept, image_id)
        try:
            if not resp.is_success:
                raise HTTPStatusError(image_id, resp.status_code, safe, await _error_detail(resp))
            ctype = resp.headers.get("content-type", "")
            async for chunk in _read(resp, image_id, limit, cfg, safe):
                yield ctype, chunk
        finally:
            await resp.aclose()
    except _Failure as exc:
        failure = exc
    except (TimeoutError, httpx.TimeoutException) as exc:
        breaker.failure(url, "timeout")
        raise NetworkError(image_id, f"timed out after {cfg.timeout:g} s: {safe}") from exc
    except (httpx.TransportError, ssl.SSLError) as exc:
        breaker.failure(url, type(exc).__name__)
        raise NetworkError(image_id, f"{type(exc).__name__} for {safe}: {_msg(exc)}") from exc
    except BaseException:
        breaker.release(url)
        raise
    if failure is not None:
        if failure.connection:
            breaker.failure(url, str(getattr(failure.err, "cause", failure.err)))
        else:
            breaker.release(url)
        raise failure.typed()  # (outside the except: no context cycle back to failure)
    breaker.success(url)


async def _error_detail(resp: httpx.Response) -> str:
    """The start of a plain error body (at most 4 kB read), for the message."""
    if resp.headers.get("content-encoding", "identity").lower() != "identity":
        return ""
    data = b""
    try:
        async for chunk in resp.aiter_raw():
            data += chunk
            if len(data) > 4096:
                break
    except (httpx.HTTPError, OSError):
        pass
    return data[:4096].decode("utf-8", "replace").strip().replace("\n", " ")[:200]


def _retry_after_header(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _msg(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


_closed_scopes: set[str] = set()


async def post(url: str, image_id: str, body: bytes, content_type: str, *,
               accept: str | None = None, config: HttpConfig | None = None) -> Body:
    """POST ``body`` (STOW-RS): the load's credentials where they belong, the deadline of its
    config, no redirects followed (a body is not sent twice), the answer size-checked."""
    cfg = config or http_config()
    trusted = cfg.credentials_for(url)
    token = await _token(cfg) if trusted else None
    headers = _headers(cfg, accept, url, token) if trusted else public_headers(accept, None)
    headers["Content-Type"] = content_type
    safe = redact_url(url)
    try:
        client = _client_for(cfg, url, trusted, image_id)
    except _Failure as failure:
        raise failure.err from None
    try:
        async with asyncio.timeout(max(cfg.timeout, 1.0) * 4):
            request = client.build_request("POST", url, content=body, headers=headers,
                                           timeout=cfg.timeout)
            resp = await client.send(request, auth=cfg.auth if trusted else None)
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        raise NetworkError(image_id, f"{_msg(exc)}: {safe}") from exc
    content = resp.content
    check_size(image_id, f"answer of {safe}", len(content), cfg.max_bytes)
    return Body(resp.status_code, resp.headers, content, str(resp.url))


async def close_clients(scope_key: str | None = None) -> None:
    """Close the connections of one ``ms.Client`` (its scope key, which opens none again), or
    all of them (the loop stopping)."""
    if scope_key:
        _closed_scopes.add(scope_key)
    for key, client in list(_clients.items()):
        if scope_key is None or key[0] == scope_key:
            await client.aclose()
            _clients.pop(key, None)


closers.append(close_clients)  # the background loop closes them when it stops

