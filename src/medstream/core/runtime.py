"""One background event loop plus a worker thread pool, shared by every load.

Why: sync callers (scripts, notebooks) must not manage an event loop, async callers must never have
their loop blocked, and cancellation must reach in-flight HTTP requests. Running all loads as tasks
on a private loop in a daemon thread gives all three: a blocking call waits on a
``concurrent.futures.Future``, an ``await`` waits on a future of the caller's own loop, and
``cancel()`` cancels the task where it runs. CPU work (decoding, file reads) goes to the worker
pool; imagecodecs releases the GIL, so frames decode in parallel.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import concurrent.futures.thread  # registers its exit join now, so ours (later) runs first
import functools
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("medstream.runtime")
_worker = threading.local()


def _mark_worker() -> None:
    _worker.is_worker = True


def in_worker_thread() -> bool:
    """Whether the caller runs in a medstream worker thread (a sync loader, a decode)."""
    return getattr(_worker, "is_worker", False)


class Runtime:
    def __init__(self, workers: int | None = None) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        env = os.environ.get("MEDSTREAM_WORKERS", "")
        self._workers = workers or (int(env) if env.isdigit() and int(env) > 0 else 0) or max(
            2, os.cpu_count() or 2)  # MEDSTREAM_WORKERS: decode threads (default: the cores)
        self._pid = os.getpid()

    # -- lifecycle -------------------------------------------------------------------------
    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._pid != os.getpid():  # forked child (e.g. a Dask worker): threads did not survive
            self._loop, self._thread, self._executor = None, None, None
            self._lock = threading.Lock()
            self._pid = os.getpid()
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    while True:  # a callback raising SystemExit must not end every later load
                        try:
                            loop.run_forever()
                            return
                        except BaseException:
                            log.exception("medstream loop: a callback raised; loop kept running")

                thread = threading.Thread(target=run, name="medstream-loop", daemon=True)
                thread.start()
                ready.wait()
                self._thread = thread
                self._loop = loop
            return self._loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._ensure()

    @property
    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None or self._pid != os.getpid():
            self._ensure()
            with self._lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self._workers, thread_name_prefix="medstream-worker",
                        initializer=_mark_worker,
                    )
        return self._executor

    @property
    def workers(self) -> int:
        return self._workers

    def set_workers(self, n: int) -> None:
        """Resize the CPU pool (decode threads). Takes effect for work submitted afterwards."""
        with self._lock:
            old, self._executor = self._executor, None
            self._workers = max(1, int(n))
        if old is not None:
            old.shutdown(wait=False)

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def shutdown(self) -> None:
        """Stop the loop and pool (tests and interpreter exit); they restart lazily on next use."""
        with self._lock:
            loop, thread, ex = self._loop, self._thread, self._executor
            self._loop = self._thread = self._executor = None
        if loop is not None and thread is not None and thread.is_alive():
            own = threading.current_thread() is not thread
            if own:
                _close_resources(loop)
            loop.call_soon_threadsafe(loop.stop)
            if own:
                thread.join(timeout=5)
                if not thread.is_alive() and not loop.is_running():
                    loop.close()  # no "unclosed event loop" ResourceWarning at exit
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)

    # -- submitting work -------------------------------------------------------------------
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the medstream loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Block the calling thread on a coroutine run by the medstream loop."""
        if self.in_loop_thread() or in_worker_thread():
            coro.close()
            raise RuntimeError("blocking medstream call made from a medstream loop or worker "
                               "thread (it would wait on itself); use await or an async loader")
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    async def to_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking CPU or file work in the worker pool without blocking the running loop.
        The work runs in a copy of the caller's context (an ``ms.Client``'s scope goes with it;
        ``run_in_executor`` alone would drop it)."""
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        return await loop.run_in_executor(
            self.executor, functools.partial(ctx.run, fn, *args, **kwargs))


#: ``async fn()`` run on the loop before it stops (HTTP clients close their connections).
closers: list[Callable[[], Awaitable[Any]]] = []


def _close_resources(loop: asyncio.AbstractEventLoop, timeout: float = 2.0) -> None:
    async def close_all() -> None:
        for fn in list(closers):
            try:
                await fn()
            except Exception:  # exit must go on
                pass
        await loop.shutdown_asyncgens()

    try:
        asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout)
    except BaseException:  # a stuck close must not hold the exit
        pass


runtime = Runtime()
atexit.register(runtime.shutdown)
_exit_hooks: list[Callable[[], Any]] = []


def add_exit_hook(fn: Callable[[], Any]) -> None:
    """``fn()`` runs at interpreter exit before the worker threads are joined (so loads in
    flight can be cancelled instead of holding the exit)."""
    _exit_hooks.append(fn)


def _before_thread_join() -> None:
    for fn in _exit_hooks:
        try:
            fn()
        except BaseException:  # pragma: no cover - exit must go on
            pass
    runtime.shutdown()


try:  # runs before concurrent.futures joins its workers (registered earlier, run later)
    threading._register_atexit(_before_thread_join)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other interpreters
    pass


def chain_to_caller(
    source: concurrent.futures.Future[T], loop: asyncio.AbstractEventLoop
) -> Awaitable[T]:
    """An asyncio future on ``loop`` that follows ``source`` one way only.

    Unlike ``asyncio.wrap_future``, cancelling the awaiter does not cancel ``source``: a load shared
    by several callers (de-duplicated cache entry) must not be cancelled by one impatient awaiter.
    """
    dest: asyncio.Future[T] = loop.create_future()

    def copy(src: concurrent.futures.Future[T]) -> None:
        if dest.done():
            return
        if src.cancelled():
            dest.cancel()
            return
        exc = src.exception()
        if exc is not None:
            dest.set_exception(exc)
        else:
            dest.set_result(src.result())

    def on_done(src: concurrent.futures.Future[T]) -> None:
        if loop.is_closed():
            return
        loop.call_soon_threadsafe(copy, src)

    source.add_done_callback(on_done)
    return dest
