"""Loaders per scheme. Importing this package registers them with the core registries."""

from __future__ import annotations

from ..core.loading import register_image_loader
from ..core.metadata import metadata
from ..core.runtime import closers
from ..dicom import instance as _instance  # noqa: F401  (registers the by-keyword provider)
from . import httpranges as _httpranges  # noqa: F401  (registers ranged HTTP reads for storage)
from . import paths as _paths  # noqa: F401  (registers plain paths as image IDs)
from .dicomfile import load_dicomfile, preload_dicomfile_metadata
from .http import close_clients
from .memory import load_dicombytes, preload_dicombytes_metadata
from .nifti import load_nifti_slice, preload_nifti_metadata
from .wadors import load_wadors, preload_wadors_metadata, wadors_image_ids
from .wadouri import load_wadouri
from .web import load_web_image

closers.append(close_clients)  # the background loop closes them when it stops
register_image_loader("dicomfile", load_dicomfile)
register_image_loader("wadouri", load_wadouri)
register_image_loader("wadors", load_wadors)
metadata.register_preloader("dicomfile", preload_dicomfile_metadata)
metadata.register_preloader("wadors", preload_wadors_metadata)
register_image_loader("dicombytes", load_dicombytes)
metadata.register_preloader("dicombytes", preload_dicombytes_metadata)
register_image_loader("nifti", load_nifti_slice)
metadata.register_preloader("nifti", preload_nifti_metadata)
for _scheme in ("http", "https", "web"):
    register_image_loader(_scheme, load_web_image)

__all__ = [
    "load_dicomfile", "load_nifti_slice", "load_wadouri", "load_wadors", "load_web_image",
    "wadors_image_ids",
]
