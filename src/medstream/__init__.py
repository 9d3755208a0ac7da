"""medstream: load medical images and volumes from any source by ID.

>>> import medstream as ms
>>> image = ms.load_and_cache_image("dicomfile:/data/ct/1.dcm").result()
>>> image = await ms.load_image("wadors:https://pacs/dicom-web/studies/.../frames/1")
>>> volume = ms.open_volume("ct_folder/")  # or a DICOMweb series URL, or a .nii.gz

``import medstream`` imports nothing else: each name below is imported on first use (PEP 562),
and the first use of any of them registers the loaders, volume loaders, notebook display and
conversions (``_PLUGINS``), which the core reaches only through its registries and hooks.
The layers are described in docs/architecture.md.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from .core import hooks

__version__ = "0.1.0"

# The modules that register themselves with the core when imported (see core/hooks.py).
_PLUGINS = ("medstream.loaders", "medstream.volumes", "medstream.interop", "medstream.notebook",
            "medstream.gpu")
_plugins_lock = threading.RLock()  # a plugin touching ms.X while importing must not deadlock
_plugins_loaded = False

# Public name -> (module, attribute); attribute None: the module itself.
_EXPORTS: dict[str, tuple[str, str | None]] = {
    "decoders": ("medstream.codecs.registry", "decoders"),
    "Cache": ("medstream.core.cache", "Cache"),
    "cache": ("medstream.core.cache", "cache"),
    "Event": ("medstream.core.events", "Event"),
    "EventBus": ("medstream.core.events", "EventBus"),
    "Events": ("medstream.core.events", "Events"),
    "events": ("medstream.core.events", "events"),
    "Image": ("medstream.core.image", "Image"),
    "CancelSignal": ("medstream.core.load_object", "CancelSignal"),
    "ImageLoadObject": ("medstream.core.load_object", "ImageLoadObject"),
    "LoadObject": ("medstream.core.load_object", "LoadObject"),
    "VolumeLoadObject": ("medstream.core.load_object", "VolumeLoadObject"),
    "cancel_load_all": ("medstream.core.loading", "cancel_load_all"),
    "cancel_load_image": ("medstream.core.loading", "cancel_load_image"),
    "create_and_cache_volume": ("medstream.core.loading", "create_and_cache_volume"),
    "load_and_cache_image": ("medstream.core.loading", "load_and_cache_image"),
    "load_image": ("medstream.core.loading", "load_image"),
    "load_volume": ("medstream.core.loading", "load_volume"),
    "register_image_loader": ("medstream.core.loading", "register_image_loader"),
    "register_unknown_image_loader": ("medstream.core.loading", "register_unknown_image_loader"),
    "register_unknown_volume_loader": ("medstream.core.loading", "register_unknown_volume_loader"),
    "register_volume_loader": ("medstream.core.loading", "register_volume_loader"),
    "MetadataRegistry": ("medstream.core.metadata", "MetadataRegistry"),
    "metadata": ("medstream.core.metadata", "metadata"),
    "RequestPoolManager": ("medstream.core.request_pools", "RequestPoolManager"),
    "RequestType": ("medstream.core.request_pools", "RequestType"),
    "request_pools": ("medstream.core.request_pools", "request_pools"),
    "runtime": ("medstream.core.runtime", "runtime"),
    "dicomweb": ("medstream.dicomweb", None),
    "FolderScan": ("medstream.discovery", "FolderScan"),
    "SeriesInfo": ("medstream.discovery", "SeriesInfo"),
    "describe_source": ("medstream.discovery", "describe_source"),
    "open_volume": ("medstream.discovery", "open_volume"),
    "open_volume_async": ("medstream.discovery", "open_volume_async"),
    "scan_folder": ("medstream.discovery", "scan_folder"),
    "scan_folder_async": ("medstream.discovery", "scan_folder_async"),
    "CacheSizeExceededError": ("medstream.errors", "CacheSizeExceededError"),
    "DecodeError": ("medstream.errors", "DecodeError"),
    "DicomParseError": ("medstream.errors", "DicomParseError"),
    "GeometryError": ("medstream.errors", "GeometryError"),
    "HTTPStatusError": ("medstream.errors", "HTTPStatusError"),
    "ImageLoadError": ("medstream.errors", "ImageLoadError"),
    "LoadTimeoutError": ("medstream.errors", "LoadTimeoutError"),
    "MedstreamError": ("medstream.errors", "MedstreamError"),
    "MissingPixelDataError": ("medstream.errors", "MissingPixelDataError"),
    "NetworkError": ("medstream.errors", "NetworkError"),
    "PixelRangeError": ("medstream.errors", "PixelRangeError"),
    "ResourceLimitError": ("medstream.errors", "ResourceLimitError"),
    "UnknownSchemeError": ("medstream.errors", "UnknownSchemeError"),
    "UnsupportedTransferSyntaxError": ("medstream.errors", "UnsupportedTransferSyntaxError"),
    "VolumeError": ("medstream.errors", "VolumeError"),
    "GpuMemoryError": ("medstream.gpu", "GpuMemoryError"),
    "GpuUnavailableError": ("medstream.gpu", "GpuUnavailableError"),
    "gpu_available": ("medstream.gpu", "gpu_available"),
    "volume_from_array": ("medstream.interop", "volume_from_array"),
    "volume_from_nifti": ("medstream.interop", "volume_from_nifti"),
    "volume_from_sitk": ("medstream.interop", "volume_from_sitk"),
    "configure_limits": ("medstream.limits", "configure_limits"),
    "wadors_image_ids": ("medstream.loaders", "wadors_image_ids"),
    "dicomfile_image_id": ("medstream.loaders.dicomfile", "image_id_for"),
    "configure_http": ("medstream.loaders.httpconfig", "configure_http"),
    "memory_sources": ("medstream.loaders.memory", "memory_sources"),
    "register_bytes": ("medstream.loaders.memory", "register_bytes"),
    "register_dataset": ("medstream.loaders.memory", "register_dataset"),
    "registered_image_ids": ("medstream.loaders.memory", "registered_image_ids"),
    "unregister": ("medstream.loaders.memory", "unregister"),
    "wadors_image_ids_async": ("medstream.loaders.wadors", "wadors_image_ids_async"),
    "OptionError": ("medstream.options", "OptionError"),
    "configure_storage": ("medstream.storage", "configure_storage"),
    "DynamicVolume": ("medstream.volumes", "DynamicVolume"),
    "GeometryWarning": ("medstream.volumes", "GeometryWarning"),
    "NiftiVolume": ("medstream.volumes", "NiftiVolume"),
    "SliceInfo": ("medstream.volumes", "SliceInfo"),
    "StreamingImageVolume": ("medstream.volumes", "StreamingImageVolume"),
    "VolumeGeometry": ("medstream.volumes", "VolumeGeometry"),
    "VolumeLoadError": ("medstream.volumes", "VolumeLoadError"),
    "VolumeLoadStatus": ("medstream.volumes", "VolumeLoadStatus"),
    "VolumeProgress": ("medstream.volumes", "VolumeProgress"),
    "Stage": ("medstream.volumes", "Stage"),
    "SliceStatus": ("medstream.volumes", "SliceStatus"),
    "PROGRESSIVE": ("medstream.volumes", "PROGRESSIVE"),
    "compute_geometry": ("medstream.volumes", "compute_geometry"),
    "split_series": ("medstream.volumes", "split_series"),
    "Volume": ("medstream.volumes", "StreamingImageVolume"),
    "Client": ("medstream.client", "Client"),
    "open_segmentation": ("medstream.segmentation", "open_segmentation"),
    "Segmentation": ("medstream.segmentation", "Segmentation"),
    "Segment": ("medstream.segmentation", "Segment"),
    "write_segmentation": ("medstream.segmentation", "write_segmentation"),
    "default_client": ("medstream.client", "default_client"),
}


def load_plugins() -> None:
    """Import the loaders and everything else that registers with the core (idempotent)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    with _plugins_lock:
        if not _plugins_loaded:
            for name in _PLUGINS:
                importlib.import_module(name)
            _plugins_loaded = True


if not TYPE_CHECKING:  # type checkers see the real names below, and no catch-all

    def __getattr__(name: str) -> Any:
        entry = _EXPORTS.get(name)
        if entry is None:  # a subpackage or module (medstream.errors, medstream.volumes...)
            try:
                found = importlib.import_module(f"medstream.{name}")
            except ModuleNotFoundError:
                raise AttributeError(f"module 'medstream' has no attribute {name!r}") from None
            load_plugins()
            return found
        module, attr = entry
        load_plugins()
        found = importlib.import_module(module)
        value = found if attr is None else getattr(found, attr)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


hooks.register_plugin_loader(load_plugins)


def set_max_cache_size(n_bytes: int) -> None:
    from .core.cache import cache

    cache.set_max_cache_size(n_bytes)


def get_cache_size() -> int:
    """Bytes held by cached images and volumes and by everything else medstream keeps."""
    from .core.cache import cache

    return cache.get_cache_size()


def purge_cache() -> None:
    """Empty the cache and every store, and give the freed memory back to the OS."""
    from .core.cache import cache

    cache.purge_cache()


if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from . import dicomweb
    from .codecs.registry import decoders
    from .core.cache import Cache, cache
    from .core.events import Event, EventBus, Events, events
    from .core.image import Image
    from .core.load_object import CancelSignal, ImageLoadObject, LoadObject, VolumeLoadObject
    from .core.loading import (
        cancel_load_all,
        cancel_load_image,
        create_and_cache_volume,
        load_and_cache_image,
        load_image,
        load_volume,
        register_image_loader,
        register_unknown_image_loader,
        register_unknown_volume_loader,
        register_volume_loader,
    )
    from .core.metadata import MetadataRegistry, metadata
    from .core.request_pools import RequestPoolManager, RequestType, request_pools
    from .core.runtime import runtime
    from .discovery import (
        FolderScan,
        SeriesInfo,
        describe_source,
        open_volume,
        open_volume_async,
        scan_folder,
        scan_folder_async,
    )
    from .errors import (
        CacheSizeExceededError,
        DecodeError,
        DicomParseError,
        GeometryError,
        HTTPStatusError,
        ImageLoadError,
        LoadTimeoutError,
        MedstreamError,
        MissingPixelDataError,
        NetworkError,
        PixelRangeError,
        ResourceLimitError,
        UnknownSchemeError,
        UnsupportedTransferSyntaxError,
        VolumeError,
    )
    from .gpu import GpuMemoryError, GpuUnavailableError, gpu_available
    from .interop import volume_from_array, volume_from_nifti, volume_from_sitk
    from .limits import configure_limits
    from .loaders import wadors_image_ids
    from .loaders.dicomfile import image_id_for as dicomfile_image_id
    from .loaders.httpconfig import configure_http
    from .loaders.memory import (
        memory_sources,
        register_bytes,
        register_dataset,
        registered_image_ids,
        unregister,
    )
    from .loaders.wadors import wadors_image_ids_async
    from .options import OptionError
    from .storage import configure_storage
    from .volumes import (
        DynamicVolume,
        GeometryWarning,
        NiftiVolume,
        SliceInfo,
        StreamingImageVolume,
        VolumeGeometry,
        VolumeLoadError,
        VolumeLoadStatus,
        VolumeProgress,
        PROGRESSIVE,
        SliceStatus,
        Stage,
        compute_geometry,
        split_series,
    )
    from .client import Client, default_client
    from .segmentation import Segment, Segmentation, open_segmentation, write_segmentation
    from .volumes import StreamingImageVolume as Volume

__all__ = [
    "Client",
    "Segment",
    "Segmentation",
    "open_segmentation",
    "write_segmentation",
    "default_client",
    "load_plugins",
    "DynamicVolume",
    "GpuMemoryError",
    "GpuUnavailableError",
    "gpu_available",
    "FolderScan",
    "GeometryError",
    "GeometryWarning",
    "NiftiVolume",
    "SeriesInfo",
    "SliceInfo",
    "StreamingImageVolume",
    "VolumeGeometry",
    "VolumeLoadError",
    "VolumeLoadStatus",
    "VolumeProgress",
    "PROGRESSIVE",
    "SliceStatus",
    "Stage",
    "Volume",
    "volume_from_array",
    "volume_from_nifti",
    "volume_from_sitk",
    "compute_geometry",
    "describe_source",
    "open_volume",
    "open_volume_async",
    "scan_folder",
    "scan_folder_async",
    "split_series",
    "Cache",
    "CacheSizeExceededError",
    "CancelSignal",
    "DecodeError",
    "DicomParseError",
    "Event",
    "EventBus",
    "Events",
    "HTTPStatusError",
    "Image",
    "ImageLoadError",
    "PixelRangeError",
    "ImageLoadObject",
    "LoadTimeoutError",
    "ResourceLimitError",
    "configure_limits",
    "LoadObject",
    "MedstreamError",
    "MetadataRegistry",
    "MissingPixelDataError",
    "NetworkError",
    "RequestPoolManager",
    "RequestType",
    "UnknownSchemeError",
    "UnsupportedTransferSyntaxError",
    "VolumeError",
    "OptionError",
    "VolumeLoadObject",
    "cache",
    "configure_http",
    "configure_storage",
    "dicomweb",
    "decoders",
    "dicomfile_image_id",
    "wadors_image_ids",
    "wadors_image_ids_async",
    "cancel_load_all",
    "cancel_load_image",
    "create_and_cache_volume",
    "events",
    "get_cache_size",
    "load_and_cache_image",
    "load_image",
    "load_volume",
    "memory_sources",
    "register_bytes",
    "register_dataset",
    "registered_image_ids",
    "unregister",
    "metadata",
    "purge_cache",
    "register_image_loader",
    "register_unknown_image_loader",
    "register_unknown_volume_loader",
    "register_volume_loader",
    "request_pools",
    "runtime",
    "set_max_cache_size",
]
