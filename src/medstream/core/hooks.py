"""Registration hooks: the few places where a lower layer needs code that lives above it.

Core, codecs, dicom and volumes never import loaders, interop, notebooks or the GPU package, not
even inside a function (``tests/test_layers.py`` checks it). The upper module registers its part
here when it is imported, and ``import medstream`` imports the ones a user expects to be there:
the display of images and volumes in notebooks, volume factories (``Volume.from_array``), the
image ID of a plain path, the credentials a cached result belongs to, and devices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..errors import MedstreamError

_plugin_loaders: list[Callable[[], None]] = []
_html_renderers: dict[str, Callable[[Any], str]] = {}
_factories: dict[str, Callable[..., Any]] = {}
_path_resolvers: list[Callable[[str | os.PathLike[str]], str]] = []
_credentials_keys: list[Callable[[dict[str, Any]], str]] = []
_devices: dict[str, Callable[[str], str]] = {}


def register_plugin_loader(load: Callable[[], None]) -> None:
    """``load()`` imports every module that registers itself here (the facade's
    ``load_plugins``): run once when something is looked up that is not registered yet, so a
    program that imports a submodule directly still finds the loaders."""
    _plugin_loaders[:] = [load]


def ensure_plugins() -> bool:
    """Load the plugins (idempotent and thread-safe: the loader keeps its own flag and lock);
    True when there is a loader, so the caller looks again."""
    if not _plugin_loaders:
        return False
    _plugin_loaders[0]()
    return True


def register_html(kind: str, render: Callable[[Any], str]) -> None:
    """``render(obj)`` gives the notebook HTML of an ``"image"`` or a ``"volume"``."""
    _html_renderers[kind] = render


def html(kind: str, obj: Any) -> str:
    render = _html_renderers.get(kind)
    if render is None and ensure_plugins():
        render = _html_renderers.get(kind)
    if render is not None:
        return render(obj)
    import html as _html  # here: its entity table is 2 ms of every start

    return f"<pre>{_html.escape(repr(obj))}</pre>"


def register_factory(name: str, make: Callable[..., Any]) -> None:
    """A way to build a volume from something else (``"array"``, ``"sitk"``, ``"nifti"``)."""
    _factories[name] = make


def factory(name: str) -> Callable[..., Any]:
    make = _factories.get(name)
    if make is None and ensure_plugins():
        make = _factories.get(name)
    if make is None:
        raise MedstreamError(f"no volume factory {name!r} registered (import medstream first)")
    return make


def register_path_resolver(resolve: Callable[[str | os.PathLike[str]], str]) -> None:
    """``resolve(item)`` turns a path or object URL into an image ID (the loaders know how)."""
    _path_resolvers[:] = [resolve]


def image_id_of(item: str | os.PathLike[str]) -> str:
    if not _path_resolvers:
        ensure_plugins()
    return _path_resolvers[0](item) if _path_resolvers else os.fspath(item)


def register_credentials_key(key: Callable[[dict[str, Any]], str]) -> None:
    """``key(options)``: a digest of the credentials a load with these options would use."""
    _credentials_keys[:] = [key]


def credentials_key(options: dict[str, Any]) -> str:
    if not _credentials_keys:
        ensure_plugins()
    return _credentials_keys[0](options) if _credentials_keys else ""


def register_device(name: str, check: Callable[[str], str]) -> None:
    """``check(device)`` normalises a device name and fails, typed, when it cannot be used."""
    _devices[name] = check


def check_device(device: str) -> str:
    dev = (device or "cpu").lower()
    if dev == "cpu":
        return "cpu"
    if not _devices:
        ensure_plugins()
    for check in list(_devices.values()):
        return check(dev)
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
