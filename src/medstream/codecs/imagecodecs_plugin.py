"""imagecodecs decoders: the primary codec set. They release the GIL, so frames decode in parallel."""

from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np

from .codestream import has_end_marker, lossless_jpeg_problem
from .frame import CorruptStream, FrameInfo

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_SPECTRAL = "1.2.840.10008.1.2.4.53"  # retired: processes 6 & 8 (8/12-bit spectral selection)
JPEG_PROGRESSIVE = "1.2.840.10008.1.2.4.55"  # retired: processes 10 & 12 (8/12-bit progressive)
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE = "1.2.840.10008.1.2.5"

_YBR_JPEG = ("YBR_FULL", "YBR_FULL_422")
_YBR_J2K = ("YBR_RCT", "YBR_ICT")


def conform(arr: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Give decoded samples the dtype the DICOM header declares (the registry then sign-extends
    or masks the bits above BitsStored)."""
    target = info.stored_dtype
    if arr.dtype == target:
        return arr
    if arr.dtype.itemsize == target.itemsize:
        return arr.view(target)
    return arr.astype(target)


def _jpeg_markers(data: bytes) -> tuple[bool, bool]:
    """(has JFIF APP0, has Adobe APP14) from the segments before the first scan."""
    jfif = adobe = False
    pos = 2
    n = len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE0 and body.startswith(b"JFIF"):
            jfif = True
        elif marker == 0xEE and body.startswith(b"Adobe") and len(body) >= 12:
            adobe = True  # libjpeg ignores a shorter (malformed) Adobe segment
        pos += 2 + length
    return jfif, adobe


def _jpeg(data: bytes, info: FrameInfo) -> tuple[np.ndarray, str]:
    kwargs: dict[str, Any] = {}
    if info.samples_per_pixel == 3 and info.photometric_interpretation == "RGB":
        # DICOM says RGB: without a JFIF or Adobe marker libjpeg would wrongly assume YCbCr.
        jfif, adobe = _jpeg_markers(data)
        if not jfif and not adobe:
            kwargs = {"colorspace": "RGB"}
    try:
        arr = imagecodecs.jpeg8_decode(data, **kwargs)
    except Exception:
        if info.transfer_syntax_uid not in (JPEG_LOSSLESS, JPEG_LOSSLESS_SV1):
            raise
        problem = lossless_jpeg_problem(data)
        if problem is not None:  # that decoder trusts the tables: it would crash the process
            raise CorruptStream(f"lossless JPEG: {problem}") from None
        arr = imagecodecs.ljpeg_decode(data)
    photometric = info.photometric_interpretation
    if info.samples_per_pixel == 3 and photometric in _YBR_JPEG:
        photometric = "RGB"  # libjpeg converted YCbCr to RGB
    return conform(arr, info), photometric


def _jpegls(data: bytes, info: FrameInfo) -> tuple[np.ndarray, str]:
    try:
        arr = imagecodecs.jpegls_decode(data)
    except imagecodecs.JpeglsError as exc:  # CharLS: every other JPEG-LS decoder wraps it too
        raise CorruptStream(str(exc)) from exc
    return conform(arr, info), info.photometric_interpretation


def _openjpeg(data: bytes) -> np.ndarray:
    try:
        return imagecodecs.jpeg2k_decode(data)
    except imagecodecs.Jpeg2kError as exc:  # OpenJPEG: pydicom's J2K plugins wrap it too
        raise CorruptStream(str(exc)) from exc


def _j2k(data: bytes, info: FrameInfo) -> tuple[np.ndarray, str]:
    arr = _openjpeg(data)
    photometric = info.photometric_interpretation
    if info.samples_per_pixel == 3 and photometric in _YBR_J2K:
        photometric = "RGB"  # OpenJPEG applied the inverse multi-component transform
    return conform(arr, info), photometric


def _htj2k(data: bytes, info: FrameInfo) -> tuple[np.ndarray, str]:
    try:
        return _j2k(data, info)
    except CorruptStream:
        if not has_end_marker(data):  # OpenJPH decodes a cut stream without a word: wrong pixels
            raise CorruptStream("HTJ2K codestream is cut short (no end-of-codestream marker)")
        try:
            arr = imagecodecs.htj2k_decode(data)  # OpenJPH, for what OpenJPEG cannot read
        except imagecodecs.Htj2kError as exc:
            raise CorruptStream(str(exc)) from exc
    photometric = info.photometric_interpretation
    if info.samples_per_pixel == 3 and photometric in _YBR_J2K:
        photometric = "RGB"
    return conform(arr, info), photometric


def _rle(data: bytes, info: FrameInfo) -> tuple[np.ndarray, str]:
    stored = info.stored_dtype
    be = stored.newbyteorder(">")
    try:
        raw = imagecodecs.dicomrle_decode(data, be.str)
    except imagecodecs.DicomrleError as exc:
        raise CorruptStream(str(exc)) from exc
    spp, rows, cols = info.samples_per_pixel, info.rows, info.columns
    arr = np.frombuffer(raw, dtype=be, count=rows * cols * spp)
    arr = arr.astype(stored) if be.itemsize > 1 else arr.view(stored)
    if spp > 1:
        arr = arr.reshape(spp, rows, cols).transpose(1, 2, 0)  # RLE segments are planar
    else:
        arr = arr.reshape(rows, cols)
    return arr, info.photometric_interpretation


def register(registry) -> None:  # noqa: ANN001 - DecoderRegistry, avoided import cycle
    for uid in (JPEG_BASELINE, JPEG_EXTENDED, JPEG_SPECTRAL, JPEG_PROGRESSIVE, JPEG_LOSSLESS,
                JPEG_LOSSLESS_SV1):
        registry.register(uid, "imagecodecs", _jpeg, priority=10)
    for uid in (JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS):
        registry.register(uid, "imagecodecs", _jpegls, priority=10)
    for uid in (J2K_LOSSLESS, J2K):
        registry.register(uid, "imagecodecs", _j2k, priority=10)
    for uid in (HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K):
        registry.register(uid, "imagecodecs", _htj2k, priority=10)
    registry.register(RLE, "imagecodecs", _rle, priority=10)
