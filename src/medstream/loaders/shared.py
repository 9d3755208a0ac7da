"""Keyed results shared by several loads (a parsed WADO-URI object, a series' metadata).

Runs on the medstream loop only. A result is fetched once however many frames need it; when every
waiter has been cancelled the fetch itself is cancelled; failures are not kept, so a retry refetches.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core.cache import cache
from ..core.kept import estimate_nbytes

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Future[T]
    waiters: int = 0
    size: int = 0


class SharedResults(Generic[T]):
    """Results kept after their loads finish count in the cache's budget (``get_cache_size``)
    and go with ``purge_cache()``; a fetch still in flight is never dropped by a shrink.

    Fetches run on the medstream loop; the cache may shrink or clear the map from any thread,
    so the map itself is guarded by a lock (never held across an ``await``)."""

    def __init__(self, name: str, max_items: int,
                 size_of: Callable[[Any], int] = estimate_nbytes,
                 max_bytes: int | None = None) -> None:
        self.name = name
        self.shrinkable = True
        self._lock = threading.Lock()
        self._items: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._max_items = max_items
        self._size_of = size_of
        self._max_bytes = max_bytes
        cache.register_store(self)

    def finished(self, match: Callable[[str], bool]) -> list[T]:
        """The results already fetched under the keys ``match`` accepts (nothing is fetched)."""
        with self._lock:
            entries = [e for k, e in self._items.items() if match(k)]
        return [e.task.result() for e in entries if e.task.done() and not _failed(e.task)]

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._items.values())

    def shrink(self, n_bytes: int) -> int:
        """Drop finished results nobody waits for, least recently used first."""
        freed = 0
        with self._lock:
            for key, entry in list(self._items.items()):
                if freed >= n_bytes:
                    break
                if entry.waiters or not entry.task.done():
                    continue
                del self._items[key]
                freed += entry.size
        return freed

    async def get(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        with self._lock:
            entry = self._items.get(key)
            if entry is None or _failed(entry.task):
                entry = _Entry(asyncio.ensure_future(factory()))
                self._items[key] = entry
            self._items.move_to_end(key)
            entry.waiters += 1
        try:
            result = await asyncio.shield(entry.task)
        except BaseException:
            with self._lock:
                entry.waiters -= 1
                if not entry.task.done() and entry.waiters == 0:
                    entry.task.cancel()
                if self._items.get(key) is entry and (not entry.task.done()
                                                      or _failed(entry.task)):
                    if entry.waiters == 0 or entry.task.done():
                        del self._items[key]
            raise
        grew = False
        with self._lock:
            entry.waiters -= 1
            if not entry.size:
                entry.size, grew = self._size_of(result), True
                self._trim_locked()
        if grew:  # a new result: the budget is checked once, not on every hit
            cache.reclaim()
        return result

    def _trim_locked(self) -> None:
        total = sum(e.size for e in self._items.values())
        for key, entry in list(self._items.items()):
            over_items = len(self._items) > self._max_items
            over_bytes = self._max_bytes is not None and total > self._max_bytes
            if not (over_items or over_bytes):
                break
            if entry.waiters or not entry.task.done():
                continue
            del self._items[key]
            total -= entry.size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _failed(task: asyncio.Future[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
