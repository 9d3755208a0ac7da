"""Registries, load objects (sync and async), cancellation, de-duplication, events, metadata."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest

import medstream as ms


def make_image(image_id: str, n: int = 4, value: int = 1) -> ms.Image:
    return ms.Image.from_array(image_id, np.full((n, n), value, dtype=np.int16))


def test_sync_loader_blocking_and_await():
    ms.register_image_loader("t1", lambda image_id: make_image(image_id))
    img = ms.load_image("t1:a").result(timeout=5)
    assert img.image_id == "t1:a" and img.rows == 4
    assert img.get_pixel_data().dtype == np.int16
    assert img.load_time_ms is not None

    async def main():
        return await ms.load_image("t1:b")

    assert asyncio.run(main()).image_id == "t1:b"


def test_async_loader_and_returned_load_object():
    async def aloader(image_id):
        await asyncio.sleep(0.01)
        return make_image(image_id, value=7)

    ms.register_image_loader("t2", aloader)
    # A loader may return another load object (delegation).
    ms.register_image_loader("t3", lambda image_id: ms.load_image("t2" + image_id[2:]))
    assert ms.load_image("t2:x").result(5).pixel_data[0, 0] == 7
    img = ms.load_image("t3:y").result(5)
    assert img.image_id == "t2:y"


def test_custom_scheme_from_readme():
    def load_custom(image_id: str) -> ms.Image:
        pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
        return ms.Image.from_array(image_id, pixels)

    ms.register_image_loader("custom1", load_custom)
    image = ms.load_image("custom1://example.com/image.dcm").result()
    assert image.columns == 8 and image.max_pixel_value == 63


def test_reregistering_replaces():
    ms.register_image_loader("t4", lambda i: make_image(i, value=1))
    ms.register_image_loader("t4", lambda i: make_image(i, value=2))
    assert ms.load_image("t4:a").result(5).pixel_data[0, 0] == 2


def test_unknown_scheme_and_fallback():
    with pytest.raises(ms.UnknownSchemeError) as ei:
        ms.load_image("nosuchscheme:abc")
    assert "nosuchscheme" in str(ei.value) and ei.value.image_id == "nosuchscheme:abc"
    prev = ms.register_unknown_image_loader(lambda i: make_image(i, value=9))
    try:
        assert ms.load_image("nosuchscheme:abc").result(5).pixel_data[0, 0] == 9
        assert ms.register_unknown_image_loader(prev) is not None
    finally:
        ms.register_unknown_image_loader(prev)


def test_loader_error_is_typed_and_names_id():
    def bad(image_id):
        raise ValueError("boom")

    failures = []
    ms.events.add_event_listener(ms.Events.IMAGE_LOAD_FAILED, failures.append)
    ms.register_image_loader("bad", bad)
    with pytest.raises(ms.ImageLoadError) as ei:
        ms.load_image("bad:1").result(5)
    assert "bad:1" in str(ei.value) and "boom" in str(ei.value)
    assert isinstance(ei.value.__cause__, ValueError)
    assert failures and failures[0].detail["image_id"] == "bad:1"


def test_wrong_return_type():
    ms.register_image_loader("wrong", lambda i: "not an image")
    with pytest.raises(ms.ImageLoadError, match="expected medstream.Image"):
        ms.load_image("wrong:1").result(5)


def test_cancel_async_loader_in_progress():
    started, observed = threading.Event(), threading.Event()

    async def slow(image_id):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            observed.set()
            raise
        return make_image(image_id)

    ms.register_image_loader("slow", slow)
    obj = ms.load_image("slow:1")
    assert started.wait(5)
    assert obj.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        obj.result(5)
    assert observed.wait(5), "the loader did not see the cancellation"
    assert obj.cancelled()


def test_cancel_sync_loader_sees_signal():
    started, observed = threading.Event(), threading.Event()

    def slow(image_id, signal):
        started.set()
        for _ in range(3000):
            if signal.cancelled:
                observed.set()
                signal.raise_if_cancelled()
            time.sleep(0.01)
        return make_image(image_id)

    ms.register_image_loader("slows", slow)
    obj = ms.load_image("slows:1")
    assert started.wait(5)
    obj.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        obj.result(5)
    assert observed.wait(5)


def test_await_cancelled_load_raises_cancelled_error():
    async def slow(image_id):
        await asyncio.sleep(30)

    ms.register_image_loader("slowa", slow)

    async def main():
        obj = ms.load_image("slowa:1")
        await asyncio.sleep(0.05)
        obj.cancel()
        with pytest.raises(asyncio.CancelledError):
            await obj

    asyncio.run(main())


def test_cancel_load_image_and_all():
    gate = threading.Event()

    async def slow(image_id):
        while not gate.is_set():
            await asyncio.sleep(0.01)
        return make_image(image_id)

    ms.register_image_loader("slowc", slow)
    a, b, c = ms.load_image("slowc:a"), ms.load_image("slowc:a"), ms.load_image("slowc:b")
    assert ms.cancel_load_image("slowc:a") == 2
    for o in (a, b):
        with pytest.raises(concurrent.futures.CancelledError):
            o.result(5)
    assert not c.done()
    assert ms.cancel_load_all() >= 1
    with pytest.raises(concurrent.futures.CancelledError):
        c.result(5)
    gate.set()


def test_deduplicated_concurrent_loads_call_loader_once():
    calls = []

    async def loader(image_id):
        calls.append(image_id)
        await asyncio.sleep(0.1)
        return make_image(image_id)

    ms.register_image_loader("dd", loader)

    async def main():
        objs = [ms.load_and_cache_image("dd:1") for _ in range(5)]
        return await asyncio.gather(*objs)

    images = asyncio.run(main())
    assert len(calls) == 1
    assert all(i is images[0] for i in images)
    # A later call hits the cache.
    assert ms.load_and_cache_image("dd:1").result(1) is images[0]
    assert len(calls) == 1
    assert ms.cache.get_image("dd:1") is images[0]


def test_failed_cached_load_is_retried():
    n = []

    def flaky(image_id):
        n.append(1)
        if len(n) == 1:
            raise OSError("transient")
        return make_image(image_id)

    ms.register_image_loader("flaky", flaky)
    with pytest.raises(ms.ImageLoadError):
        ms.load_and_cache_image("flaky:1").result(5)
    assert "flaky:1" not in ms.cache
    assert ms.load_and_cache_image("flaky:1").result(5).rows == 4


def test_one_awaiter_cancelling_does_not_cancel_shared_load():
    async def loader(image_id):
        await asyncio.sleep(0.2)
        return make_image(image_id)

    ms.register_image_loader("shared", loader)

    async def main():
        obj = ms.load_and_cache_image("shared:1")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.ensure_future(_await(obj)), 0.01)
        return await obj

    async def _await(o):
        return await o

    assert asyncio.run(main()).rows == 4


def test_await_from_two_event_loops_in_threads():
    ms.register_image_loader("thr", lambda i: make_image(i))
    results = []

    def worker(k):
        async def main():
            return await ms.load_and_cache_image(f"thr:{k % 3}")

        results.append(asyncio.run(main()).image_id)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == sorted(f"thr:{k % 3}" for k in range(9))


def test_event_loop_is_not_blocked_by_sync_loader():
    def blocking(image_id):
        time.sleep(0.3)
        return make_image(image_id)

    ms.register_image_loader("blk", blocking)

    async def main():
        ticks = 0
        obj = ms.load_image("blk:1")

        async def ticker():
            nonlocal ticks
            while not obj.done():
                ticks += 1
                await asyncio.sleep(0.01)

        await asyncio.gather(ticker(), _await(obj))
        return ticks

    async def _await(o):
        return await o

    assert asyncio.run(main()) >= 10


def test_events_handler_exception_does_not_break_load(caplog):
    seen = []

    def bad_handler(ev):
        raise RuntimeError("handler bug")

    ms.events.add_event_listener(ms.Events.IMAGE_LOADED, bad_handler)
    ms.events.add_event_listener(ms.Events.IMAGE_LOADED, seen.append)
    ms.register_image_loader("ev", lambda i: make_image(i))
    assert ms.load_image("ev:1").result(5).rows == 4
    assert seen and seen[0].type is ms.Events.IMAGE_LOADED
    assert seen[0].detail["image_id"] == "ev:1"
    assert "handler bug" in caplog.text
    ms.events.remove_event_listener(ms.Events.IMAGE_LOADED, seen.append)
    ms.load_image("ev:2").result(5)
    assert len(seen) == 1


def test_metadata_providers_priority():
    low = lambda module, image_id: {"who": "low"} if module == "m" else None  # noqa: E731
    high = lambda module, image_id: {"who": "high"} if image_id == "x:1" else None  # noqa: E731

    def broken(module, image_id):
        raise KeyError("nope")

    ms.metadata.add_provider(low, priority=0)
    ms.metadata.add_provider(high, priority=10)
    ms.metadata.add_provider(broken, priority=100)
    assert ms.metadata.get("m", "x:1") == {"who": "high"}
    assert ms.metadata.get("m", "x:2") == {"who": "low"}
    assert ms.metadata.get("other", "x:2") is None
    ms.metadata.remove_provider(high)
    assert ms.metadata.get("m", "x:1") == {"who": "low"}
    ms.metadata.remove_provider(low)
    ms.metadata.remove_provider(broken)


def test_volume_registry_and_cache():
    class Vol:
        def __init__(self, vid):
            self.volume_id = vid
            self.size_in_bytes = 1000

    calls = []

    async def vloader(volume_id, image_ids=()):
        calls.append(volume_id)
        await asyncio.sleep(0.01)
        v = Vol(volume_id)
        v.image_ids = list(image_ids)
        return v

    ms.register_volume_loader("myvol", vloader)
    o1 = ms.create_and_cache_volume("myvol:1", image_ids=["a", "b"])
    o2 = ms.create_and_cache_volume("myvol:1", image_ids=["a", "b"])
    assert o1 is o2
    v = o1.result(5)
    assert v.image_ids == ["a", "b"] and calls == ["myvol:1"]
    assert ms.cache.get_volume("myvol:1") is v
    assert ms.get_cache_size() == 1000
    # The default unknown-scheme volume loader is the streaming one: it needs image IDs.
    with pytest.raises(ms.VolumeError, match="no image_ids"):
        ms.load_volume("novol:1").result(5)
    prev = ms.register_unknown_volume_loader(vloader)
    assert prev is ms.volumes.streaming_volume_loader
    try:
        assert ms.load_volume("novol:1").result(5).volume_id == "novol:1"
    finally:
        ms.register_unknown_volume_loader(prev)
    o1.decache()
    assert ms.cache.get_volume("myvol:1") is None and ms.get_cache_size() == 0


def test_blocking_call_inside_loop_is_refused():
    ms.register_image_loader("inner", lambda i: make_image(i))
    errors = []

    async def handler_loader(image_id):
        inner = ms.load_image("inner:1")
        try:
            inner.result(1)
        except RuntimeError as e:
            errors.append(str(e))
        return await inner

    ms.register_image_loader("outer", handler_loader)
    assert ms.load_image("outer:1").result(5).image_id == "inner:1"
    assert errors and "use await" in errors[0]
