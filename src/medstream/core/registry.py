"""Scheme -> loader registries for images and volumes, with an optional fallback loader each."""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable
from typing import Any

from ..errors import UnknownSchemeError
from . import hooks

Loader = Callable[..., Any]


def scheme_of(item_id: str) -> str:
    return item_id.split(":", 1)[0] if ":" in item_id else ""


class LoaderRegistry:
    def __init__(self, what: str) -> None:
        self._what = what
        self._lock = threading.Lock()
        self._loaders: dict[str, Loader] = {}
        self._unknown: Loader | None = None

    def register(self, scheme: str, loader: Loader) -> None:
        """Re-registering a scheme replaces its loader."""
        if not callable(loader):
            raise TypeError(f"{self._what} loader for {scheme!r} is not callable")
        with self._lock:
            self._loaders[scheme.rstrip(":")] = loader

    def unregister(self, scheme: str) -> None:
        with self._lock:
            self._loaders.pop(scheme.rstrip(":"), None)

    def register_unknown(self, loader: Loader | None) -> Loader | None:
        """Set the fallback for unregistered schemes; returns the previous fallback."""
        with self._lock:
            old, self._unknown = self._unknown, loader
        return old

    def has_unknown(self) -> bool:
        """Whether a loader takes IDs whose scheme has none of its own."""
        return self._unknown is not None

    def schemes(self) -> list[str]:
        with self._lock:
            return sorted(self._loaders)

    def resolve(self, item_id: str) -> Loader:
        scheme = scheme_of(item_id)
        with self._lock:
            loader = self._loaders.get(scheme) or self._unknown
        if loader is None and hooks.ensure_plugins():  # a submodule used before the facade
            with self._lock:
                loader = self._loaders.get(scheme) or self._unknown
        if loader is None:
            raise UnknownSchemeError(item_id, scheme)
        return loader


_accepts_cache: dict[Any, tuple[bool, frozenset[str]]] = {}


def call_kwargs(fn: Loader, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``options`` that ``fn`` accepts: all of them with ``**kwargs``, else by name.

    This lets a Cornerstone-style ``def load(image_id)`` work next to loaders that take
    ``signal``, ``headers`` and the like.
    """
    key = getattr(fn, "__func__", fn)
    try:
        var_kw, names = _accepts_cache[key]
    except (KeyError, TypeError):
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            var_kw, names = True, frozenset()
        else:
            var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
            names = frozenset(
                p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
            )
        try:
            _accepts_cache[key] = (var_kw, names)
        except TypeError:
            pass
    if var_kw:
        return dict(options)
    return {k: v for k, v in options.items() if k in names}


def deferred(module: str, name: str) -> Loader:
    """An async loader (or preloader, bulk retriever) that imports ``module`` at its first call
    and awaits its async function ``name`` with the options that one accepts.

    Why: registering every scheme at first use imported httpx, nibabel and pydicom (0.5 s of a
    command that reads local files); a scheme's code is imported when an ID of it is loaded.
    """
    async def call(*args: Any, **options: Any) -> Any:
        fn = getattr(importlib.import_module(module), name)
        return await fn(*args, **call_kwargs(fn, options))

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"``{module}.{name}``, imported at its first call."
    return call


image_loaders = LoaderRegistry("image")
volume_loaders = LoaderRegistry("volume")
