"""Decoded samples -> ``Image``: colour to RGB, modality LUT, VOI defaults, min/max.

The output dtype follows from the header alone (``PixelHeader``), never from a frame's values, so
every slice of a series gets the same dtype and a volume can be allocated before any pixel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..core.image import Image
from ..errors import DicomParseError, PixelRangeError
from ..redact import redact_text
from .color import palette_to_rgb, to_rgb
from .frame import FrameInfo
from .native import copy_stored_bits, correct_unused_bits, decode_native

_INT_CANDIDATES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64)
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"  # the IOD with Float/DoubleFloat Pixel Data


def smallest_exact_dtype(lo: float, hi: float, min_itemsize: int = 1) -> np.dtype:
    """Smallest integer dtype (at least ``min_itemsize`` bytes) holding [lo, hi] exactly."""
    for cand in _INT_CANDIDATES:
        info = np.iinfo(cand)
        if np.dtype(cand).itemsize >= min_itemsize and info.min <= lo and hi <= info.max:
            return np.dtype(cand)
    return np.dtype(np.float64)


def _integral(x: float) -> bool:
    return math.isfinite(x) and float(x).is_integer()


def _uint_for(bits: int) -> np.dtype:
    return np.dtype(np.uint8 if bits <= 8 else np.uint16 if bits <= 16 else np.uint32)


@dataclass(frozen=True)
class PixelHeader:
    """The header attributes that fix a frame's output dtype."""

    bits_allocated: int
    bits_stored: int
    signed: bool
    samples_per_pixel: int = 1
    photometric: str = "MONOCHROME2"
    float_pixels: bool = False
    palette_bits: int = 8
    slope: float = 1.0
    intercept: float = 0.0
    lut_sequence: bool = False
    modality: str | None = None

    @classmethod
    def from_modules(cls, modules: Mapping[str, Any], info: FrameInfo | None = None,
                     lut_source: Any = None) -> PixelHeader:
        """From metadata modules; ``info`` (the frame being decoded) wins for pixel attributes,
        ``lut_source`` (its dataset) gives the palette depth where the modules lack it."""
        pixel = modules.get("imagePixelModule") or {}
        lut = modules.get("modalityLutModule") or {}
        sop = (modules.get("sopCommonModule") or {}).get("sop_class_uid")
        allocated = int(pixel.get("bits_allocated") or 16)
        descriptor = pixel.get("red_palette_color_lookup_table_descriptor") or getattr(
            lut_source, "RedPaletteColorLookupTableDescriptor", None) or ()
        slope, intercept = lut.get("rescale_slope"), lut.get("rescale_intercept")
        header = cls(
            bits_allocated=allocated,
            bits_stored=int(pixel.get("bits_stored") or allocated),
            signed=bool(pixel.get("pixel_representation")),
            samples_per_pixel=int(pixel.get("samples_per_pixel") or 1),
            photometric=str(pixel.get("photometric_interpretation") or "MONOCHROME2"),
            float_pixels=sop == PARAMETRIC_MAP and allocated in (32, 64),
            palette_bits=int(descriptor[2]) if len(descriptor) > 2 else 8,
            slope=1.0 if slope is None else float(slope),
            intercept=0.0 if intercept is None else float(intercept),
            lut_sequence=bool(lut.get("has_modality_lut_sequence")),
            modality=(modules.get("generalSeriesModule") or {}).get("modality"),
        )
        if info is None:
            return header
        return replace(
            header, bits_allocated=info.bits_allocated, bits_stored=info.bits_stored,
            signed=bool(info.pixel_representation), samples_per_pixel=info.samples_per_pixel,
            photometric=info.photometric_interpretation, float_pixels=info.float_pixels,
        )

    @property
    def palette(self) -> bool:
        return self.samples_per_pixel == 1 and self.photometric == "PALETTE COLOR"

    @property
    def color(self) -> bool:
        return self.samples_per_pixel > 1 or self.palette

    def stored_dtype(self) -> np.dtype:
        if self.float_pixels:
            return np.dtype(np.float32 if self.bits_allocated == 32 else np.float64)
        if self.bits_allocated == 1:
            return np.dtype(np.uint8)
        unsigned = _uint_for(self.bits_allocated)
        return np.dtype(f"i{unsigned.itemsize}") if self.signed else unsigned

    def value_range(self) -> tuple[float, float]:
        """The lowest and highest modality values the stored bits can give (rescale applied)."""
        b = self.bits_stored
        lo, hi = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if self.signed else (0, 2**b - 1)
        a, z = lo * self.slope + self.intercept, hi * self.slope + self.intercept
        return min(a, z), max(a, z)

    def dtype(self, prescale: bool = True) -> np.dtype:
        """Colour keeps its stored depth; grayscale gets the smallest exact integer dtype of the
        header-implied range (float32 for a non-integral rescale); CT HU are int16."""
        if self.samples_per_pixel > 1:
            return _uint_for(self.bits_allocated)
        if self.palette:
            return _uint_for(self.palette_bits)
        if not prescale or self.float_pixels or self.bits_allocated == 1:
            return self.stored_dtype()
        if not (_integral(self.slope) and _integral(self.intercept)):
            return np.dtype(np.float32)
        lo, hi = self.value_range()
        dtype = smallest_exact_dtype(lo, hi, max(1, min(self.bits_allocated, 16) // 8))
        if self.modality == "CT" and dtype.itemsize > 2 and lo < 0:
            dtype = np.dtype(np.int16)  # HU fit int16; a frame that does not is a PixelRangeError
        if self.lut_sequence:  # LUT entries are unsigned <= 16 bits; an empty LUT gives `dtype`
            dtype = np.promote_types(dtype, np.uint16)
        return dtype


def _wrapped(value: float, dtype: np.dtype) -> np.ndarray:
    """``value`` in ``dtype`` modulo 2**bits: integer arithmetic then stays exact for any result
    that fits ``dtype`` (checked beforehand), without a wider temporary array."""
    return np.array(int(value), dtype=np.int64).astype(dtype)


def _check_fits(image_id: str, lo: float, hi: float, dtype: np.dtype, why: str) -> None:
    info = np.iinfo(dtype)
    if lo < info.min or hi > info.max:
        raise PixelRangeError(
            image_id, f"values {lo:g}..{hi:g} do not fit {dtype}, the dtype its header implies "
            f"({why})")


def rescale_to(image_id: str, raw: np.ndarray, header: PixelHeader,
               dtype: np.dtype) -> tuple[np.ndarray, float, float]:
    """The linear modality LUT into ``dtype`` (from the header) with its (min, max); a frame
    whose values do not fit raises ``PixelRangeError`` instead of wrapping or promoting."""
    slope, intercept = header.slope, header.intercept
    if raw.dtype == bool:
        raw = raw.view(np.uint8)
    if dtype.kind == "f":
        out = raw if slope == 1 and intercept == 0 else raw * np.float64(slope) + intercept
        out = out.astype(dtype, copy=False)  # computed in float64, stored in float32
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        if raw.dtype.kind != "f" and not (math.isfinite(lo) and math.isfinite(hi)):
            raise PixelRangeError(image_id, f"slope {slope:g} and intercept {intercept:g} take "
                                            f"the stored values beyond {dtype}")
        return out, lo, hi
    rlo, rhi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    a, b = rlo * slope + intercept, rhi * slope + intercept
    lo, hi = min(a, b), max(a, b)
    why = (f"BitsStored {header.bits_stored}, PixelRepresentation {int(header.signed)}, "
           f"slope {slope:g}, intercept {intercept:g}")
    _check_fits(image_id, lo, hi, dtype, why + (", CT HU are int16" if header.modality == "CT" else ""))
    out = raw.astype(dtype, copy=False)
    if slope != 1:
        out = out * _wrapped(slope, dtype) if out is raw else np.multiply(
            out, _wrapped(slope, dtype), out=out)
    if intercept != 0:
        out = out + _wrapped(intercept, dtype) if out is raw else np.add(
            out, _wrapped(intercept, dtype), out=out)
    return out, float(lo), float(hi)


def rescale(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """A whole volume's linear scaling (NIfTI scl_slope/scl_inter) in the smallest dtype that
    holds its values exactly; float32 (computed in float64) for a non-integral scaling."""
    if raw.dtype == bool:
        raw = raw.view(np.uint8)
    if slope == 1 and intercept == 0:
        return raw
    if raw.dtype.kind == "f" or not (_integral(slope) and _integral(intercept)):
        return (raw * np.float64(slope) + intercept).astype(np.float32)
    lo, hi = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    a, b = lo * slope + intercept, hi * slope + intercept
    dt = smallest_exact_dtype(min(a, b), max(a, b), raw.dtype.itemsize)
    return (raw.astype(dt) * _wrapped(slope, dt)) + _wrapped(intercept, dt)


def has_modality_lut(ds: Any) -> bool:
    """True when the Modality LUT Sequence holds a LUT (its item has descriptor and data)."""
    seq = getattr(ds, "ModalityLUTSequence", None) if ds is not None else None
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def modality_lut(image_id: str, raw: np.ndarray, lut_source: Any, header: PixelHeader,
                 dtype: np.dtype) -> tuple[np.ndarray, float, float]:
    """Apply the Modality LUT Sequence; an empty one is ignored with a warning (rescale used)."""
    if not has_modality_lut(lut_source):
        if lut_source is not None:
            warnings.warn(f"{redact_text(image_id)}: empty Modality LUT Sequence ignored",
                          stacklevel=2)
        return rescale_to(image_id, raw, header, dtype)
    from pydicom.pixels import apply_modality_lut

    out = apply_modality_lut(raw, lut_source)
    lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
    if out.dtype.kind == "f" and not np.all(np.mod(out, 1) == 0):
        raise PixelRangeError(image_id, "the Modality LUT gives non-integral values")
    _check_fits(image_id, lo, hi, dtype, "Modality LUT Sequence")
    return out.astype(dtype, copy=False), lo, hi


def _color_window(header: PixelHeader, dtype: np.dtype) -> tuple[float, float]:
    """The identity window of the stored depth (0..255 for uint8)."""
    peak = float(np.iinfo(dtype).max)
    if header.samples_per_pixel > 1 and 0 < header.bits_stored < dtype.itemsize * 8:
        peak = float(2**header.bits_stored - 1)
    return peak / 2.0, peak + 1.0


def decode_native_into(out: np.ndarray, data: bytes | memoryview, index: int, info: FrameInfo,
                       modules: Mapping[str, Any], prescale: bool = True) -> bool:
    """Native grayscale frame ``index`` of ``data`` straight into ``out`` (a volume's slice),
    with the bits above BitsStored fixed and the linear rescale applied in place: one copy, no
    ``Image``, no per-frame range pass. Only where the result is the one ``frame_to_image``
    gives and provably fits ``out`` (the header-implied range); False leaves it to that path."""
    plan = _native_plan(out, info, modules, prescale)
    if plan is None:
        return False
    target, slope, intercept = plan
    if target is not None:  # the bits fixed in the stored type, on the way in
        copy_stored_bits(target, decode_native(data, index, info), info.bits_stored)
    else:  # widening: no unused bits to fix first
        np.copyto(out, decode_native(data, index, info), casting="unsafe")
    _rescale_in_place(out, slope, intercept)
    return True


def read_native_into(out: np.ndarray, read_into: Callable[[memoryview], int], info: FrameInfo,
                     modules: Mapping[str, Any], prescale: bool = True) -> bool:
    """``decode_native_into`` of a one-frame little-endian object whose samples have ``out``'s
    size, the frame's bytes read by ``read_into`` (a file's ``readinto``, from the first pixel
    byte) straight into ``out``: no buffer in between, one copy less. False (``out`` zeroed where
    it was written) leaves the frame to the other paths, which say what is wrong with it."""
    plan = _native_plan(out, info, modules, prescale)
    if plan is None or info.big_endian or info.number_of_frames != 1 or not out.flags.c_contiguous:
        return False
    target, slope, intercept = plan
    if target is None:  # widened into ``out``: the stored bytes need a buffer of their own
        return False
    try:
        complete = read_into(memoryview(target).cast("B")) == target.nbytes  # else: a short file
    except BaseException:
        out[...] = 0
        raise
    if not complete:
        out[...] = 0
        return False
    correct_unused_bits(target, info.bits_stored)
    _rescale_in_place(out, slope, intercept)
    return True


def _native_plan(out: np.ndarray, info: FrameInfo, modules: Mapping[str, Any], prescale: bool,
                 ) -> tuple[np.ndarray | None, float, float] | None:
    """(``out`` viewed in the stored dtype, or None to widen into it; slope; intercept) where a
    native grayscale frame goes straight into ``out`` (see ``decode_native_into``), else None."""
    if (not info.native or info.float_pixels or info.samples_per_pixel != 1
            or info.bits_allocated not in (8, 16, 32) or info.subsampled_422
            or out.shape != (info.rows, info.columns)):  # a frame of another size: refused
        return None
    header = PixelHeader.from_modules(modules, info)
    if header.palette or header.lut_sequence or out.dtype.kind not in "iu":
        return None
    slope, intercept = (header.slope, header.intercept) if prescale else (1.0, 0.0)
    if not (_integral(slope) and _integral(intercept)):
        return None
    voi = modules.get("voiLutModule") or {}
    for key in ("window_center", "window_width"):
        if voi.get(key) is not None and not all(math.isfinite(float(v)) for v in voi[key]):
            return None  # the generic path names the broken element
    b = info.bits_stored
    lo, hi = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if info.pixel_representation else (0, 2**b - 1)
    ends = (lo * slope + intercept, hi * slope + intercept)
    limits_ = np.iinfo(out.dtype)
    if min(ends) < limits_.min or max(ends) > limits_.max or lo < limits_.min or hi > limits_.max:
        return None  # a frame could overflow: the generic path checks each one
    stored = info.stored_dtype
    if stored.itemsize == out.dtype.itemsize:
        return out.view(stored), slope, intercept  # stored values fit ``out``: same bit patterns
    if b == info.bits_allocated:
        return None, slope, intercept
    return None


def _rescale_in_place(out: np.ndarray, slope: float, intercept: float) -> None:
    if slope != 1:
        np.multiply(out, _wrapped(slope, out.dtype), out=out)
    if intercept != 0:
        np.add(out, _wrapped(intercept, out.dtype), out=out)


def check_finite(image_id: str, header: PixelHeader, voi: Mapping[str, Any]) -> None:
    """A NaN or infinite rescale or window is a broken header, not data: an image computed from
    it would hold no finite value (or a window that draws nothing)."""
    for name, value in (("RescaleSlope", header.slope), ("RescaleIntercept", header.intercept)):
        if not math.isfinite(value):
            raise DicomParseError(image_id, f"{name} is {value}; no image is computed from it")
    for name, key in (("WindowCenter", "window_center"), ("WindowWidth", "window_width")):
        values = voi.get(key)
        if values is not None and not all(math.isfinite(float(v)) for v in values):
            raise DicomParseError(image_id, f"{name} {list(values)} is not finite")


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
    header = PixelHeader.from_modules(modules, info, lut_source)
    dtype = header.dtype(prescale)
    voi = modules.get("voiLutModule", {})
    check_finite(image_id, header, voi)
    plane = modules.get("imagePlaneModule", {})
    color = header.color
    lo = hi = None
    out_photometric = photometric
    if header.samples_per_pixel > 1:
        pixels, out_photometric = to_rgb(raw, photometric, dtype), "RGB"
    elif header.palette:
        if lut_source is None:
            raise ValueError("PALETTE COLOR image without its lookup tables")
        pixels, out_photometric = palette_to_rgb(raw, lut_source, dtype), "RGB"
    elif not prescale:
        pixels = raw.view(np.uint8) if raw.dtype == bool else raw
    elif header.lut_sequence:
        pixels, lo, hi = modality_lut(image_id, raw, lut_source, header, dtype)
    else:
        pixels, lo, hi = rescale_to(image_id, raw, header, dtype)

    if lo is None or hi is None:
        lo, hi = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    wc, ww = voi.get("window_center"), voi.get("window_width")
    if color:
        wc, ww = _color_window(header, dtype)
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
        slope=header.slope,
        intercept=header.intercept,
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
