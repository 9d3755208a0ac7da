"""Metadata providers: ``get(module, image_id)`` asks providers, highest priority first."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("medstream.metadata")

Provider = Callable[[str, str], Any]
Preloader = Callable[..., Awaitable[None]]


class MetadataRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._providers: list[tuple[int, int, Provider]] = []
        self._seq = 0
        self._preloaders: dict[str, Preloader] = {}

    def add_provider(self, provider: Provider, priority: int = 0) -> None:
        """Providers with equal priority are asked in the order they were added."""
        with self._lock:
            self._seq += 1
            self._providers.append((priority, self._seq, provider))
            self._providers.sort(key=lambda p: (-p[0], p[1]))

    def remove_provider(self, provider: Provider) -> None:
        with self._lock:
            self._providers = [p for p in self._providers if p[2] is not provider]

    def remove_all_providers(self) -> None:
        with self._lock:
            self._providers = []

    def get(self, module: str, image_id: str) -> Any:
        """First non-None answer wins; a raising provider is logged and skipped."""
        with self._lock:
            providers = [p[2] for p in self._providers]
        for provider in providers:
            try:
                value = provider(module, image_id)
            except Exception:
                log.exception("metadata provider %r raised for %s %s", provider, module, image_id)
                continue
            if value is not None:
                return value
        return None

    # -- preloading: get metadata for many IDs at once, before their pixels -------------------
    def register_preloader(self, scheme: str, preloader: Preloader) -> None:
        """``async preloader(image_ids, **options)`` makes metadata for those IDs available
        cheaply (header reads, one series /metadata request); volumes call it before loading."""
        with self._lock:
            self._preloaders[scheme.rstrip(":")] = preloader

    async def preload(self, image_ids: list[str], **options: Any) -> None:
        from .registry import call_kwargs, scheme_of

        by_scheme: dict[str, list[str]] = {}
        for image_id in image_ids:
            by_scheme.setdefault(scheme_of(image_id), []).append(image_id)
        for scheme, ids in by_scheme.items():
            with self._lock:
                fn = self._preloaders.get(scheme)
            if fn is not None:
                await fn(ids, **call_kwargs(fn, options))


metadata = MetadataRegistry()
