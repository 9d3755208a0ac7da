"""Load objects: one handle that is both awaitable and blocking, with a cancel that really cancels."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from ..errors import LoadTimeoutError
from ..redact import redact_text
from .image import Image
from .runtime import chain_to_caller, in_worker_thread, runtime

T = TypeVar("T")
_CANCEL_WAIT_S = 2.0  # how long cancel() waits to learn whether the load ended cancelled


class CancelSignal:
    """What a sync loader polls to learn its load was cancelled (the ``signal`` option).

    Async loaders need not look at it: they get ``asyncio.CancelledError`` at their next await,
    which also aborts an in-flight httpx request.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._callbacks: list[Callable[[], Any]] = []
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise concurrent.futures.CancelledError()

    def add_callback(self, fn: Callable[[], Any]) -> None:
        with self._lock:
            if not self._event.is_set():
                self._callbacks.append(fn)
                return
        fn()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def set(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn()
            except Exception:  # pragma: no cover - a callback must not stop the others
                pass


class LoadObject(Generic[T]):
    """A load in progress on the medstream loop.

    ``await obj`` from any event loop, or ``obj.result(timeout)`` from any thread. ``cancel()``
    cancels the task (aborting HTTP I/O at its await) and sets ``signal`` for sync loaders;
    waiters then get ``CancelledError``. Several callers may share one object (cache de-dup).
    """

    def __init__(
        self,
        key: str,
        coro_factory: Callable[[CancelSignal], Coroutine[Any, Any, T]],
        decache: Callable[[LoadObject[Any]], None] | None = None,
        *,
        start: bool = True,
    ) -> None:
        self.key = key
        self.signal = CancelSignal()
        self._future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._task: asyncio.Task[T] | None = None
        self._decache = decache
        self._cancel_requested = False
        self._coro: Coroutine[Any, Any, T] | None = coro_factory(self.signal)
        if start:
            self.start()

    def start(self) -> None:
        """Schedule the load (done by the constructor unless ``start=False``: a creator that
        needs the object in place before its coroutine runs starts it afterwards)."""
        coro, self._coro = self._coro, None
        if coro is not None:
            runtime.call_soon(self._start, coro)

    # The task is created on the loop thread; a cancel arriving first is honoured at start.
    def _start(self, coro: Coroutine[Any, Any, T]) -> None:
        if self._cancel_requested:
            coro.close()
            self._future.cancel()
            return
        self._task = asyncio.get_running_loop().create_task(coro)
        self._task.add_done_callback(self._copy_result)

    def _copy_result(self, task: asyncio.Task[T]) -> None:
        if self._future.done():
            return
        if task.cancelled():
            self._future.cancel()
            return
        exc = task.exception()
        if exc is not None:
            self._future.set_exception(exc)
        else:
            self._future.set_result(task.result())

    # -- public API --------------------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, T]:
        return chain_to_caller(self._future, asyncio.get_running_loop()).__await__()

    def result(self, timeout: float | None = None) -> T:
        """Block until done. Raises the load's error, ``CancelledError`` or ``TimeoutError``.

        A timeout does not cancel the load (it may be shared); call ``cancel()`` for that.
        """
        if not self._future.done() and (runtime.in_loop_thread() or in_worker_thread()):
            raise RuntimeError(
                f"{redact_text(self.key)}: blocking result() in a medstream loop or worker thread "
                "would wait on itself; use await (an async loader) instead")
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            if self._future.done():
                raise  # the load itself timed out: its own error
            raise LoadTimeoutError(self.key, timeout) from None

    def cancel(self) -> bool:
        """Abort the load. True only if it ends cancelled: False if it had already finished (or
        finished before the cancel reached it)."""
        if self._future.done():
            return False
        self._cancel_requested = True
        self.signal.set()
        if runtime.in_loop_thread():
            return self._do_cancel()
        reached = threading.Event()
        verdict: list[bool] = []

        def on_loop() -> None:
            verdict.append(self._do_cancel())
            reached.set()

        runtime.call_soon(on_loop)
        if not reached.wait(_CANCEL_WAIT_S) or not verdict[0]:
            return bool(verdict and verdict[0]) or not reached.is_set()
        try:  # (futures.wait is not woken by cancel(); the condition is)
            self._future.exception(_CANCEL_WAIT_S)
        except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError):
            pass
        return self._future.cancelled() or not self._future.done()

    def _do_cancel(self) -> bool:
        """On the loop: cancel the task (or the not yet started load); False if already over."""
        if self._task is not None:
            return self._task.cancel()
        return self._future.cancel()

    def decache(self) -> None:
        """Remove this object from the cache (no-op for uncached loads)."""
        if self._decache is not None:
            self._decache(self)

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._future.exception(timeout)

    def add_done_callback(self, fn: Callable[[LoadObject[T]], Any]) -> None:
        """``fn(self)`` runs when the load finishes, in the thread that finished it."""
        # A weak reference: a finished future keeps its callbacks, and a strong one would make a
        # cycle that keeps the loaded pixels alive until the cyclic GC happens to run.
        ref = weakref.ref(self)

        def call(_f: concurrent.futures.Future[T]) -> None:
            obj = ref()
            if obj is not None:
                fn(obj)

        self._future.add_done_callback(call)

    @property
    def future(self) -> concurrent.futures.Future[T]:
        return self._future

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled() else "done" if self.done() else "pending"
        return f"<{type(self).__name__} {redact_text(self.key)!r} {state}>"


class ImageLoadObject(LoadObject[Image]):
    @property
    def image_id(self) -> str:
        return self.key


class VolumeLoadObject(LoadObject[Any]):
    @property
    def volume_id(self) -> str:
        return self.key
