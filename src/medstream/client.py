"""``ms.Client``: one configuration of medstream as an object, for back ends that serve several
users and tests that need two configurations at once.

A client holds its own HTTP settings and credentials (sent with every load it makes), its own
cache and its own request pools, and its own HTTP connections, which ``close()`` (or leaving its
``with`` block) closes. Two clients never share cached results. The module-level functions
(``ms.load_image``, ``ms.open_volume``...) are the default client's.

>>> with ms.Client(token=user_token, cache_size=512 * 1024**2) as client:
...     volume = client.open_volume("https://pacs/dicom-web/studies/1.2/series/3.4")
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence
from typing import Any

from .core import loading, scope
from .core.cache import DEFAULT_MAX_CACHE_SIZE, Cache
from .core.request_pools import RequestPoolManager, RequestType
from .core.runtime import runtime
from .discovery import folder, source
from .loaders.http import close_clients
from .options import HTTP_OPTIONS

_ids = itertools.count(1)


class Client:
    """Settings, cache, request pools and connections of its own (see the module docstring).

    ``token``, ``headers``, ``auth``, ``cert``, ``verify``, ``timeout``, ``retries``,
    ``backoff``, ``max_bytes``: HTTP options given to every load this client makes (a load's own
    options win). ``cache_size``: bytes of its cache. ``max_requests``: requests in flight per
    pool (interaction, thumbnail, prefetch, compute)."""

    def __init__(self, *, cache_size: int = DEFAULT_MAX_CACHE_SIZE,
                 max_requests: int | None = None, **http: Any) -> None:
        unknown = set(http) - HTTP_OPTIONS
        if unknown:
            raise TypeError(f"Client() got unknown options {sorted(unknown)}; HTTP options are "
                            f"{sorted(HTTP_OPTIONS)}")
        self.http: dict[str, Any] = {k: v for k, v in http.items() if v is not None}
        pools = RequestPoolManager()
        if max_requests is not None:
            for kind in RequestType:
                pools.set_max_simultaneous_requests(kind, max_requests)
        self._scope = scope.Scope(f"client-{next(_ids)}", Cache(cache_size), pools, self.http)
        self.closed = False

    @classmethod
    def _default(cls) -> Client:
        client = cls.__new__(cls)
        client.http, client._scope, client.closed = {}, scope.DEFAULT, False
        return client

    # -- what it holds -------------------------------------------------------------------------
    @property
    def scope_key(self) -> str:
        """What its connections and kept reads are filed under ("" for the default client)."""
        return self._scope.key

    @property
    def cache(self) -> Cache:
        return self._scope.cache

    @property
    def request_pools(self) -> RequestPoolManager:
        return self._scope.pools

    def get_cache_size(self) -> int:
        return self._scope.cache.get_cache_size()

    def purge_cache(self) -> None:
        self._scope.cache.purge_cache()

    # -- loads ---------------------------------------------------------------------------------
    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            raise RuntimeError("this medstream Client is closed")
        return {**self.http, **options}

    def load_image(self, image_id: str, **options: Any) -> Any:
        """``ms.load_image`` with this client's settings (not cached)."""
        with scope.using(self._scope):
            return loading.load_image(image_id, **self._options(options))

    def load_and_cache_image(self, image_id: str, **options: Any) -> Any:
        """``ms.load_and_cache_image`` into this client's cache."""
        with scope.using(self._scope):
            return loading.load_and_cache_image(image_id, **self._options(options))

    def open_volume(self, src: str | os.PathLike[str] | Sequence[Any], **options: Any) -> Any:
        """``ms.open_volume`` with this client's settings, cache and pools."""
        with scope.using(self._scope):
            return source.open_volume(src, **self._options(options))

    async def open_volume_async(self, src: str | os.PathLike[str] | Sequence[Any],
                                **options: Any) -> Any:
        with scope.using(self._scope):
            return await source.open_volume_async(src, **self._options(options))

    def describe_source(self, src: str | os.PathLike[str], **options: Any) -> Any:
        with scope.using(self._scope):
            return source.describe_source(src, **self._options(options))

    def scan_folder(self, path: str | os.PathLike[str], *, recursive: bool = True) -> Any:
        with scope.using(self._scope):
            return folder.scan_folder(path, recursive=recursive)

    # -- closing -------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel this client's loads, empty its cache and close its connections. The default
        client (the module-level functions) is never closed."""
        if self._start_closing():
            self._scope.cache.purge_cache()
            runtime.run_sync(close_clients(self._scope.key), timeout=30)

    def _start_closing(self) -> bool:
        """Mark closed and cancel its requests; False when there is nothing to close."""
        if self.closed or self._scope is scope.DEFAULT:
            return False
        self.closed = True
        self._scope.pools.cancel(lambda _details: True)
        return True

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._start_closing():
            return
        await asyncio.to_thread(self._scope.cache.purge_cache)  # it may wait on cancels
        await asyncio.wrap_future(runtime.submit(close_clients(self._scope.key)))

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.get_cache_size()} bytes cached"
        return f"<medstream.Client {self._scope.key or 'default'} ({state})>"


_default: Client | None = None


def default_client() -> Client:
    """The client behind the module-level functions: the process-wide settings
    (``configure_http``), cache and pools."""
    global _default
    if _default is None:
        _default = Client._default()
    return _default
