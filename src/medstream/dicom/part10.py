"""Parse Part 10 objects with pydicom and turn one frame into an ``Image``.

pydicom is imported by the first parse, not with this module: a classic file read by the compact
header reader (``fastheader``) is decoded through ``frame_payload`` and ``decode_to_image`` alone,
and a command-line run should not wait 0.3 s for an import it does not use.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..codecs.frame import FrameInfo
from ..codecs.pixels import frame_to_image
from ..codecs.registry import decode_frame, decoders
from ..core.image import Image
from ..errors import (
    DecodeError,
    DicomParseError,
    ImageLoadError,
    MissingPixelDataError,
    UnsupportedTransferSyntaxError,
)
from ..redact import redact_text
from .enhanced import HeaderLike
from .frames import check_frames_fit, number_of_frames
from .regular import open_regular

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_MODULE = ("Rows", "Columns", "BitsAllocated")
# (implicit VR, little endian) as pydicom guessed them -> the transfer syntax they mean
_ENCODINGS = {(True, True): "1.2.840.10008.1.2", (False, True): "1.2.840.10008.1.2.1",
              (False, False): "1.2.840.10008.1.2.2"}  # implicit LE, explicit LE, explicit BE


@dataclass
class ParsedDicom:
    dataset: Dataset
    info: FrameInfo
    pixel_bytes: bytes
    nbytes: int
    decoded: Any = None  # (stored values, photometric) of a mosaic, shared by its tiles
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def frame_payload(self, image_id: str, index: int) -> tuple[bytes | memoryview, int]:
        return frame_payload(image_id, self.info, self.pixel_bytes, index)


def frame_payload(image_id: str, info: FrameInfo, pixel_bytes: bytes | memoryview,
                  index: int) -> tuple[bytes | memoryview, int]:
    """(data, native frame index): whole native pixel data, or one encapsulated frame."""
    if info.native:
        return pixel_bytes, index
    if not decoders.can_decode(info.transfer_syntax_uid):
        raise UnsupportedTransferSyntaxError(image_id, info.transfer_syntax_uid)
    check_encapsulated(image_id, pixel_bytes)
    from pydicom.encaps import get_frame

    try:
        return get_frame(pixel_bytes, index, number_of_frames=info.number_of_frames), 0
    except Exception as exc:
        raise DecodeError(image_id, f"cannot extract frame {index + 1}: {exc}") from exc


def check_encapsulated(image_id: str, data: bytes | memoryview) -> None:
    """Every item of encapsulated pixel data is whole: a truncated file must not decode as a
    silently shorter codestream (some decoders accept one). A missing sequence delimiter after
    whole items is tolerated, as pydicom does (real files end so)."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos + 8 <= end:
        group, elem, length = struct.unpack_from("<HHI", view, pos)
        tag = group << 16 | elem
        if tag == 0xFFFEE0DD:  # sequence delimiter (trailing padding may follow)
            return
        if tag != 0xFFFEE000 or pos + 8 + length > end:
            break
        pos += 8 + length
    if pos == end:
        return
    raise DecodeError(image_id, f"encapsulated pixel data truncated or malformed at byte {pos} "
                                f"of {end}")


def frame_info(image_id: str, ds: HeaderLike, transfer_syntax_uid: str) -> FrameInfo:
    """Validate the image pixel attributes before any allocation."""
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if ds.get(k) in (None, "")]
    if missing:
        raise MissingPixelDataError(image_id, f"missing required attribute(s) {', '.join(missing)}")
    kw = next((k for k in PIXEL_KEYWORDS if k in ds), "PixelData")
    bits_allocated = int(ds.BitsAllocated)
    n_frames = number_of_frames(image_id, ds)
    elem = ds.get_item(kw, keep_deferred=True) if kw in ds else None  # VR without reading it
    info = FrameInfo(
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
        bits_allocated=bits_allocated,
        bits_stored=int(ds.get("BitsStored") or bits_allocated),
        pixel_representation=int(ds.get("PixelRepresentation") or 0),
        photometric_interpretation=str(ds.get("PhotometricInterpretation") or "MONOCHROME2").strip(),
        transfer_syntax_uid=transfer_syntax_uid,
        planar_configuration=int(ds.get("PlanarConfiguration") or 0),
        number_of_frames=n_frames,
        float_pixels=kw != "PixelData",
        pixel_vr=str(getattr(elem, "VR", "OW") or "OW") if elem is not None else "OW",
    )
    problem = info.validate()
    if problem:
        raise MissingPixelDataError(image_id, problem)
    return info


def read_dataset(image_id: str, source: Any, **kwargs: Any) -> Dataset:
    """``dcmread``; a file without the preamble and "DICM" prefix is read when it parses as an
    image anyway (older files do this; Cornerstone reads them too), with a warning."""
    try:
        return _read_strict(image_id, source, **kwargs)
    except DicomParseError as exc:
        from pydicom.errors import InvalidDicomError

        if not isinstance(exc.__cause__, InvalidDicomError):
            raise
        ds = _read_forced(source, **kwargs)
        if ds is None:
            raise
    name = ds.file_meta.TransferSyntaxUID.name
    warnings.warn(f"{redact_text(image_id)}: no DICOM preamble or 'DICM' prefix; read as {name}",
                  stacklevel=2)
    return ds


def _read_forced(source: Any, **kwargs: Any) -> Dataset | None:
    """``dcmread(force=True)`` if the result has the image pixel module, else None."""
    from pydicom import dcmread
    from pydicom.uid import UID

    try:
        if hasattr(source, "seek"):
            source.seek(0)
        ds = dcmread(source, force=True, **kwargs)
    except ImageLoadError:  # a remote read failed: that is the error, not "not DICOM"
        raise
    except Exception:
        return None
    if not all(k in ds for k in _PIXEL_MODULE) or not any(k in ds for k in PIXEL_KEYWORDS):
        return None
    if "TransferSyntaxUID" not in ds.file_meta:  # no meta either: the encoding pydicom found
        ts = _ENCODINGS.get(tuple(ds.original_encoding))
        if ts is None:
            return None
        ds.file_meta.TransferSyntaxUID = UID(ts)
    return ds


def _read_strict(image_id: str, source: Any, **kwargs: Any) -> Dataset:
    """``dcmread`` with every failure turned into a typed error naming the image and the cause."""
    from pydicom.errors import InvalidDicomError

    try:
        if isinstance(source, (str, os.PathLike)):
            with open_regular(image_id, source) as fp:
                return _read(image_id, fp, os.fspath(source), **kwargs)
        return _read(image_id, source, getattr(source, "name", None), **kwargs)
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError(image_id, f"no such file or folder: {exc.filename}") from exc
    except IsADirectoryError as exc:
        raise ImageLoadError(image_id, f"is a directory: {exc.filename}") from exc
    except PermissionError as exc:
        raise ImageLoadError(image_id, f"permission denied: {exc.filename}") from exc
    except InvalidDicomError as exc:
        raise DicomParseError(image_id, "not a DICOM Part 10 object (no 'DICM' prefix or file "
                                        "meta information)") from exc
    except (EOFError, OSError, ValueError, KeyError, IndexError, TypeError, OverflowError) as exc:
        raise DicomParseError(image_id, f"truncated or malformed DICOM ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # pydicom raises a variety of errors on broken input
        raise DicomParseError(image_id, f"unreadable DICOM ({type(exc).__name__}: {exc})") from exc


def _read(image_id: str, fp: Any, name: Any, **kwargs: Any) -> Dataset:
    """Deflated objects are inflated under a bound; everything else goes to ``dcmread``."""
    from pydicom import dcmread

    from .deflate import read_deflated

    ds = read_deflated(image_id, fp, name, **kwargs)
    if ds is not None:
        return ds
    ds = dcmread(fp, force=False, **kwargs)
    if isinstance(name, str):  # deferred values are read again from the path, not the closed fd
        ds.filename, ds.fileobj_type, ds.buffer = name, open, None
        ds.timestamp = os.stat(name).st_mtime
    return ds


def parse_part10(image_id: str, source: str | os.PathLike[str] | bytes) -> ParsedDicom:
    """Read a Part 10 object (path or bytes). Errors name the image and the cause."""
    fp: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    ds = read_dataset(image_id, fp)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    if ts is None:
        raise DicomParseError(image_id, "no transfer syntax in the file meta information")
    kw = next((k for k in PIXEL_KEYWORDS if k in ds), None)
    if kw is None:
        raise MissingPixelDataError(image_id, "the object has no pixel data")
    info = frame_info(image_id, ds, ts)
    try:
        pixel_bytes = ds[kw].value
    except Exception as exc:
        raise DicomParseError(image_id, f"pixel data unreadable ({type(exc).__name__}: {exc})") from exc
    if not pixel_bytes:
        raise MissingPixelDataError(image_id, "the pixel data element is empty")
    check_frames_fit(image_id, info, len(pixel_bytes))
    return ParsedDicom(ds, info, pixel_bytes, len(pixel_bytes))


def decode_to_image(
    image_id: str,
    data: bytes | memoryview,
    info: FrameInfo,
    modules: dict[str, Any],
    *,
    index: int = 0,
    prescale: bool = True,
    lut_source: Any = None,
) -> Image:
    """Decode one frame's bytes and build the ``Image`` (CPU work: run in the worker pool)."""
    start = time.perf_counter()
    raw, photometric = decode_frame(image_id, data, info, index)
    try:
        image = frame_to_image(
            image_id, raw, photometric, info, modules, prescale=prescale, lut_source=lut_source
        )
    except ImageLoadError:
        raise
    except Exception as exc:
        raise DecodeError(image_id, f"cannot convert pixels ({type(exc).__name__}: {exc})") from exc
    image.decode_time_ms = (time.perf_counter() - start) * 1000.0
    return image


def check_frame(image_id: str, frame: int, n_frames: int) -> None:
    if not 1 <= frame <= n_frames:
        raise ImageLoadError(image_id, f"frame {frame} out of range 1..{n_frames}")


def decode_parsed_frame(image_id: str, parsed: ParsedDicom, frame: int, prescale: bool,
                        modules: dict[str, Any] | None = None) -> Image:
    """Frame ``frame`` (1-based) of a parsed object: record its modules (unless known), decode."""
    from .modules import build_modules
    from .store import module_store

    check_frame(image_id, frame, parsed.info.number_of_frames)
    if modules is None:
        modules = build_modules(parsed.dataset, frame - 1, parsed.info.transfer_syntax_uid)
        module_store.put(image_id, modules)
    data, index = parsed.frame_payload(image_id, frame - 1)
    return decode_to_image(
        image_id, data, parsed.info, modules, index=index, prescale=prescale,
        lut_source=parsed.dataset,
    )
