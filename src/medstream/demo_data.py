"""A realistic sample made locally: a CT head-like phantom written as real DICOM files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def cache_dir() -> Path:
    base = os.environ.get("MEDSTREAM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "medstream"
    )
    return Path(base)


def phantom(slices: int, size: int) -> np.ndarray:
    """Nested ellipsoids in Hounsfield units: air, skin/fat, bone shell, brain, ventricles."""
    z, y, x = np.meshgrid(
        np.linspace(-1, 1, slices), np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij"
    )
    vol = np.full((slices, size, size), -1000, dtype=np.int16)
    head = (x / 0.8) ** 2 + (y / 0.9) ** 2 + (z / 1.1) ** 2
    vol[head < 1] = -80
    vol[head < 0.9] = 1000
    vol[head < 0.8] = 35
    vent = ((x - 0.15) / 0.1) ** 2 + (y / 0.25) ** 2 + (z / 0.4) ** 2
    vol[vent < 1] = 5
    vent = ((x + 0.15) / 0.1) ** 2 + (y / 0.25) ** 2 + (z / 0.4) ** 2
    vol[vent < 1] = 5
    lesion = ((x - 0.3) / 0.08) ** 2 + ((y + 0.3) / 0.08) ** 2 + (z / 0.1) ** 2
    vol[lesion < 1] = 70
    rng = np.random.default_rng(0)
    vol = vol + rng.normal(0, 4, vol.shape).astype(np.int16)
    return vol


def ct_slice(
    stored: np.ndarray,
    *,
    study: str,
    series: str,
    frame_of_reference: str,
    position: list[float] | np.ndarray,
    orientation: list[float] | np.ndarray = (1, 0, 0, 0, 1, 0),  # type: ignore[assignment]
    pixel_spacing: tuple[float, float] = (1.0, 1.0),
    thickness: float = 1.0,
    instance: int = 1,
    series_number: int = 1,
    description: str = "medstream phantom",
    bits_stored: int = 16,
) -> Dataset:
    """One CT image as a DICOM dataset: unsigned stored values, rescale intercept -1024 (HU)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = frame_of_reference
    ds.Modality = "CT"
    ds.PatientName, ds.PatientID = "MEDSTREAM^PHANTOM", "MS-0001"
    ds.StudyDescription = "medstream demo phantom"
    ds.SeriesDescription = description
    ds.SeriesNumber, ds.InstanceNumber = series_number, instance
    ds.ImagePositionPatient = [f"{float(x):.6f}" for x in position]
    ds.ImageOrientationPatient = [f"{float(x):.8f}" for x in orientation]
    ds.PixelSpacing = list(pixel_spacing)
    ds.SliceThickness = thickness
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = 40, 400
    ds.PixelData = stored.astype(np.uint16).tobytes()
    return ds


def write_series(folder: Path, vol: np.ndarray, spacing: tuple[float, float, float],
                 compressed: bool = False) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_of_ref = generate_uid(), generate_uid(), generate_uid()
    paths = []
    dz, dy, dx = spacing
    for k, plane in enumerate(vol):
        stored = (plane.astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16)
        ds = ct_slice(
            stored, study=study, series=series, frame_of_reference=frame_of_ref,
            position=[-dx * vol.shape[2] / 2, -dy * vol.shape[1] / 2, k * dz],
            pixel_spacing=(dy, dx), thickness=dz, instance=k + 1,
            series_number=2 if compressed else 1,
            description="Head phantom" + (" (RLE)" if compressed else ""),
        )
        ds.WindowCenter, ds.WindowWidth = 40, 80
        if compressed:
            ds.compress(RLELossless, stored)
        # Write in shuffled name order: loaders must sort by position, not by file name.
        path = folder / f"IM{(k * 7919) % 10007:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def ensure_demo(slices: int = 96, size: int = 256) -> dict[str, list[Path]]:
    """Build once under the user's cache directory; reuse afterwards."""
    root = cache_dir() / f"demo-ct-{slices}x{size}"
    done = root / ".complete"
    series = {"uncompressed": root / "uncompressed", "rle": root / "rle"}
    if not done.exists():
        vol = phantom(slices, size)
        write_series(series["uncompressed"], vol, (2.0, 0.9, 0.9))
        write_series(series["rle"], vol, (2.0, 0.9, 0.9), compressed=True)
        done.write_text("ok")
    return {name: sorted(folder.glob("*.dcm")) for name, folder in series.items()}
