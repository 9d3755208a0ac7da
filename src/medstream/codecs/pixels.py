"""Decoded samples -> ``Image``: colour to RGB uint8, modality LUT, VOI defaults, min/max."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.image import Image
from .color import palette_to_rgb8, to_rgb8
from .frame import FrameInfo

_INT_CANDIDATES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64)


def smallest_exact_dtype(lo: float, hi: float, min_itemsize: int = 1) -> np.dtype:
    """Smallest integer dtype (at least ``min_itemsize`` bytes) holding [lo, hi] exactly."""
    for cand in _INT_CANDIDATES:
        info = np.iinfo(cand)
        if np.dtype(cand).itemsize >= min_itemsize and info.min <= lo and hi <= info.max:
            return np.dtype(cand)
    return np.dtype(np.float64)


def _integral(x: float) -> bool:
    return math.isfinite(x) and float(x).is_integer()


def rescale(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Apply the linear modality LUT in the smallest dtype that holds the result exactly."""
    if raw.dtype == bool:
        raw = raw.astype(np.uint8)
    if raw.dtype.kind == "f":
        if slope == 1 and intercept == 0:
            return raw
        return (raw * np.float32(slope) + np.float32(intercept)).astype(np.float32)
    if slope == 1 and intercept == 0:
        return raw
    if not (_integral(slope) and _integral(intercept)):
        return raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    a, b = lo * slope + intercept, hi * slope + intercept
    dt = smallest_exact_dtype(min(a, b), max(a, b), raw.dtype.itemsize)
    out = raw.astype(dt)
    if slope != 1:
        out *= dt.type(slope)
    if intercept != 0:
        out += dt.type(intercept)
    return out



def frame_to_image(
    image_id: str,
    raw: np.ndarray,
    photometric: str,
    info: FrameInfo,
    modules: dict[str, Any],
    *,
    prescale: bool = True,
    lut_source: Any = None,
) -> Image:
    """``photometric`` is what the decoded samples are now (a codec may have converted YBR)."""
    spp = info.samples_per_pixel
    mlut = modules.get("modalityLutModule", {})
    voi = modules.get("voiLutModule", {})
    plane = modules.get("imagePlaneModule", {})
    slope = mlut.get("rescale_slope")
    intercept = mlut.get("rescale_intercept")
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    color = spp > 1 or photometric == "PALETTE COLOR"

    if spp > 1:
        pixels = to_rgb8(raw, photometric, info.bits_stored)
        out_photometric = "RGB"
    elif photometric == "PALETTE COLOR":
        if lut_source is None:
            raise ValueError("PALETTE COLOR image without its lookup tables")
        pixels = palette_to_rgb8(raw, lut_source)
        out_photometric = "RGB"
    elif prescale and mlut.get("has_modality_lut_sequence") and lut_source is not None:
        from pydicom.pixels import apply_modality_lut

        lut = apply_modality_lut(raw, lut_source)
        pixels = lut.astype(smallest_exact_dtype(float(lut.min()), float(lut.max()), 1)) if (
            lut.dtype.kind != "f" or np.all(np.mod(lut, 1) == 0)
        ) else lut.astype(np.float32)
        out_photometric = photometric
    else:
        pixels = rescale(raw, slope, intercept) if prescale else (
            raw.astype(np.uint8) if raw.dtype == bool else raw
        )
        out_photometric = photometric

    if pixels.size:
        lo, hi = float(pixels.min()), float(pixels.max())
    else:
        lo = hi = 0.0
    wc, ww = voi.get("window_center"), voi.get("window_width")
    if color:
        wc, ww = 127.5, 256.0
    elif wc is None or ww is None:
        wc, ww = (lo + hi) / 2.0, max(hi - lo, 1.0)
    else:
        wc, ww = (wc[0] if len(wc) == 1 else list(wc)), (ww[0] if len(ww) == 1 else list(ww))
    return Image(
        image_id=image_id,
        pixel_data=pixels,
        rows=info.rows,
        columns=info.columns,
        color=color,
        number_of_components=3 if color else 1,
        photometric_interpretation=out_photometric if color else info.photometric_interpretation,
        min_pixel_value=lo,
        max_pixel_value=hi,
        slope=slope,
        intercept=intercept,
        prescaled=prescale and not color,
        window_center=wc,
        window_width=ww,
        voi_lut_function=voi.get("voi_lut_function") or "LINEAR",
        invert=info.photometric_interpretation == "MONOCHROME1",
        row_pixel_spacing=plane.get("row_pixel_spacing"),
        column_pixel_spacing=plane.get("column_pixel_spacing"),
        transfer_syntax_uid=info.transfer_syntax_uid,
        bits_allocated=info.bits_allocated,
        bits_stored=info.bits_stored,
        pixel_representation=info.pixel_representation,
    )
