"""Synthetic series written as real DICOM: a real CT slice's pixels, new UIDs and positions,
in any orientation, with gaps, irregular spacing, gantry tilt or repeated positions."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from corpus import find
from medstream.demo_data import ct_slice


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


ORIENTATIONS = {
    "axial": (1, 0, 0, 0, 1, 0),
    "coronal": (1, 0, 0, 0, 0, -1),
    "sagittal": (0, 1, 0, 0, 0, -1),
}


def oblique(degrees_x: float = 20, degrees_z: float = 12) -> tuple[float, ...]:
    r = rotation("z", degrees_z) @ rotation("x", degrees_x)
    return tuple(np.round(np.concatenate([r[:, 0], r[:, 1]]), 8))


def base_pixels(size: int) -> np.ndarray:
    """Stored values (uint16, rescale intercept -1024) from a real CT slice, resized."""
    ds = pydicom.dcmread(find("693_UNCI.dcm"))
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    step = max(1, hu.shape[0] // size)
    hu = hu[::step, ::step][:size, :size]
    return (np.clip(hu, -1024, 3071) + 1024).astype(np.uint16)


def write_series(
    folder: Path,
    n: int = 12,
    *,
    orientation: tuple[float, ...] | str = "axial",
    spacing: float = 2.5,
    pixel_spacing: tuple[float, float] = (0.8, 0.7),
    size: int = 64,
    columns: int | None = None,
    origin: tuple[float, float, float] = (-120.0, -95.5, 40.0),
    offsets: list[float] | None = None,
    stack_direction: tuple[float, float, float] | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference: str | None = None,
    name_prefix: str = "IM",
    shuffle: bool = True,
    extra: dict[str, object] | None = None,
) -> list[Path]:
    """Slice k at ``origin + offsets[k] * stack`` (stack: the normal unless given, for tilt)."""
    folder.mkdir(parents=True, exist_ok=True)
    iop = np.array(ORIENTATIONS[orientation] if isinstance(orientation, str) else orientation,
                   dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    stack = np.array(stack_direction, dtype=float) if stack_direction is not None else normal
    offsets = offsets if offsets is not None else [k * spacing for k in range(n)]
    cols = columns or size
    base = base_pixels(max(size, cols))[:size, :cols]
    study = study_uid or generate_uid()
    series = series_uid or generate_uid()
    frame_ref = frame_of_reference or generate_uid()
    order = list(range(len(offsets)))
    if shuffle:
        random.Random(len(offsets)).shuffle(order)
    paths = []
    for rank, k in enumerate(order):
        plane = np.roll(base, 3 * k, axis=1)
        plane = np.minimum(plane + k, 4095).astype(np.uint16)  # every slice distinct
        ds = ct_slice(
            plane, study=study, series=series, frame_of_reference=frame_ref,
            position=np.array(origin) + offsets[k] * stack, orientation=iop,
            pixel_spacing=pixel_spacing, thickness=spacing,
            instance=rank + 1,  # deliberately unrelated to position
            series_number=7, description="synthetic", bits_stored=12,
        )
        for key, value in (extra or {}).items():
            setattr(ds, key, value(k) if callable(value) else value)
        path = folder / f"{name_prefix}{rank:04d}_{k * 7919 % 997:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def expected_stack(paths: list[Path]) -> np.ndarray:
    """HU volume ordered by projected position, read independently with pydicom."""
    dss = [pydicom.dcmread(p) for p in paths]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    return np.stack([d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept)
                     for d in dss]).astype(np.int16)


def transcode(paths: list[Path], out: Path, tool: list[str]) -> list[Path]:
    """Compress every file with a dcmtk or gdcm command (``tool + [src, dst]``)."""
    if shutil.which(tool[0]) is None:
        raise FileNotFoundError(tool[0])
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for p in paths:
        dst = out / p.name
        subprocess.run(tool + [str(p), str(dst)], check=True, capture_output=True, timeout=120)
        result.append(dst)
    return result


HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"


def htj2k_series(paths: list[Path], out: Path, *, tlm: bool = True, noise: float = 0.0,
                 seed: int = 0) -> list[Path]:
    """Each file as HTJ2K lossless RPCL (imagecodecs/OpenJPH): with ``tlm`` a TLM marker and one
    tile-part per resolution, as the .202 syntax's streaming use expects. ``noise`` (stored
    units) adds scanner-like noise so frames compress like real CT, not like a flat phantom."""
    import imagecodecs
    from pydicom.encaps import encapsulate

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    result = []
    for p in paths:
        ds = pydicom.dcmread(p)
        px = ds.pixel_array
        if noise:
            hi = (1 << int(ds.BitsStored)) - 1
            px = np.clip(px.astype(np.int32) + rng.normal(0, noise, px.shape).round(), 0, hi
                         ).astype(px.dtype)
            ds.PixelData = px.tobytes()  # the reference is the noisy file's own pixels
            ds.save_as(p, enforce_file_format=True)
        kw = {"tlm": True, "tilepart": imagecodecs.HTJ2K.TILEPART.RESOLUTIONS} if tlm else {}
        ds.PixelData = encapsulate([imagecodecs.htj2k_encode(px, reversible=True, **kw)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = HTJ2K_RPCL
        ds.save_as(out / p.name, enforce_file_format=True)
        result.append(out / p.name)
    return result
