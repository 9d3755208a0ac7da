"""Request pools: what the user looks at now beats thumbnails, prefetch and compute.

Types are served strictly in order interaction > thumbnail > prefetch > compute: a lower type only
starts a request while every higher type has nothing queued that could start. Within a type, a
lower ``priority`` number starts first and equal priorities are FIFO. Each type has its own
concurrency cap, and each server (the origin named in the request's ID) a cap across all types,
so one stalled server cannot hold every slot while local files and other servers wait. All
bookkeeping happens on the medstream loop, so no locks are needed there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from .runtime import runtime

T = TypeVar("T")


class RequestType(str, Enum):
    INTERACTION = "interaction"
    THUMBNAIL = "thumbnail"
    PREFETCH = "prefetch"
    COMPUTE = "compute"


_ORDER = (RequestType.INTERACTION, RequestType.THUMBNAIL, RequestType.PREFETCH, RequestType.COMPUTE)
DEFAULT_MAX = {
    RequestType.INTERACTION: 6,
    RequestType.THUMBNAIL: 6,
    RequestType.PREFETCH: 6,
    RequestType.COMPUTE: 1000,
}


DEFAULT_MAX_PER_HOST = 4  # of the 6 slots of a type: 2 stay free for other sources
_URL_IN_ID = re.compile(r"https?://[^/?#\s]+", re.IGNORECASE)


def host_of(details: dict[str, Any]) -> str | None:
    """The origin a request goes to (from the URL inside its ID), None for local sources."""
    m = _URL_IN_ID.search(str(details.get("id", "")))
    if m is None:
        return None
    netloc = m.group(0).split("://", 1)[1].rsplit("@", 1)[-1].lower()
    return f"{m.group(0).split('://', 1)[0].lower()}://{netloc}"


@dataclass(order=True)
class _Queued:
    priority: float
    seq: int
    type: RequestType = field(compare=False)
    details: dict[str, Any] = field(compare=False)
    gate: asyncio.Future[None] = field(compare=False)
    host: str | None = field(compare=False, default=None)


class RequestPoolManager:
    def __init__(self) -> None:
        self._max = dict(DEFAULT_MAX)
        # one heap per (type, host): a capped host's backlog never hides the others' requests
        self._queues: dict[RequestType, dict[str | None, list[_Queued]]] = {t: {} for t in _ORDER}
        self._running: dict[RequestType, int] = {t: 0 for t in _ORDER}
        self._host_running: dict[str, int] = {}
        self.max_per_host = DEFAULT_MAX_PER_HOST
        self._running_tasks: dict[asyncio.Task[Any], tuple[RequestType, dict[str, Any]]] = {}
        self._seq = itertools.count()

    # -- settings and introspection (any thread; reads are racy but harmless) -------------------
    def set_max_simultaneous_requests(self, request_type: RequestType | str, n: int) -> None:
        self._max[RequestType(request_type)] = max(1, int(n))
        if runtime._loop is not None:
            runtime.call_soon(self._dispatch)

    def get_max_simultaneous_requests(self, request_type: RequestType | str) -> int:
        return self._max[RequestType(request_type)]

    def set_max_per_host(self, n: int) -> None:
        """Requests in flight to one server, across all types."""
        self.max_per_host = max(1, int(n))
        if runtime._loop is not None:
            runtime.call_soon(self._dispatch)

    def get_request_pool(self) -> dict[RequestType, int]:
        """Queued (not started) requests per type."""
        return {t: sum(1 for heap in list(self._queues[t].values()) for q in list(heap)
                       if not q.gate.done()) for t in _ORDER}

    def get_running(self) -> dict[RequestType, int]:
        return dict(self._running)

    # -- running requests ----------------------------------------------------------------------
    async def run(
        self,
        fn: Callable[[], Awaitable[T]],
        request_type: RequestType | str = RequestType.INTERACTION,
        priority: float = 0,
        details: dict[str, Any] | None = None,
    ) -> T:
        """Wait for a slot of ``request_type``, then run ``fn()``. Must run on the medstream loop.

        Cancelling the calling task while queued removes the request; while running, cancels it.
        """
        rtype = RequestType(request_type)
        loop = asyncio.get_running_loop()
        details = details or {}
        item = _Queued(priority, next(self._seq), rtype, details, loop.create_future(),
                       host_of(details))
        heapq.heappush(self._queues[rtype].setdefault(item.host, []), item)
        self._dispatch()
        try:
            await item.gate
        except asyncio.CancelledError:
            if item.gate.done() and not item.gate.cancelled():
                self._finish(rtype, item.host)  # got a slot in the same tick we were cancelled
            else:
                item.gate.cancel()
            raise
        task = asyncio.current_task()
        assert task is not None
        self._running_tasks[task] = (rtype, item.details)
        try:
            return await fn()
        finally:
            self._running_tasks.pop(task, None)
            self._finish(rtype, item.host)

    def add_request(
        self,
        fn: Callable[[], Awaitable[T]],
        request_type: RequestType | str = RequestType.INTERACTION,
        priority: float = 0,
        details: dict[str, Any] | None = None,
    ) -> concurrent.futures.Future[T]:
        """Queue an async request from any thread; cancel the returned future to drop it."""

        async def go() -> T:
            return await self.run(fn, request_type, priority, details)

        return runtime.submit(go())

    def _finish(self, rtype: RequestType, host: str | None = None) -> None:
        self._running[rtype] -= 1
        if host is not None:
            left = self._host_running.get(host, 0) - 1
            if left > 0:
                self._host_running[host] = left
            else:
                self._host_running.pop(host, None)
        self._dispatch()

    def _next(self, rtype: RequestType) -> list[_Queued] | None:
        """The heap whose head starts next: the best head among hosts under their cap."""
        best: list[_Queued] | None = None
        queues = self._queues[rtype]
        for host in list(queues):
            heap = queues[host]
            while heap and heap[0].gate.done():  # drop cancelled entries
                heapq.heappop(heap)
            if not heap:
                del queues[host]
                continue
            if host is not None and self._host_running.get(host, 0) >= self.max_per_host:
                continue
            if best is None or heap[0] < best[0]:
                best = heap
        return best

    def _dispatch(self) -> None:
        for rtype in _ORDER:
            while (heap := self._next(rtype)) is not None:
                if self._running[rtype] >= self._max[rtype]:
                    return  # strict ordering: lower types wait while this type has a backlog
                item = heapq.heappop(heap)
                self._running[rtype] += 1
                if item.host is not None:
                    self._host_running[item.host] = self._host_running.get(item.host, 0) + 1
                item.gate.set_result(None)

    # -- cancelling ----------------------------------------------------------------------------
    def clear_request_stack(self, request_type: RequestType | str) -> None:
        """Drop every queued (not yet started) request of a type."""
        rtype = RequestType(request_type)

        def clear() -> None:
            for heap in self._queues[rtype].values():
                for item in heap:
                    item.gate.cancel()
            self._queues[rtype] = {}
            self._dispatch()

        runtime.call_soon(clear)

    def cancel(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Cancel queued and running requests whose details match ``predicate``."""

        def go() -> None:
            for rtype in _ORDER:
                for heap in self._queues[rtype].values():
                    for item in heap:
                        if not item.gate.done() and predicate(item.details):
                            item.gate.cancel()
            for task, (_, details) in list(self._running_tasks.items()):
                if predicate(details):
                    task.cancel()
            self._dispatch()

        runtime.call_soon(go)


request_pools = RequestPoolManager()
