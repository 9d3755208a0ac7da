"""Byte-bounded LRU cache and prioritised request pools."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import numpy as np
import pytest

import medstream as ms
from medstream import RequestType


def _loader(image_id: str) -> ms.Image:
    n = int(image_id.split(":")[1].split("-")[0])  # "sz:<bytes>-<name>"
    return ms.Image.from_array(image_id, np.zeros((1, n), dtype=np.uint8))


@pytest.fixture
def sized():
    ms.register_image_loader("sz", _loader)


def test_lru_eviction_order_and_bytes(sized):
    removed, added = [], []
    ms.events.add_event_listener(ms.Events.IMAGE_CACHE_IMAGE_REMOVED, lambda e: removed.append(e.detail["key"]))
    ms.events.add_event_listener(ms.Events.IMAGE_CACHE_IMAGE_ADDED, lambda e: added.append(e.detail["key"]))
    ms.set_max_cache_size(1000)
    for name in "abc":
        ms.load_and_cache_image(f"sz:300-{name}").result(5)
    assert ms.get_cache_size() == 900 and added == ["sz:300-a", "sz:300-b", "sz:300-c"]
    ms.load_and_cache_image("sz:300-a").result(5)  # touch a: b is now least recently used
    ms.load_and_cache_image("sz:300-d").result(5)
    assert removed == ["sz:300-b"]
    assert ms.get_cache_size() == 900
    assert set(ms.cache.keys()) == {"sz:300-a", "sz:300-c", "sz:300-d"}
    ms.load_and_cache_image("sz:600-e").result(5)  # needs two evictions: c then a
    assert removed == ["sz:300-b", "sz:300-c", "sz:300-a"]
    assert ms.get_cache_size() == 900
    ms.set_max_cache_size(500)  # shrinking evicts at once
    assert ms.get_cache_size() <= 500
    ms.purge_cache()
    assert ms.get_cache_size() == 0 and len(ms.cache) == 0


def test_item_larger_than_cache_is_refused_and_evicts_nothing(sized):
    ms.set_max_cache_size(1000)
    ms.load_and_cache_image("sz:400-a").result(5)
    with pytest.raises(ms.CacheSizeExceededError) as ei:
        ms.load_and_cache_image("sz:2000-big").result(5)
    assert "sz:2000-big" in str(ei.value) and "1000" in str(ei.value)
    assert set(ms.cache.keys()) == {"sz:400-a"} and ms.get_cache_size() == 400


def test_pinned_entries_are_not_evicted(sized):
    ms.set_max_cache_size(1000)
    ms.load_and_cache_image("sz:400-a").result(5)
    ms.load_and_cache_image("sz:400-b").result(5)
    ms.cache.pin("sz:400-a", "vol1")
    ms.cache.pin("sz:400-b", "vol1")
    with pytest.raises(ms.CacheSizeExceededError, match="pinned"):
        ms.load_and_cache_image("sz:400-c").result(5)
    assert set(ms.cache.keys()) == {"sz:400-a", "sz:400-b"}
    ms.cache.unpin("sz:400-a", "vol1")
    ms.load_and_cache_image("sz:400-c").result(5)
    assert set(ms.cache.keys()) == {"sz:400-b", "sz:400-c"}


def test_decache_and_in_flight_entries_weigh_nothing(sized):
    gate = threading.Event()

    def slow(image_id):
        gate.wait(5)
        return _loader(image_id)

    ms.register_image_loader("szslow", slow)
    obj = ms.load_and_cache_image("szslow:500-x")
    assert "szslow:500-x" in ms.cache and ms.get_cache_size() == 0
    gate.set()
    obj.result(5)
    assert ms.get_cache_size() == 500
    obj.decache()
    assert ms.get_cache_size() == 0 and "szslow:500-x" not in ms.cache


def test_purge_cancels_in_flight():
    async def slow(image_id):
        await asyncio.sleep(30)

    ms.register_image_loader("pslow", slow)
    obj = ms.load_and_cache_image("pslow:1")
    ms.purge_cache()
    with pytest.raises(concurrent.futures.CancelledError):
        obj.result(5)


def _pool_run(fn, rtype, priority=0, details=None):
    return ms.request_pools.add_request(fn, rtype, priority, details)


def _queued() -> int:
    return sum(ms.request_pools.get_request_pool().values())


def _wait_on_loop(condition, timeout: float = 30.0) -> None:
    """Wait until ``condition()`` holds, checked on the medstream loop (so it sees the pools
    between two of their steps, never in the middle of one). The timeout guards a hang: the
    condition normally holds within milliseconds. The pools decide to start or hold a request
    when it is queued, so "all queued, none started" shows they were held back."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    ms.runtime.run_sync(poll(), timeout=timeout)


def test_interaction_starts_before_queued_prefetch():
    """500 slow prefetch requests queued; an interaction request starts before any more prefetch."""
    order: list[str] = []
    release = asyncio.Event  # created on the loop below
    state: dict[str, asyncio.Event] = {}

    async def make_event():
        state["go"] = release()

    ms.runtime.run_sync(make_event())

    def prefetch(k):
        async def fn():
            order.append(f"p{k}")
            await state["go"].wait()
        return fn

    futs = [_pool_run(prefetch(k), RequestType.PREFETCH) for k in range(500)]

    async def wait_started():
        while len(order) < ms.request_pools.get_max_simultaneous_requests("prefetch"):
            await asyncio.sleep(0.005)

    ms.runtime.run_sync(wait_started(), timeout=30)  # a hang guard: it takes milliseconds
    assert ms.request_pools.get_request_pool()[RequestType.PREFETCH] == 500 - len(order)

    async def interaction():
        order.append("interaction")
        return "done"

    ifut = _pool_run(interaction, RequestType.INTERACTION)
    assert ifut.result(5) == "done"
    n_before = order.index("interaction")
    ms.runtime.call_soon(state["go"].set)
    for f in futs:
        f.result(10)
    assert n_before == ms.request_pools.get_max_simultaneous_requests("prefetch")
    assert len(order) == 501


def test_type_order_priority_and_fifo():
    ms.request_pools.set_max_simultaneous_requests(RequestType.COMPUTE, 1)
    ms.request_pools.set_max_simultaneous_requests(RequestType.PREFETCH, 1)
    ms.request_pools.set_max_simultaneous_requests(RequestType.THUMBNAIL, 1)
    order: list[str] = []
    state: dict[str, asyncio.Event] = {}

    async def setup():
        state["go"] = asyncio.Event()

    ms.runtime.run_sync(setup())

    async def blocker():
        order.append("blocker")
        await state["go"].wait()

    def rec(name):
        async def fn():
            order.append(name)
        return fn

    ms.request_pools.set_max_simultaneous_requests(RequestType.INTERACTION, 1)
    first = _pool_run(blocker, RequestType.INTERACTION)
    futs = [
        _pool_run(rec("inter-2"), RequestType.INTERACTION, 0),
        _pool_run(rec("inter-1"), RequestType.INTERACTION, -1),
        _pool_run(rec("compute"), RequestType.COMPUTE),
        _pool_run(rec("prefetch-p5"), RequestType.PREFETCH, 5),
        _pool_run(rec("prefetch-p1-a"), RequestType.PREFETCH, 1),
        _pool_run(rec("prefetch-p1-b"), RequestType.PREFETCH, 1),
        _pool_run(rec("thumb"), RequestType.THUMBNAIL),
    ]
    # The interaction backlog holds every lower type back until it drains: all queued, none
    # started (a request the pools may start is started the moment it is queued).
    _wait_on_loop(lambda: "blocker" in order and _queued() == len(futs))
    assert order == ["blocker"]
    ms.runtime.call_soon(state["go"].set)
    first.result(5)
    for f in futs:
        f.result(5)
    # Then type by type (compute waits for the prefetch backlog); priority, then FIFO, within one.
    assert order == [
        "blocker", "inter-1", "inter-2", "thumb",
        "prefetch-p1-a", "prefetch-p1-b", "prefetch-p5", "compute",
    ]


def test_clear_and_cancel_by_predicate():
    ms.request_pools.set_max_simultaneous_requests(RequestType.PREFETCH, 1)
    state: dict[str, asyncio.Event] = {}

    async def setup():
        state["go"] = asyncio.Event()

    ms.runtime.run_sync(setup())
    ran: list[int] = []

    def req(k):
        async def fn():
            ran.append(k)
            await state["go"].wait()
        return fn

    futs = [_pool_run(req(k), RequestType.PREFETCH, 0, {"k": k}) for k in range(10)]
    _wait_on_loop(lambda: len(ran) == 1 and _queued() == 9)  # one slot: one runs, nine wait
    assert ran == [0]
    ms.request_pools.cancel(lambda d: d.get("k") in (0, 3))  # one running, one queued
    with pytest.raises(concurrent.futures.CancelledError):
        futs[0].result(5)
    with pytest.raises(concurrent.futures.CancelledError):
        futs[3].result(5)
    # The freed slot goes to the next queued request (1), the cancelled queued one (3) is gone.
    _wait_on_loop(lambda: len(ran) == 2 and _queued() == 7)
    assert ran == [0, 1]
    ms.request_pools.clear_request_stack(RequestType.PREFETCH)
    ms.runtime.call_soon(state["go"].set)
    futs[1].result(5)
    for k in (2, 4, 5, 6, 7, 8, 9):
        with pytest.raises(concurrent.futures.CancelledError):
            futs[k].result(5)
    assert ran == [0, 1]
    assert ms.request_pools.get_running()[RequestType.PREFETCH] == 0


def test_image_loads_use_pool_types():
    ms.request_pools.set_max_simultaneous_requests(RequestType.PREFETCH, 2)
    running, peak = [0], [0]
    lock = threading.Lock()

    async def loader(image_id):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.02)
        with lock:
            running[0] -= 1
        return ms.Image.from_array(image_id, np.zeros((2, 2), np.uint8))

    ms.register_image_loader("pool", loader)
    objs = [ms.load_image(f"pool:{k}", request_type="prefetch") for k in range(10)]
    for o in objs:
        o.result(5)
    assert peak[0] == 2
