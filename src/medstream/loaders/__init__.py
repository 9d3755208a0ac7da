"""Loaders per scheme. Importing this package registers them with the core registries."""

from __future__ import annotations

from ..core.loading import register_image_loader
from .dicomfile import load_dicomfile
from .wadors import load_wadors, wadors_image_ids
from .wadouri import load_wadouri

register_image_loader("dicomfile", load_dicomfile)
register_image_loader("wadouri", load_wadouri)
register_image_loader("wadors", load_wadors)

__all__ = ["load_dicomfile", "load_wadouri", "load_wadors", "wadors_image_ids"]
