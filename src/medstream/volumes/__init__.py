"""Volumes: geometry from slice metadata, the streaming volume, and writing volumes out."""

from __future__ import annotations

from ..core.loading import register_unknown_volume_loader, register_volume_loader
from ..core.registry import deferred
from ..loaders import dicomfile
from .dynamic import DynamicVolume, dynamic_volume_loader
from .geometry import GeometryWarning, SliceInfo, VolumeGeometry, compute_geometry, split_series
from .streaming import (
    NiftiVolume,
    StreamingImageVolume,
    VolumeLoadError,
    VolumeLoadStatus,
    VolumeProgress,
    bulk_retrievers,
    mosaic_expanders,
    load_order,
    nifti_volume_loader,
    streaming_volume_loader,
)

register_volume_loader("cornerstoneStreamingImageVolume", streaming_volume_loader)
register_volume_loader("streaming", streaming_volume_loader)
register_volume_loader("dynamic", dynamic_volume_loader)
register_unknown_volume_loader(streaming_volume_loader)
register_volume_loader("nifti", nifti_volume_loader)
# other schemes' modules (and httpx, pydicom with them) are imported by their first use
bulk_retrievers["wadors"] = deferred("medstream.loaders.wadors", "retrieve_series_bulk")
mosaic_expanders["dicomfile"] = dicomfile.mosaic_tile_ids
mosaic_expanders["wadouri"] = deferred("medstream.loaders.wadouri", "mosaic_tile_ids")
mosaic_expanders["dicombytes"] = deferred("medstream.loaders.memory", "mosaic_tile_ids")

__all__ = [
    "DynamicVolume",
    "dynamic_volume_loader",
    "GeometryWarning",
    "NiftiVolume",
    "SliceInfo",
    "StreamingImageVolume",
    "VolumeGeometry",
    "VolumeLoadError",
    "VolumeLoadStatus",
    "VolumeProgress",
    "compute_geometry",
    "load_order",
    "split_series",
    "streaming_volume_loader",
]
