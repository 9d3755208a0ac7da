"""Keyed results shared by several loads (a parsed WADO-URI object, a series' metadata).

Runs on the medstream loop only. A result is fetched once however many frames need it; when every
waiter has been cancelled the fetch itself is cancelled; failures are not kept, so a retry refetches.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    task: asyncio.Future[T]
    waiters: int = 0
    size: int = 0


class SharedResults(Generic[T]):
    def __init__(self, max_items: int, size_of: Callable[[Any], int] | None = None,
                 max_bytes: int | None = None) -> None:
        self._items: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._max_items = max_items
        self._size_of = size_of
        self._max_bytes = max_bytes

    async def get(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        entry = self._items.get(key)
        if entry is None or _failed(entry.task):
            entry = _Entry(asyncio.ensure_future(factory()))
            self._items[key] = entry
        self._items.move_to_end(key)
        entry.waiters += 1
        try:
            result = await asyncio.shield(entry.task)
        except BaseException:
            entry.waiters -= 1
            if not entry.task.done() and entry.waiters == 0:
                entry.task.cancel()
            if self._items.get(key) is entry and (not entry.task.done() or _failed(entry.task)):
                if entry.waiters == 0 or entry.task.done():
                    del self._items[key]
            raise
        entry.waiters -= 1
        if self._size_of is not None and not entry.size:
            entry.size = self._size_of(result)
        self._trim()
        return result

    def _trim(self) -> None:
        total = sum(e.size for e in self._items.values())
        for key in list(self._items):
            over_items = len(self._items) > self._max_items
            over_bytes = self._max_bytes is not None and total > self._max_bytes
            if not (over_items or over_bytes):
                break
            entry = self._items[key]
            if entry.waiters or not entry.task.done():
                continue
            del self._items[key]
            total -= entry.size

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _failed(task: asyncio.Future[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)
