"""Pluggable credentials for HTTP loads: token providers (refreshed on 401 and before expiry),
and the TLS side (CA bundle, client certificate for mTLS) as one ``ssl.SSLContext``.

Why a provider and not a string: OAuth access tokens of cloud DICOM services expire within the
hour, so a long load or a long-lived process needs a fresh one without the caller re-configuring.
A provider returns ``token`` or ``(token, expires_at)`` (epoch seconds or an aware ``datetime``);
its result is cached per provider and refreshed ``EXPIRY_MARGIN`` seconds before a known expiry,
or after a server answered 401 to it. Tokens are never logged or shown.
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Union

TokenResult = Union[str, tuple[str, "float | datetime | None"]]
TokenProvider = Callable[[], Union[TokenResult, Awaitable[TokenResult]]]
Cert = Union[str, tuple[str, str]]

EXPIRY_MARGIN = 30.0  # seconds before a known expiry at which the token is refreshed


@dataclass
class _Cached:
    provider: TokenProvider  # held so that its id() is not reused while cached
    token: str | None = None
    expires_at: float | None = None
    locks: dict[int, asyncio.Lock] = field(default_factory=dict)  # per event loop


_cache: dict[int, _Cached] = {}


def provider_name(provider: object) -> str:
    """A stable, secret-free name of a provider or auth object: its type/qualname and id."""
    name = getattr(provider, "__qualname__", None) or type(provider).__qualname__
    return f"{name}@{id(provider):x}"


def _epoch(expires_at: Any) -> float | None:
    if expires_at is None:
        return None
    if isinstance(expires_at, datetime):
        return expires_at.timestamp()
    return float(expires_at)


async def _call(provider: TokenProvider) -> tuple[str, float | None]:
    """Call the provider (a sync one in a thread: it may do blocking HTTP) and normalise."""
    if inspect.iscoroutinefunction(provider):
        result: Any = await provider()
    else:
        result = await asyncio.to_thread(provider)
        if inspect.isawaitable(result):
            result = await result
    if isinstance(result, tuple):
        token, expires = result
        out: tuple[str, float | None] = (token, _epoch(expires))
    else:
        out = (result, None)
    if not isinstance(out[0], str) or not out[0]:
        raise TypeError(f"token provider {provider_name(provider)} returned no token string")
    return out


async def token_from(provider: TokenProvider, stale: str | None = None) -> str:
    """The provider's current token, fetched when there is none, when it is within
    EXPIRY_MARGIN of its expiry, or when it equals ``stale`` (a server refused it). Concurrent
    callers share one call of the provider."""
    entry = _cache.get(id(provider))
    if entry is None or entry.provider is not provider:
        entry = _cache[id(provider)] = _Cached(provider)
    lock = entry.locks.setdefault(id(asyncio.get_running_loop()), asyncio.Lock())
    async with lock:
        fresh = entry.token is not None and entry.token != stale and (
            entry.expires_at is None or entry.expires_at - time.time() > EXPIRY_MARGIN)
        if not fresh:
            entry.token, entry.expires_at = await _call(provider)
        assert entry.token is not None
        return entry.token


def forget_tokens() -> None:
    """Drop every cached provider token (tests, and a caller that revoked its tokens)."""
    _cache.clear()


def ssl_context(verify: bool | str, cert: Cert | None) -> ssl.SSLContext | bool:
    """What httpx gets as ``verify``: plain ``verify`` when there is no CA bundle or client
    certificate, else a context trusting the bundle and presenting the certificate. A single
    path is a PEM holding both the certificate and its key."""
    if cert is None and not isinstance(verify, str):
        return verify
    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str):
        ctx = ssl.create_default_context(cafile=verify)
    else:  # the same trust store httpx uses by default
        import certifi

        ctx = ssl.create_default_context(cafile=certifi.where())
    if cert is not None:
        if isinstance(cert, str):
            ctx.load_cert_chain(cert)
        else:
            ctx.load_cert_chain(cert[0], cert[1])
    return ctx
