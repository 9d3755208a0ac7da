"""What a remote or in-memory load must give, worked out without medstream: pixels from pydicom
(its own plugins, or dcmtk where pydicom has no decoder for the syntax), the Modality LUT from
pydicom.pixels.apply_modality_lut, and geometry from the DICOM attributes (ImagePositionPatient,
ImageOrientationPatient, PixelSpacing).

A medstream volume's affine maps (column, row, slice index, 1) to LPS millimetres; slices are
in order of ImagePositionPatient projected on the normal of ImageOrientationPatient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut

from test_dicom_decode import n_frames, reference as stored_values

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def frame_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The functional group ``sequence`` of a frame (1-based) of an enhanced object: per-frame
    first, then shared; None for a classic object or where neither holds it."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame - 1),
                          ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and len(items) > index and sequence in items[index]:
            return items[index][sequence][0]
    return None


def modality_lut(arr: np.ndarray, ds: Dataset, frame: int = 1) -> np.ndarray:
    """pydicom's Modality LUT; an enhanced object's rescale comes from the frame's Pixel Value
    Transformation functional group (pydicom reads the top level only); an RT Dose grid's
    stored values times DoseGridScaling are Gy (PS3.3 C.8.8.3)."""
    if "DoseGridScaling" in ds and "RescaleSlope" not in ds:
        return arr.astype(np.float64) * float(ds.DoseGridScaling)
    item = frame_item(ds, frame, "PixelValueTransformationSequence")
    if item is not None and "RescaleSlope" in item:
        top = Dataset()
        top.RescaleSlope, top.RescaleIntercept = item.RescaleSlope, item.RescaleIntercept
        return apply_modality_lut(arr, top)
    return apply_modality_lut(arr, ds)


def matches(ours: np.ndarray, expected: np.ndarray) -> bool:
    """Element-wise equality with the reference; a float image equals the float64 reference
    rounded to its own precision (medstream computes non-integral rescales in float32)."""
    if ours.shape != expected.shape:
        return False
    if ours.dtype.kind == "f":
        expected = expected.astype(ours.dtype)
    return bool(np.array_equal(ours, expected))


def expected_image(path: Path, frame: int | None, tmp: Path) -> dict[str, Any]:
    """One frame (1-based; None for a single-frame object) as medstream's default load gives it:
    colour as RGB, monochrome with the Modality LUT applied; with the display facts the header
    states (window, MONOCHROME1 inversion, colour)."""
    ds = pydicom.dcmread(path)
    k = frame or 1
    frames = stored_values(path, tmp)  # (frames, rows, columns[, 3]), colour already RGB
    assert frames is not None, f"no independent decoder for {path.name} here"
    pixels = frames[k - 1]
    pi = str(ds.PhotometricInterpretation)
    color = int(ds.get("SamplesPerPixel", 1)) > 1 or pi == "PALETTE COLOR"
    if not color:
        pixels = modality_lut(pixels, ds, k)
    window: Any
    voi = frame_item(ds, k, "FrameVOILUTSequence") or ds
    if color:  # the full range the samples can take
        bits = int(ds.BitsStored)
        peak = (2**bits - 1 if int(ds.get("SamplesPerPixel", 1)) > 1 and bits < 8 * pixels.itemsize
                else np.iinfo(pixels.dtype).max)
        window = peak / 2.0
    elif "WindowCenter" in voi and "WindowWidth" in voi:
        centers = voi.WindowCenter
        centers = list(centers) if isinstance(centers, pydicom.multival.MultiValue) else [centers]
        window = float(centers[0]) if len(centers) == 1 else [float(c) for c in centers]
    else:  # no VOI in the header: the middle of the pixel values
        window = (float(pixels.min()) + float(pixels.max())) / 2.0
    rescale = frame_item(ds, k, "PixelValueTransformationSequence") or ds
    slope, intercept = (float(rescale.get(a) or d) for a, d in
                        (("RescaleSlope", 1), ("RescaleIntercept", 0)))
    if "DoseGridScaling" in ds and "RescaleSlope" not in ds:  # an RT Dose grid: Gy
        slope = float(ds.DoseGridScaling)
    integral = color or (slope.is_integer() and intercept.is_integer())  # else a float image
    return {"pixels": pixels, "window_center": window, "invert": pi == "MONOCHROME1",
            "color": color, "integral": integral}


def affine_from(positions: np.ndarray, iop: np.ndarray, pixel_spacing) -> np.ndarray:
    """(column, row, slice, 1) -> LPS from sorted slice positions: the first slice's position,
    the row and column directions times their spacing, the mean step between slices."""
    a = np.eye(4)
    a[:3, 0] = iop[:3] * float(pixel_spacing[1])  # along a row: the column spacing
    a[:3, 1] = iop[3:] * float(pixel_spacing[0])
    if len(positions) > 1:
        a[:3, 2] = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        a[:3, 2] = np.cross(iop[:3], iop[3:])
    a[:3, 3] = positions[0]
    return a


def expected_affine(paths: list[Path]) -> np.ndarray:
    """The affine of a classic single-frame series, from pydicom's reading of the headers."""
    dss = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array(sorted((np.array(d.ImagePositionPatient, dtype=float) for d in dss),
                                key=lambda p: float(np.dot(p, normal))))
    return affine_from(positions, iop, dss[0].PixelSpacing)


def expected_enhanced(path: Path, frames: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(voxels, affine) of an enhanced multi-frame object holding one stack (or of the frames,
    1-based, that form one): frames ordered by their Plane Position projected on the normal,
    each with its own Modality LUT."""
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array.reshape(n_frames(ds), int(ds.Rows), int(ds.Columns))
    frames = frames or list(range(1, len(stored) + 1))
    iop = np.array(frame_item(ds, frames[0], "PlaneOrientationSequence").ImageOrientationPatient,
                   dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    position = {f: np.array(frame_item(ds, f, "PlanePositionSequence").ImagePositionPatient, float)
                for f in frames}
    order = sorted(frames, key=lambda f: float(np.dot(position[f], normal)))
    voxels = np.stack([modality_lut(stored[f - 1], ds, f) for f in order])
    spacing = frame_item(ds, frames[0], "PixelMeasuresSequence").PixelSpacing
    return voxels, affine_from(np.array([position[f] for f in order]), iop, spacing)


def keyword_of(key: str) -> str | None:
    """The DICOM keyword a medstream module key names (``rescale_slope``: RescaleSlope), or None
    for a key medstream derives (``row_cosines``, ``has_modality_lut_sequence``)."""
    keyword = "".join(w.capitalize() for w in key.split("_")).replace("Uid", "UID")
    return keyword if pydicom.datadict.tag_for_keyword(keyword) is not None else None


def header_value(ds: Dataset, keyword: str) -> Any:
    """An attribute as pydicom reads it, in plain Python: numbers as float, several values as a
    list, absent or empty as None."""
    value = ds.get(keyword)
    if value is None or value == "":
        return None

    def plain(v: Any) -> Any:
        return float(v) if isinstance(v, (int, float)) else str(v)

    if isinstance(value, (pydicom.multival.MultiValue, list, tuple)):
        return [plain(v) for v in value]
    return plain(value)
