"""Deflated Explicit VR Little Endian (1.2.840.10008.1.2.1.99), inflated under a bound.

Why: pydicom inflates the whole stream in one call, so a 6 MB file of deflated zeros became
gigabytes. Here the first bytes are inflated to read the image attributes, which imply the
dataset's size (pixel data offset + frames x frame size + a margin for trailing elements);
the rest is inflated in steps and stops there, or at the byte budget, whichever is lower.
"""

from __future__ import annotations

import zlib
from typing import Any, BinaryIO, cast

from pydicom.dataset import FileDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.tag import Tag

from ..codecs.frame import FrameInfo
from ..limits import check_size, inflate, limits
from .frames import pixel_bytes_needed

DEFLATED = "1.2.840.10008.1.2.1.99"
_PROBE = 1024**2  # inflated bytes read to find the image attributes
_TRAILER = 1024**2  # room for elements after the pixel data
_PIXEL_TAGS = {Tag(0x7FE0, 0x0010), Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)}


def read_deflated(image_id: str, fp: BinaryIO, name: Any, **kwargs: Any) -> FileDataset | None:
    """The dataset of a deflated Part 10 object, or None (the stream is rewound) if ``fp`` holds
    another transfer syntax."""
    start = fp.tell()
    try:
        preamble = read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except Exception:
        fp.seek(start)
        return None
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        fp.seek(start)
        return None
    zipped = fp.read()
    budget = limits().max_bytes
    probe = _inflate_prefix(zipped, _PROBE)
    implied = _implied_size(image_id, probe)
    limit = min(budget, implied) if implied else budget
    data = inflate(image_id, zipped, limit, what="deflated dataset",
                   step=4 * 1024**2) if len(probe) >= _PROBE else probe
    del zipped
    buffer = DicomBytesIO(data)
    buffer.name = name
    dataset = read_dataset(cast(BinaryIO, buffer), False, True,
                           defer_size=kwargs.get("defer_size"),
                           stop_when=_stop_before_pixels if kwargs.get("stop_before_pixels") else None)
    ds = FileDataset(buffer, dataset, preamble, meta, False, True)
    ds.set_original_encoding(False, True, dataset._character_set)
    return ds


def _stop_before_pixels(tag: Any, vr: Any, length: int) -> bool:
    return tag in _PIXEL_TAGS


def _inflate_prefix(zipped: bytes, n: int) -> bytes:
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        return d.decompress(zipped, n)
    except zlib.error:
        return b""


def _implied_size(image_id: str, prefix: bytes) -> int | None:
    """Bytes the dataset needs, from the attributes before its pixel data; None if unknown."""
    fp = DicomBytesIO(prefix)
    try:
        ds = read_dataset(cast(BinaryIO, fp), False, True, stop_when=_stop_before_pixels)
        pixel_offset = fp.tell()
        info = FrameInfo(rows=int(ds.Rows), columns=int(ds.Columns),
                         samples_per_pixel=int(ds.get("SamplesPerPixel") or 1),
                         bits_allocated=int(ds.BitsAllocated), bits_stored=int(ds.BitsAllocated),
                         pixel_representation=0, photometric_interpretation="MONOCHROME2",
                         transfer_syntax_uid=DEFLATED,
                         number_of_frames=max(1, int(ds.get("NumberOfFrames") or 1)))
    except Exception:
        return None
    if pixel_offset >= len(prefix):
        return None  # the header itself is longer than the probe: only the budget applies
    size = pixel_offset + 12 + pixel_bytes_needed(info) + _TRAILER
    check_size(image_id, "deflated dataset size implied by its header", size)
    return size

