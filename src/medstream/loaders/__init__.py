"""Loaders per scheme. Importing this package registers them with the core registries.

Local files (``dicomfile:``) are registered as they are; every other scheme's module is imported
by its first load (``core.registry.deferred``), so a command that reads a folder does not import
httpx, nibabel or pydicom for schemes it never uses.
"""

from __future__ import annotations

import sys
from typing import Any

from ..core.hooks import register_credentials_key
from ..core.loading import register_image_loader
from ..core.metadata import metadata
from ..core.registry import deferred
from ..dicom import instance as _instance  # noqa: F401  (registers the by-keyword provider)
from ..storage import register_http_ranges
from . import paths as _paths  # noqa: F401  (registers plain paths as image IDs)
from .dicomfile import load_dicomfile, preload_dicomfile_metadata


def _http_ranges() -> Any:
    """Ranged reads of files on web servers (``dicomfile:https://...``), imported when used."""
    from . import httpranges

    return httpranges


def _credentials_key(options: dict[str, Any]) -> str:
    """The digest of the credentials a load uses (``httpconfig``). Until that module is
    imported no defaults can hold any (``configure_http`` lives there), so a load given none
    has none, and the settings (and their dataclasses, 3 ms) are not imported for it."""
    if (f"{__name__}.httpconfig" not in sys.modules
            and all(options.get(k) is None for k in ("token", "headers", "auth", "cert"))):
        return ""
    from .httpconfig import http_config

    return http_config(**options).credentials_key()


register_credentials_key(_credentials_key)
register_http_ranges(_http_ranges)
register_image_loader("dicomfile", load_dicomfile)
metadata.register_preloader("dicomfile", preload_dicomfile_metadata)
register_image_loader("wadouri", deferred(f"{__name__}.wadouri", "load_wadouri"))
register_image_loader("wadors", deferred(f"{__name__}.wadors", "load_wadors"))
metadata.register_preloader("wadors", deferred(f"{__name__}.wadors", "preload_wadors_metadata"))
register_image_loader("dicombytes", deferred(f"{__name__}.memory", "load_dicombytes"))
metadata.register_preloader("dicombytes",
                            deferred(f"{__name__}.memory", "preload_dicombytes_metadata"))
register_image_loader("nifti", deferred(f"{__name__}.nifti", "load_nifti_slice"))
metadata.register_preloader("nifti", deferred(f"{__name__}.nifti", "preload_nifti_metadata"))
for _scheme in ("http", "https", "web"):
    register_image_loader(_scheme, deferred(f"{__name__}.web", "load_web_image"))

_LAZY = {"load_nifti_slice": "nifti", "load_wadouri": "wadouri", "load_wadors": "wadors",
         "load_web_image": "web", "wadors_image_ids": "wadors"}


def __getattr__(name: str) -> Any:
    """The loaders of the other schemes and the submodules not imported yet
    (``ms.loaders.http``), imported when asked for (PEP 562)."""
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "load_dicomfile", "load_nifti_slice", "load_wadouri", "load_wadors", "load_web_image",
    "wadors_image_ids",
]
