"""Every colour image leaves here as interleaved RGB uint8 (rows, cols, 3)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.pixels import apply_color_lut, convert_color_space

_YBR = ("YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_422", "YBR_PARTIAL_420")


def to_rgb8(arr: np.ndarray, photometric: str, bits_stored: int) -> np.ndarray:
    """Convert 3-sample data in ``photometric`` (after decoding) to RGB uint8."""
    if arr.dtype != np.uint8:
        shift = max(0, bits_stored - 8)
        arr = (arr.astype(np.uint32) >> shift).clip(0, 255).astype(np.uint8)
    if photometric in _YBR:
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    if arr.shape[-1] == 4:  # ARGB/CMYK are retired; keep the first three samples
        arr = arr[..., :3]
    return np.ascontiguousarray(arr)


def palette_to_rgb8(arr: np.ndarray, lut_source: Any) -> np.ndarray:
    """Apply the palette colour LUTs (8- or 16-bit entries, also segmented) -> RGB uint8."""
    rgb = apply_color_lut(arr, lut_source)
    if rgb.dtype != np.uint8:
        depth = int(lut_source.RedPaletteColorLookupTableDescriptor[2])
        if depth > 8:
            rgb = (rgb >> (depth - 8)).astype(np.uint8)
        else:
            rgb = rgb.astype(np.uint8)
    return np.ascontiguousarray(rgb)
