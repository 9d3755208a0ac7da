"""Every colour image leaves here as interleaved RGB (rows, cols, 3) at its stored depth: uint8,
uint16 or uint32 samples, or the palette's 8- or 16-bit entries. Nothing is cut to 8 bits.

pydicom (its colour conversions) is imported by the first colour image, not with this module:
grayscale loads never need it."""

from __future__ import annotations

from typing import Any

import numpy as np

_YBR = ("YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_422", "YBR_PARTIAL_420")
_LUT_DATA = ("RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
             "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData")
_SEGMENTED = tuple("Segmented" + kw for kw in _LUT_DATA[:3])


def to_rgb(arr: np.ndarray, photometric: str, dtype: np.dtype) -> np.ndarray:
    """3-sample data in ``photometric`` (after decoding) -> RGB in ``dtype`` (the stored depth).

    YBR is converted by pydicom, which supports 8-bit samples only: deeper YBR raises."""
    if photometric in _YBR:
        from pydicom.pixels import convert_color_space

        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    if arr.shape[-1] == 4:  # ARGB/CMYK are retired; keep the first three samples
        arr = arr[..., :3]
    return np.ascontiguousarray(arr.astype(dtype, copy=False))


def _little_endian_luts(ds: Any) -> Any:
    """``ds``, or a copy of its palette whose OW LUT data is in little-endian word order.

    pydicom reads non-segmented LUT data in the machine's byte order whatever the dataset's, so a
    big-endian file's 16-bit entries come out byte-swapped (0xFF00 -> 0x00FF: a black image)."""
    encoding = getattr(ds, "original_encoding", (None, None))
    if encoding[1] is not False:
        return ds
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in ds.group_dataset(0x0028):
        value = elem.value
        if elem.keyword in _LUT_DATA + _SEGMENTED and isinstance(value, bytes):
            value = np.frombuffer(value, ">u2").astype("<u2").tobytes()
        out.add(DataElement(elem.tag, elem.VR, value))
    out.set_original_encoding(encoding[0], True, getattr(ds, "original_character_set", None))
    return out


def palette_to_rgb(arr: np.ndarray, lut_source: Any, dtype: np.dtype) -> np.ndarray:
    """Apply the palette colour LUTs (8- or 16-bit entries, also segmented) -> RGB ``dtype``."""
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(arr, _little_endian_luts(lut_source))
    return np.ascontiguousarray(rgb.astype(dtype, copy=False))
