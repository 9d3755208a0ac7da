"""Byte-counted LRU maps for what medstream keeps besides decoded pixels: parsed multi-frame files,
headers, per-image metadata, remote object heads.

Why: each of these once had its own bound (a count, or a private byte limit) outside the cache, so
``get_cache_size()`` did not see them and ``purge_cache()`` did not free them; a long-running
process kept up to a gigabyte after a purge. A ``KeptMap`` registers itself with the cache: its
bytes count in ``get_cache_size()``, share ``set_max_cache_size()``'s budget with the pixels, and
go with ``purge_cache()``.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from .cache import cache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_OBJECT = 56  # bytes a small Python object costs beyond its payload (CPython, 64-bit)
_RECLAIM_STEP = 256 * 1024  # a map may grow this much past the budget before it is checked


def estimate_nbytes(value: Any, _depth: int = 0) -> int:
    """A quick estimate of the memory held by plain data (dicts, lists, strings, numbers, arrays):
    an accounting figure, not an exact one, cheap enough to run on every insert."""
    if isinstance(value, (bytes, bytearray, str)):
        return _OBJECT + len(value)
    nbytes = getattr(value, "nbytes", None)  # numpy arrays, ParsedDicom
    if isinstance(nbytes, int):
        return _OBJECT + nbytes
    if _depth > 6:
        return _OBJECT
    if isinstance(value, dict):
        return 64 + sum(estimate_nbytes(k, _depth + 1) + estimate_nbytes(v, _depth + 1) + 24
                        for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 56 + sum(estimate_nbytes(v, _depth + 1) + 8 for v in value)
    if hasattr(value, "__dict__"):
        return _OBJECT + estimate_nbytes(vars(value), _depth + 1)
    slots = getattr(type(value), "__slots__", ())
    if slots:
        return _OBJECT + sum(estimate_nbytes(getattr(value, s, None), _depth + 1)
                             for s in ((slots,) if isinstance(slots, str) else slots))
    return sys.getsizeof(value, _OBJECT)


class KeptMap(Generic[K, V]):
    """A thread-safe LRU map bounded by items and bytes, counted in the cache's budget."""

    def __init__(self, name: str, *, max_items: int | None = None, max_bytes: int | None = None,
                 max_value_bytes: int | None = None, shrinkable: bool = True,
                 size_of: Callable[[Any], int] = estimate_nbytes) -> None:
        """``max_value_bytes``: a bigger value is not kept (default a quarter of ``max_bytes``:
        one value would push everything else out). ``shrinkable=False``: pressure from the rest
        of the cache does not shrink this map (its own bounds and ``purge_cache()`` still do):
        for what a volume being built reads back, such as per-image metadata."""
        self.name = name
        self.shrinkable = shrinkable
        self._lock = threading.Lock()
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._max_items, self._max_bytes, self._size_of = max_items, max_bytes, size_of
        self._max_value = max_value_bytes if max_value_bytes is not None else (
            None if max_bytes is None else max_bytes // 4)
        self._nbytes = 0
        self._checked = 0  # bytes at the last budget check
        cache.register_store(self)

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None when absent."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V, nbytes: int | None = None) -> bool:
        """Keep ``value`` (``nbytes`` if the caller knows them); False when it is too big."""
        size = self._size_of(value) if nbytes is None else int(nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            if self._max_value is not None and size > self._max_value:
                return False
            self._items[key] = (value, size)
            self._nbytes += size
            self._trim_locked(self._max_items, self._max_bytes)
            grown = self._nbytes - self._checked
            if grown < _RECLAIM_STEP:  # small puts add up before the cache is asked
                return True
            self._checked = self._nbytes
        cache.reclaim()  # outside this map's lock: the cache may ask other maps to shrink
        return True

    def pop(self, key: K) -> V | None:
        with self._lock:
            hit = self._items.pop(key, None)
            if hit is None:
                return None
            self._nbytes -= hit[1]
            self._checked = min(self._checked, self._nbytes)
            return hit[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = self._checked = 0

    def shrink(self, n_bytes: int) -> int:
        """Drop least recently used values until ``n_bytes`` are freed (or the map is empty)."""
        with self._lock:
            before = self._nbytes
            self._trim_locked(None, max(0, before - n_bytes), keep_one=False)
            self._checked = min(self._checked, self._nbytes)
            return before - self._nbytes

    def _trim_locked(self, max_items: int | None, max_bytes: int | None,
                     keep_one: bool = True) -> None:
        floor = 1 if keep_one else 0
        while len(self._items) > floor and (
                (max_items is not None and len(self._items) > max_items)
                or (max_bytes is not None and self._nbytes > max_bytes)):
            self._nbytes -= self._items.popitem(last=False)[1][1]
        self._checked = min(self._checked, self._nbytes)
