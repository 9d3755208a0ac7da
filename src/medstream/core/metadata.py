"""Metadata providers: ``get(module, image_id)`` asks providers, highest priority first."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("medstream.metadata")

Provider = Callable[[str, str], Any]


class MetadataRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._providers: list[tuple[int, int, Provider]] = []
        self._seq = 0

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


metadata = MetadataRegistry()
