"""Byte-bounded LRU cache of image and volume load objects.

In-flight loads are cached too (so concurrent requests for one ID share a load) but weigh nothing
until they resolve; then their bytes are admitted, evicting least-recently-used finished entries.
Entries pinned by a loading volume are never evicted. An entry larger than the whole limit is
refused with ``CacheSizeExceededError`` and evicts nothing.

Everything else the library keeps (parsed files, headers, metadata, remote heads) lives in stores
registered here (``core.kept.KeptMap``): their bytes count in ``get_cache_size()``, share one
budget with the pixels, and ``purge_cache()`` empties them and gives the freed heap back to the OS.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import CacheSizeExceededError
from .events import Events, events
from .load_object import LoadObject

DEFAULT_MAX_CACHE_SIZE = 3 * 1024**3


class KeptStore(Protocol):
    """A store of kept values sharing the cache's budget (see ``core.kept.KeptMap``)."""

    name: str
    shrinkable: bool  # False: only its own bounds and purge_cache() free it

    @property
    def nbytes(self) -> int: ...

    def clear(self) -> None: ...

    def shrink(self, n_bytes: int) -> int: ...


def release_free_heap() -> None:
    """Hand memory freed by Python and numpy back to the OS (glibc keeps it in its arenas
    otherwise, so RSS stays high after a purge). Best effort; nothing on other C libraries."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util  # here: it imports shutil and tempfile, 7 ms of every start

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class _Entry:
    key: str
    kind: str  # "image" | "volume"
    load_object: LoadObject[Any]
    size: int = 0
    admitted: bool = False
    pins: set[str] = field(default_factory=set)


class Cache:
    def __init__(self, max_size: int = DEFAULT_MAX_CACHE_SIZE) -> None:
        self._lock = threading.RLock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max = int(max_size)
        self._size = 0
        self._stores: list[KeptStore] = []

    @property
    def lock(self) -> threading.RLock:
        """Held to look up and insert an entry as one step (re-entrant)."""
        return self._lock  # type: ignore[return-value]

    def register_store(self, store: KeptStore) -> None:
        """Count ``store`` in this cache's size and budget, and empty it on ``purge_cache``."""
        with self._lock:
            self._stores.append(store)

    def stores(self) -> dict[str, int]:
        """Bytes kept per store, besides the cached images and volumes."""
        out: dict[str, int] = {}
        for s in list(self._stores):
            out[s.name] = out.get(s.name, 0) + s.nbytes
        return out

    def _kept(self) -> int:
        return sum(s.nbytes for s in list(self._stores))

    def reclaim(self) -> None:
        """Bring the total back under the limit after a store grew: least recently used
        images and volumes go first, then the shrinkable stores in the order they registered
        (per-image metadata and pixel locators stay: volumes being built read them back)."""
        with self._lock:
            over = self._size + self._kept() - self._max
            if over <= 0:
                return
            removed = self._evict_to(max(0, self._size - over), keep=None)
            over = self._size + self._kept() - self._max
            stores = list(self._stores)
        self._announce_removed(removed)
        for store in stores:
            if over <= 0:
                break
            if store.shrinkable:
                over -= store.shrink(over)

    # -- size ----------------------------------------------------------------------------------
    def set_max_cache_size(self, n_bytes: int) -> None:
        """Lower or raise the limit; evicts unpinned entries (then kept values) down to it."""
        if n_bytes <= 0:
            raise ValueError("cache size must be positive")
        with self._lock:
            self._max = int(n_bytes)
        self.reclaim()

    def get_max_cache_size(self) -> int:
        return self._max

    def get_cache_size(self) -> int:
        """Bytes held by finished entries and by every registered store."""
        return self._size + self._kept()

    def get_bytes_available(self) -> int:
        return self._max - self.get_cache_size()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    # -- images --------------------------------------------------------------------------------
    def get_image_load_object(self, image_id: str) -> LoadObject[Any] | None:
        return self._get(image_id, "image")

    def get_volume_load_object(self, volume_id: str) -> LoadObject[Any] | None:
        return self._get(volume_id, "volume")

    def get_image(self, image_id: str) -> Any:
        """The loaded image if cached and finished, else None."""
        obj = self._get(image_id, "image")
        if obj is None or not obj.done() or obj.cancelled() or obj.exception() is not None:
            return None
        return obj.result()

    def get_volume(self, volume_id: str) -> Any:
        obj = self._get(volume_id, "volume")
        if obj is None or not obj.done() or obj.cancelled() or obj.exception() is not None:
            return None
        return obj.result()

    def _get(self, key: str, kind: str) -> LoadObject[Any] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.kind != kind:
                return None
            self._entries.move_to_end(key)
            return entry.load_object

    def get_live(self, key: str, kind: str) -> LoadObject[Any] | None:
        """The cached load object unless it failed or was cancelled (then it is dropped)."""
        with self._lock:
            obj = self._get(key, kind)
            if obj is not None and obj.done() and (obj.cancelled() or obj.exception()):
                self.remove(key)
                return None
            return obj

    def put(self, key: str, kind: str, load_object: LoadObject[Any]) -> None:
        """Register an in-flight load object; its bytes are admitted later by ``admit``."""
        with self._lock:
            if key in self._entries:
                raise ValueError(f"{key}: already in the cache")
            self._entries[key] = _Entry(key, kind, load_object)

    def admit(self, key: str, size: int) -> None:
        """Account ``size`` bytes for a finished entry, evicting LRU entries to make room.

        Raises ``CacheSizeExceededError`` (and drops the entry) when it cannot fit.
        """
        removed: list[_Entry] = []
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.admitted:
                return
            if size > self._max:
                del self._entries[key]
                events.trigger(Events.CACHE_SIZE_EXCEEDED, key=key, size=size)
                raise CacheSizeExceededError(key, size, self._max)
            kept = self._kept()
            removed = self._evict_to(self._max - size - kept, keep=key)
            over = self._size + kept + size - self._max
            for store in self._stores:  # then what the stores keep (a store never takes this lock
                if over <= 0:           # while holding its own: no lock-order inversion)
                    break
                if store.shrinkable:
                    over -= store.shrink(over)
            if over > 0:
                del self._entries[key]
                self._announce_removed(removed)
                events.trigger(Events.CACHE_SIZE_EXCEEDED, key=key, size=size)
                raise CacheSizeExceededError(
                    key, size, self._max, "the rest is pinned by loading volumes or kept as "
                    "metadata"
                )
            entry.size, entry.admitted = size, True
            self._size += size
            kind = entry.kind
        self._announce_removed(removed)
        added = Events.IMAGE_CACHE_IMAGE_ADDED if kind == "image" else Events.VOLUME_CACHE_VOLUME_ADDED
        events.trigger(added, key=key, size=size)

    def _evict_to(self, target: int, keep: str | None) -> list[_Entry]:
        removed: list[_Entry] = []
        if self._size <= target:
            return removed
        for key in list(self._entries):
            if self._size <= target:
                break
            entry = self._entries[key]
            if key == keep or entry.pins or not entry.admitted:
                continue
            del self._entries[key]
            self._size -= entry.size
            removed.append(entry)
        return removed

    def _announce_removed(self, removed: list[_Entry]) -> None:
        for entry in removed:
            ev = (
                Events.IMAGE_CACHE_IMAGE_REMOVED
                if entry.kind == "image"
                else Events.VOLUME_CACHE_VOLUME_REMOVED
            )
            events.trigger(ev, key=entry.key, size=entry.size)

    def remove(self, key: str, cancel: bool = False) -> bool:
        """Drop one entry (``decache``). With ``cancel`` an in-flight load is also cancelled."""
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return False
            if entry.admitted:
                self._size -= entry.size
        if cancel and not entry.load_object.done():
            entry.load_object.cancel()
        elif cancel and entry.kind == "volume" and not entry.load_object.cancelled():
            if entry.load_object.exception() is None:  # a created volume may still be streaming
                stop = getattr(entry.load_object.result(), "cancel_loading", None)
                if stop is not None:
                    stop()
        if entry.admitted:
            self._announce_removed([entry])
        return True

    def remove_image_load_object(self, image_id: str) -> bool:
        return self.remove(image_id)

    def remove_volume_load_object(self, volume_id: str) -> bool:
        return self.remove(volume_id)

    def purge_cache(self) -> None:
        """Remove every entry, cancelling loads still in flight, empty every store, and give
        the freed memory back to the OS."""
        with self._lock:
            keys = list(self._entries)
            stores = list(self._stores)
        for key in keys:
            self.remove(key, cancel=True)
        for store in stores:
            store.clear()
        release_free_heap()

    # -- pinning -------------------------------------------------------------------------------
    def pin(self, key: str, owner: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.pins.add(owner)

    def unpin(self, key: str, owner: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.pins.discard(owner)

    def is_pinned(self, key: str) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return bool(entry and entry.pins)


cache = Cache()
