"""Request pools: what the user looks at now beats thumbnails, prefetch and compute.

Types are served strictly in order interaction > thumbnail > prefetch > compute: a lower type only
starts a request while every higher type has nothing queued. Within a type, a lower ``priority``
number starts first and equal priorities are FIFO. Each type has its own concurrency cap. All
bookkeeping happens on the medstream loop, so no locks are needed there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
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


@dataclass(order=True)
class _Queued:
    priority: float
    seq: int
    type: RequestType = field(compare=False)
    details: dict[str, Any] = field(compare=False)
    gate: asyncio.Future[None] = field(compare=False)


class RequestPoolManager:
    def __init__(self) -> None:
        self._max = dict(DEFAULT_MAX)
        self._queues: dict[RequestType, list[_Queued]] = {t: [] for t in _ORDER}
        self._running: dict[RequestType, int] = {t: 0 for t in _ORDER}
        self._running_tasks: dict[asyncio.Task[Any], tuple[RequestType, dict[str, Any]]] = {}
        self._seq = itertools.count()

    # -- settings and introspection (any thread; reads are racy but harmless) -------------------
    def set_max_simultaneous_requests(self, request_type: RequestType | str, n: int) -> None:
        self._max[RequestType(request_type)] = max(1, int(n))
        if runtime._loop is not None:
            runtime.call_soon(self._dispatch)

    def get_max_simultaneous_requests(self, request_type: RequestType | str) -> int:
        return self._max[RequestType(request_type)]

    def get_request_pool(self) -> dict[RequestType, int]:
        """Queued (not started) requests per type."""
        return {t: sum(1 for q in self._queues[t] if not q.gate.done()) for t in _ORDER}

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
        item = _Queued(priority, next(self._seq), rtype, details or {}, loop.create_future())
        heapq.heappush(self._queues[rtype], item)
        self._dispatch()
        try:
            await item.gate
        except asyncio.CancelledError:
            if item.gate.done() and not item.gate.cancelled():
                self._finish(rtype)  # got a slot in the same tick we were cancelled
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
            self._finish(rtype)

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

    def _finish(self, rtype: RequestType) -> None:
        self._running[rtype] -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        for rtype in _ORDER:
            queue = self._queues[rtype]
            while queue and queue[0].gate.done():  # drop cancelled entries
                heapq.heappop(queue)
            while queue and self._running[rtype] < self._max[rtype]:
                item = heapq.heappop(queue)
                if item.gate.done():
                    continue
                self._running[rtype] += 1
                item.gate.set_result(None)
            while queue and queue[0].gate.done():
                heapq.heappop(queue)
            if queue:
                return  # strict ordering: lower types wait while this type has a backlog

    # -- cancelling ----------------------------------------------------------------------------
    def clear_request_stack(self, request_type: RequestType | str) -> None:
        """Drop every queued (not yet started) request of a type."""
        rtype = RequestType(request_type)

        def clear() -> None:
            for item in self._queues[rtype]:
                item.gate.cancel()
            self._queues[rtype] = []
            self._dispatch()

        runtime.call_soon(clear)

    def cancel(self, predicate: Callable[[dict[str, Any]], bool]) -> None:
        """Cancel queued and running requests whose details match ``predicate``."""

        def go() -> None:
            for rtype in _ORDER:
                for item in self._queues[rtype]:
                    if not item.gate.done() and predicate(item.details):
                        item.gate.cancel()
            for task, (_, details) in list(self._running_tasks.items()):
                if predicate(details):
                    task.cancel()
            self._dispatch()

        runtime.call_soon(go)


request_pools = RequestPoolManager()
