"""Small CT-like series in every lossless transfer syntax, for the GPU volume tests and benchmark.

Pixels: concentric rings that shift per slice (each slice distinct), 12 bits stored in 16, CT
rescale (intercept -1024); ``signed`` stores HU in signed words (sign bits cleared above bit 11
for uncompressed data, so the loader must sign-extend); ``slope`` non-integral gives a float32
volume.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from medstream.demo_data import ct_slice

SYNTAXES = {
    "uncompressed": "1.2.840.10008.1.2.1",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg_lossless": "1.2.840.10008.1.2.4.70",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
    "htj2k": "1.2.840.10008.1.2.4.201",
}
LOSSY = {"jpeg_baseline": "1.2.840.10008.1.2.4.50"}  # 8-bit samples


def pixels(k: int, size: int, signed: bool = False) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    r = np.hypot(y - size / 2 + k % 7, x - size / 2)
    hu = (np.sin(r / 3.0 + k / 5.0) * 900 + 200 + (r < size / 3) * 600 + k).astype(np.int32)
    hu[: size // 8] = -1024  # air
    hu = np.clip(hu, -1024, 3071)
    if signed:
        return hu.astype(np.int16)
    return (hu + 1024).astype(np.uint16)


def encode(arr: np.ndarray, name: str) -> bytes:
    if name == "j2k":
        return imagecodecs.jpeg2k_encode(arr, level=0, codecformat="J2K", reversible=True)
    if name == "htj2k":
        return imagecodecs.htj2k_encode(arr, reversible=True)
    if name == "jpegls":
        return imagecodecs.jpegls_encode(arr, level=0)
    if name == "jpeg_baseline":
        return imagecodecs.jpeg8_encode(arr, level=90)
    if name == "jpeg_lossless":
        return imagecodecs.jpeg8_encode(arr, lossless=True, predictor=1, bitspersample=12)
    raise ValueError(name)


def write_series(folder: Path, n: int = 12, size: int = 64, syntax: str = "uncompressed", *,
                 signed: bool = False, slope: float = 1.0, corrupt: int | None = None,
                 workers: int = 1) -> list[Path]:
    """``corrupt``: the slice whose compressed frame is replaced by garbage; ``workers``: encode
    in threads (imagecodecs releases the GIL) for big benchmark series."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame_ref = generate_uid(), generate_uid(), generate_uid()

    def one(k: int) -> Path:
        stored = pixels(k, size, signed)
        ds = ct_slice(stored.view(np.uint16), study=study, series=series,
                      frame_of_reference=frame_ref, position=[-10.0, -12.0, 2.5 * k],
                      pixel_spacing=(0.7, 0.7), thickness=2.5, instance=k + 1, bits_stored=12)
        if signed:
            ds.PixelRepresentation, ds.RescaleIntercept = 1, 0
            if syntax == "uncompressed":  # 12-bit two's complement, upper bits zero
                ds.PixelData = (stored.view(np.uint16) & 0x0FFF).tobytes()
        if slope != 1:
            ds.RescaleSlope = slope
        if syntax in LOSSY:  # 8-bit display data, no rescale
            stored = (stored >> 4).astype(np.uint8)
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
            ds.RescaleIntercept, ds.PixelData = 0, stored.tobytes()
        if syntax == "rle":
            ds.compress(RLELossless, stored)
        elif syntax != "uncompressed":
            data = stored
            if signed and syntax in ("jpeg_lossless", "jpegls"):  # 12-bit two's complement
                data = stored.view(np.uint16) & 0x0FFF
            frame = encode(data, syntax)
            if corrupt == k:
                frame = bytes(np.random.default_rng(k).integers(0, 256, len(frame), dtype=np.uint8))
            ds.PixelData = encapsulate([frame])
            ds["PixelData"].VR = "OB"
            ds.file_meta.TransferSyntaxUID = {**SYNTAXES, **LOSSY}[syntax]
        path = folder / f"IM{(k * 7919) % 10007:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        return path

    if workers <= 1:
        return [one(k) for k in range(n)]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))
