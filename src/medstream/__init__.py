"""medstream: load medical images and volumes from any source by ID.

>>> import medstream as ms
>>> image = ms.load_and_cache_image("dicomfile:/data/ct/1.dcm").result()
>>> image = await ms.load_image("wadors:https://pacs/dicom-web/studies/.../frames/1")
>>> volume = ms.open_volume("ct_folder/")  # or a DICOMweb series URL, or a .nii.gz
"""

from __future__ import annotations

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
from . import notebook as _notebook  # noqa: F401,E402  (registers the notebook display)
from .loaders import wadors_image_ids
from .loaders.dicomfile import image_id_for as dicomfile_image_id
from .loaders.http import configure_http
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
    compute_geometry,
    split_series,
)

__version__ = "0.1.0"

#: ``ms.Volume.from_array(...)``, ``ms.Volume.from_sitk(...)``: the volume class by its short name.
Volume = StreamingImageVolume


def set_max_cache_size(n_bytes: int) -> None:
    cache.set_max_cache_size(n_bytes)


def get_cache_size() -> int:
    return cache.get_cache_size()


def purge_cache() -> None:
    cache.purge_cache()


__all__ = [
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
