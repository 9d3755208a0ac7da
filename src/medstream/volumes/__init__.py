"""Volumes: geometry from slice metadata, the streaming volume, and writing volumes out."""

from __future__ import annotations

from ..core.loading import register_unknown_volume_loader, register_volume_loader
from ..core.registry import deferred
from ..loaders import dicomfile
from .dynamic import DynamicVolume, dynamic_volume_loader
from .geometry import GeometryWarning, SliceInfo, VolumeGeometry, compute_geometry, split_series
from .decimate import DecimatedVolume
from .progressive import frame_pieces, rendered_ids
from .stages import PROGRESSIVE, SliceStatus, Stage
from .streaming import (
    NiftiVolume,
    StreamingImageVolume,
    VolumeLoadError,
    VolumeLoadStatus,
    VolumeProgress,
    bulk_retrievers,
    decimated_volume,
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
decimated_volume.append(DecimatedVolume.create)
frame_pieces["wadors"] = deferred("medstream.loaders.frameranges", "wadors_piece")
frame_pieces["dicomfile"] = deferred("medstream.loaders.frameranges", "dicomfile_piece")


def _wadors_rendered_id(image_id: str, query: str) -> str | None:
    from ..loaders.wadors import frame_rendered_id  # with httpx: at a rendered stage only

    return frame_rendered_id(image_id, query)


rendered_ids["wadors"] = _wadors_rendered_id

__all__ = [
    "DecimatedVolume",
    "DynamicVolume",
    "dynamic_volume_loader",
    "GeometryWarning",
    "NiftiVolume",
    "PROGRESSIVE",
    "SliceStatus",
    "Stage",
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
