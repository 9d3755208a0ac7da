"""load_image / load_and_cache_image / load_volume: run loaders through the pools and cache."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ImageLoadError, MedstreamError
from . import hooks
from .events import Events, events
from .image import Image
from .load_object import CancelSignal, ImageLoadObject, LoadObject, VolumeLoadObject
from .registry import Loader, call_kwargs, image_loaders, volume_loaders
from .request_pools import RequestType
from .scope import current_cache, current_pools
from .runtime import add_exit_hook, runtime

_inflight_lock = threading.Lock()
_inflight: dict[str, set[LoadObject[Any]]] = {}


def track_load(obj: LoadObject[Any]) -> None:
    with _inflight_lock:
        _inflight.setdefault(obj.key, set()).add(obj)

    def untrack(o: LoadObject[Any]) -> None:
        with _inflight_lock:
            objs = _inflight.get(o.key)
            if objs is not None:
                objs.discard(o)
                if not objs:
                    del _inflight[o.key]

    obj.add_done_callback(untrack)


async def run_loader(fn: Loader, item_id: str, options: dict[str, Any]) -> Any:
    """Call a sync loader in the worker pool, await an async one, and follow returned load objects."""
    kwargs = call_kwargs(fn, options)
    if inspect.iscoroutinefunction(fn):
        result = await fn(item_id, **kwargs)
    else:
        try:
            result = await runtime.to_thread(fn, item_id, **kwargs)
        except concurrent.futures.CancelledError as exc:  # the loader honoured the signal
            raise asyncio.CancelledError() from exc
    if isinstance(result, LoadObject):
        try:
            return await result
        except asyncio.CancelledError:
            result.cancel()
            raise
    if inspect.isawaitable(result):
        return await result
    return result


def credentials_key(options: dict[str, Any]) -> str:
    """Digest of the credentials a load would use: cached results are shared only by loads
    made with the same ones (a result fetched with a valid token is not served to another)."""
    return hooks.credentials_key(options)


def as_load_error(image_id: str, exc: BaseException) -> BaseException:
    if isinstance(exc, MedstreamError):
        return exc
    err = ImageLoadError(image_id, f"{type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def _make_image_load(
    image_id: str,
    loader: Loader,
    options: dict[str, Any],
    request_type: RequestType | str,
    priority: float,
    on_image: Callable[[Image], None] | None = None,
    on_failure: Callable[[ImageLoadObject], None] | None = None,
    decache: Callable[[Any], None] | None = None,
) -> ImageLoadObject:
    holder: list[ImageLoadObject] = []
    pools = current_pools()  # the caller's (a Client's, or the default)

    async def body(signal: CancelSignal) -> Image:
        opts = dict(options, signal=signal)
        start = time.perf_counter()
        try:
            image = await pools.run(
                lambda: run_loader(loader, image_id, opts),
                request_type,
                priority,
                {"id": image_id, "type": "image"},
            )
            if not isinstance(image, Image):
                raise ImageLoadError(
                    image_id, f"loader returned {type(image).__name__}, expected medstream.Image"
                )
            if image.load_time_ms is None:
                image.load_time_ms = (time.perf_counter() - start) * 1000.0
            if on_image is not None:
                on_image(image)
        except asyncio.CancelledError:
            if on_failure is not None:
                on_failure(holder[0])
            raise
        except BaseException as exc:
            err = as_load_error(image_id, exc)
            if on_failure is not None:
                on_failure(holder[0])
            events.trigger(Events.IMAGE_LOAD_FAILED, image_id=image_id, error=err)
            if err is exc:
                raise
            raise err from exc
        events.trigger(Events.IMAGE_LOADED, image_id=image_id, image=image)
        return image

    obj = ImageLoadObject(image_id, body, decache, start=False)
    holder.append(obj)
    track_load(obj)
    obj.start()
    return obj


def load_image(
    image_id: str,
    *,
    request_type: RequestType | str = RequestType.INTERACTION,
    priority: float = 0,
    **options: Any,
) -> ImageLoadObject:
    """Load an image without caching it. Raises ``UnknownSchemeError`` at once for a bad scheme
    and ``OptionError`` for an option the loader does not take. A plain path is a file ID."""
    image_id, loader = _checked_image("load_image", image_id, options)
    return _make_image_load(image_id, loader, options, request_type, priority)


def load_and_cache_image(
    image_id: str,
    *,
    request_type: RequestType | str = RequestType.INTERACTION,
    priority: float = 0,
    **options: Any,
) -> ImageLoadObject:
    """Load through the cache: concurrent calls for one ID share a single load."""
    image_id, loader = _checked_image("load_and_cache_image", image_id, options)
    creds = credentials_key(options)
    cache = current_cache()
    with cache.lock:
        existing = cache.get_live(image_id, "image")
        if existing is not None:
            if getattr(existing, "credentials", "") == creds:
                return existing  # type: ignore[return-value]
            # cached under other credentials: never shared, loaded (uncached) with these
            return _make_image_load(image_id, loader, options, request_type, priority)

        def admit(image: Image) -> None:
            cache.admit(image_id, image.size_in_bytes)

        def forget(obj: ImageLoadObject) -> None:
            with cache.lock:
                if cache.get_image_load_object(image_id) is obj:
                    cache.remove(image_id)

        obj = _make_image_load(
            image_id,
            loader,
            options,
            request_type,
            priority,
            on_image=admit,
            on_failure=forget,
            decache=forget,
        )
        obj.credentials = creds  # type: ignore[attr-defined]
        cache.put(image_id, "image", obj)
        return obj


def _checked_image(where: str, image_id: str | os.PathLike[str], options: dict[str, Any],
                   ) -> tuple[str, Loader]:
    from ..options import check_options

    image_id = hooks.image_id_of(image_id)
    loader = image_loaders.resolve(image_id)
    check_options(where, options, "load_image", loader)
    return image_id, loader


def _checked_volume(where: str, volume_id: str, options: dict[str, Any]) -> Loader:
    from ..options import check_options

    loader = volume_loaders.resolve(volume_id)
    check_options(where, options, "volume", loader)
    return loader


def cancel_load_image(image_id: str) -> int:
    """Cancel every in-flight load of ``image_id``; returns how many were cancelled."""
    with _inflight_lock:
        objs = list(_inflight.get(image_id, ()))
    return sum(1 for o in objs if o.cancel())


def cancel_load_all() -> int:
    """Cancel every in-flight image and volume load."""
    with _inflight_lock:
        objs = [o for s in _inflight.values() for o in s]
    return sum(1 for o in objs if o.cancel())


def _cancel_for_exit(wait: float = 1.0) -> None:
    """At interpreter exit: signal every load in flight and give them a moment to end."""
    with _inflight_lock:
        objs = [o for s in _inflight.values() for o in s]
    for obj in objs:
        obj._cancel_requested = True
        obj.signal.set()
        if runtime._loop is not None:
            runtime.call_soon(obj._do_cancel)
    end = time.monotonic() + wait
    while objs and inflight_count() and time.monotonic() < end:
        time.sleep(0.01)


add_exit_hook(_cancel_for_exit)


def inflight_count() -> int:
    with _inflight_lock:
        return sum(len(s) for s in _inflight.values())


# -- registries (public names) ---------------------------------------------------------------
def register_image_loader(scheme: str, loader: Loader) -> None:
    """``loader(image_id, **options)`` may be sync, ``async`` or return a load object."""
    image_loaders.register(scheme, loader)


def register_unknown_image_loader(loader: Loader | None) -> Loader | None:
    return image_loaders.register_unknown(loader)


def register_volume_loader(scheme: str, loader: Loader) -> None:
    volume_loaders.register(scheme, loader)


def register_unknown_volume_loader(loader: Loader | None) -> Loader | None:
    return volume_loaders.register_unknown(loader)


# -- volumes ---------------------------------------------------------------------------------
def _make_volume_load(
    volume_id: str, loader: Loader, options: dict[str, Any], cached: bool
) -> VolumeLoadObject:
    holder: list[VolumeLoadObject] = []  # referenced only while the load runs: no cycle after
    cache = current_cache()

    def forget(obj: LoadObject[Any]) -> None:
        with cache.lock:
            if cache.get_volume_load_object(volume_id) is obj:
                cache.remove(volume_id)

    async def body(signal: CancelSignal) -> Any:
        try:
            volume = await run_loader(loader, volume_id, dict(options, signal=signal))
            if cached:
                cache.admit(volume_id, int(getattr(volume, "size_in_bytes", 0)))
            return volume
        except BaseException:
            if cached:
                forget(holder[0])
            raise

    obj = VolumeLoadObject(volume_id, body, forget if cached else None, start=False)
    holder.append(obj)
    track_load(obj)
    obj.start()
    return obj


def cache_loaded_volume(volume_id: str, volume: Any) -> None:
    """Put a volume that is already loaded (made from an array, a SimpleITK image...) in the
    cache under ``volume_id``, replacing what was there."""
    cache = current_cache()

    async def ready(_: str, **__: Any) -> Any:
        return volume

    with cache.lock:
        cache.remove(volume_id)
        obj = _make_volume_load(volume_id, ready, {}, cached=True)
        cache.put(volume_id, "volume", obj)
    if not runtime.in_loop_thread():  # resolves at once; on the loop itself it cannot be waited on
        obj.result(30)


def _check_device(options: dict[str, Any]) -> None:
    """``device="cuda"`` without CuPy/nvImageCodec/GPU fails here, typed, before any work."""
    if options.get("device", "cpu") != "cpu":
        options["device"] = hooks.check_device(options["device"])


def load_volume(volume_id: str, **options: Any) -> VolumeLoadObject:
    """Create a volume with the loader for its scheme (or the unknown-volume loader), uncached."""
    _check_device(options)
    return _make_volume_load(volume_id, _checked_volume("load_volume", volume_id, options),
                             options, cached=False)


def create_and_cache_volume(volume_id: str, **options: Any) -> VolumeLoadObject:
    """Create (or return the cached) volume; the object resolves once its metadata is known.

    ``device="cuda"`` puts the array in GPU memory (``medstream[gpu]``); the volume ID is the
    cache key, so give a GPU volume its own ID (``open_volume`` appends ``@cuda``)."""
    _check_device(options)
    loader = _checked_volume("create_and_cache_volume", volume_id, options)
    creds = credentials_key(options)
    cache = current_cache()
    with cache.lock:
        existing = cache.get_live(volume_id, "volume")
        if existing is not None:
            if getattr(existing, "credentials", "") == creds:
                return existing  # type: ignore[return-value]
            return _make_volume_load(volume_id, loader, options, cached=False)
        obj = _make_volume_load(volume_id, loader, options, cached=True)
        obj.credentials = creds  # type: ignore[attr-defined]
        cache.put(volume_id, "volume", obj)
        return obj
