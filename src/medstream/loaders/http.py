"""Shared async HTTP: one httpx client per TLS setting, retries with backoff, typed errors.

Credentials (Authorization headers, tokens in query strings, user:password in URLs) never appear in
errors or logs: every URL is redacted before it is shown.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from ..errors import HTTPStatusError, NetworkError
from ..redact import redact_url

log = logging.getLogger("medstream.http")

RETRY_STATUS = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class HttpConfig:
    headers: dict[str, str] = field(default_factory=dict)
    token: str | None = None
    verify: bool | str = True
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.25

    def __repr__(self) -> str:  # never show the token or header values
        return (
            f"HttpConfig(headers={sorted(self.headers)}, token={'***' if self.token else None}, "
            f"verify={self.verify}, timeout={self.timeout}, retries={self.retries})"
        )


_config = HttpConfig()
_clients: dict[tuple[int, bool | str], httpx.AsyncClient] = {}


def configure_http(**changes: Any) -> HttpConfig:
    """Set defaults for every HTTP load: headers, token (bearer), verify, timeout, retries."""
    global _config
    _config = replace(_config, **changes)
    return _config


def http_config(**overrides: Any) -> HttpConfig:
    """The defaults with per-load overrides (None values are ignored)."""
    kw = {k: v for k, v in overrides.items() if v is not None and k in HttpConfig.__dataclass_fields__}
    return replace(_config, **kw) if kw else _config


def _client(verify: bool | str) -> httpx.AsyncClient:
    """Clients belong to the running loop (the medstream loop), keyed by loop and TLS setting."""
    loop = asyncio.get_running_loop()
    key = (id(loop), verify)
    client = _clients.get(key)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            verify=verify,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            follow_redirects=True,
        )
        _clients[key] = client
    return client


async def fetch(
    url: str,
    image_id: str,
    *,
    accept: str | None = None,
    config: HttpConfig | None = None,
    ok_statuses: tuple[int, ...] = (),
) -> httpx.Response:
    """GET ``url`` and read the whole body. Retries transient failures with jittered backoff.

    Returns the response for 2xx or a status in ``ok_statuses``; raises ``HTTPStatusError``
    or ``NetworkError`` otherwise. Cancellation aborts the request at once.
    """
    cfg = config or _config
    headers = _headers(cfg, accept)
    client = _client(cfg.verify)
    safe = redact_url(url)
    attempt = 0
    while True:
        try:
            resp = await client.get(url, headers=headers, timeout=cfg.timeout)
        except httpx.TimeoutException as exc:
            err: Exception = NetworkError(image_id, f"timed out after {cfg.timeout:g} s: {safe}")
            cause: BaseException = exc
        except httpx.TransportError as exc:
            err = NetworkError(image_id, f"{type(exc).__name__} for {safe}: {_msg(exc)}")
            cause = exc
        else:
            if resp.is_success or resp.status_code in ok_statuses:
                return resp
            err = HTTPStatusError(image_id, resp.status_code, safe, _detail(resp))
            cause = None  # type: ignore[assignment]
            retry_after = _retry_after_header(resp)
            if resp.status_code not in RETRY_STATUS:
                raise err
        if attempt >= cfg.retries:
            if cause is not None:
                raise err from cause
            raise err
        delay = min(10.0, cfg.backoff * (2**attempt) * (0.75 + 0.5 * random.random()))
        if cause is None and retry_after is not None:
            delay = min(10.0, retry_after)
        attempt += 1
        log.info("retrying %s in %.2fs (attempt %d): %s", safe, delay, attempt, err)
        await asyncio.sleep(delay)


def _headers(cfg: HttpConfig, accept: str | None) -> dict[str, str]:
    headers = dict(cfg.headers)
    if cfg.token:
        headers["Authorization"] = f"Bearer {cfg.token}"
    if accept:
        headers["Accept"] = accept
    return headers


async def stream_chunks(
    url: str, image_id: str, *, accept: str | None = None, config: HttpConfig | None = None
) -> AsyncIterator[tuple[str, bytes]]:
    """GET ``url`` and yield (content type, chunk) as the body arrives; no retries (the caller
    falls back to smaller requests). Errors are ``HTTPStatusError`` / ``NetworkError``."""
    cfg = config or _config
    safe = redact_url(url)
    try:
        async with _client(cfg.verify).stream(
            "GET", url, headers=_headers(cfg, accept), timeout=cfg.timeout
        ) as resp:
            if not resp.is_success:
                await resp.aread()
                raise HTTPStatusError(image_id, resp.status_code, safe, _detail(resp))
            ctype = resp.headers.get("content-type", "")
            async for chunk in resp.aiter_bytes():
                yield ctype, chunk
    except httpx.TimeoutException as exc:
        raise NetworkError(image_id, f"timed out after {cfg.timeout:g} s: {safe}") from exc
    except httpx.TransportError as exc:
        raise NetworkError(image_id, f"{type(exc).__name__} for {safe}: {_msg(exc)}") from exc


def _retry_after_header(resp: httpx.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers["retry-after"]))
    except (KeyError, ValueError):
        return None


def _msg(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _detail(resp: httpx.Response) -> str:
    try:
        text = resp.text.strip().replace("\n", " ")
    except Exception:
        return ""
    return text[:200]


async def close_clients() -> None:
    for key, client in list(_clients.items()):
        await client.aclose()
        _clients.pop(key, None)
