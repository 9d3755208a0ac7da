"""Finding what to load: folder scans into series, and one call from any source to a volume."""

from __future__ import annotations

from .folder import FolderScan, SeriesInfo, scan_folder, scan_folder_async
from .source import (
    describe_source,
    describe_source_async,
    open_volume,
    open_volume_async,
    resolve_source,
)

__all__ = [
    "FolderScan",
    "SeriesInfo",
    "describe_source",
    "describe_source_async",
    "open_volume",
    "open_volume_async",
    "resolve_source",
    "scan_folder",
    "scan_folder_async",
]
