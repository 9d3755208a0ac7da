"""Which cache and request pools a load uses: the process-wide ones, or a ``Client``'s.

A ``ContextVar`` carries the client's scope into everything a call starts: the loads it schedules
on the medstream loop inherit the caller's context, so a client's images land in its own cache
and its requests wait in its own pools, while module-level calls keep using the defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from .cache import Cache, cache
from .request_pools import RequestPoolManager, request_pools


@dataclass(frozen=True)
class Scope:
    key: str  # what a client's connections are kept under ("" for the default)
    cache: Cache
    pools: RequestPoolManager
    http: dict[str, Any] = field(default_factory=dict)  # the client's HTTP options

    def __reduce__(self) -> Any:  # a volume pickled with its scope comes back in the default
        return (default_scope, ())


DEFAULT = Scope("", cache, request_pools)


def default_scope() -> Scope:
    return DEFAULT
_current: ContextVar[Scope] = ContextVar("medstream_scope", default=DEFAULT)


def current() -> Scope:
    return _current.get()


def current_cache() -> Cache:
    return _current.get().cache


def current_pools() -> RequestPoolManager:
    return _current.get().pools


@contextmanager
def using(scope: Scope) -> Iterator[Scope]:
    """Run the block (and every load it starts) in ``scope``."""
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)
