"""Image size declared inside a JPEG, JPEG-LS, JPEG 2000 or HTJ2K codestream, read before
decoding.

Why: a decoder allocates what the codestream declares, not what the DICOM header says: a 174 kB
J2K claiming 60000 x 60000 made OpenJPEG allocate 7.5 GB. Comparing the two sizes first turns that
into a ``DecodeError`` (or a ``ResourceLimitError``) before one byte is allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError
from ..limits import check_size
from .frame import FrameInfo

_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                  0xCF, 0xF7})  # 0xF7: SOF55, JPEG-LS
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_SCAN_LIMIT = 1 << 16


@dataclass(frozen=True)
class CodestreamSize:
    kind: str
    rows: int  # 0: not declared in the header (JPEG DNL)
    columns: int
    components: int
    bits: int


def jpeg_size(data: bytes | memoryview) -> CodestreamSize | None:
    """From the SOFn (or SOF55) segment of a JPEG / JPEG-LS stream."""
    b = bytes(data[:_SCAN_LIMIT])
    if b[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            return None
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(b[pos + 2 : pos + 4], "big")
        if marker in _SOF and pos + 10 <= len(b):
            bits, rows = b[pos + 4], int.from_bytes(b[pos + 5 : pos + 7], "big")
            cols, comps = int.from_bytes(b[pos + 7 : pos + 9], "big"), b[pos + 9]
            return CodestreamSize("JPEG-LS" if marker == 0xF7 else "JPEG", rows, cols, comps, bits)
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


def j2k_size(data: bytes | memoryview) -> CodestreamSize | None:
    """From the SIZ marker of a JPEG 2000 / HTJ2K codestream (raw or inside a JP2 file)."""
    b = bytes(data[:_SCAN_LIMIT])
    pos = b.find(_J2K_SOC_SIZ)
    if pos < 0 or pos + 42 > len(b):
        return None
    s = pos + 4  # Lsiz
    u32 = lambda o: int.from_bytes(b[s + o : s + o + 4], "big")  # noqa: E731
    xsiz, ysiz, xo, yo = u32(4), u32(8), u32(12), u32(16)
    comps = int.from_bytes(b[s + 36 : s + 38], "big")
    bits = (b[s + 38] & 0x7F) + 1 if s + 38 < len(b) else 0
    return CodestreamSize("JPEG 2000", max(0, ysiz - yo), max(0, xsiz - xo), comps, bits)


def codestream_size(data: bytes | memoryview) -> CodestreamSize | None:
    return jpeg_size(data) or j2k_size(data)


def check_codestream(image_id: str, data: bytes | memoryview, info: FrameInfo) -> None:
    """Refuse a frame whose decoded size would be over budget, or whose codestream declares a
    size other than Rows x Columns, before decoding it."""
    check_size(image_id, "decoded frame size from Rows x Columns", info.frame_nbytes())
    found = codestream_size(data)
    if found is None:
        return
    if found.columns != info.columns or (found.rows and found.rows != info.rows):
        raise DecodeError(
            image_id, f"{found.kind} codestream is {found.columns}x{found.rows}, the header says "
            f"{info.columns}x{info.rows} (Columns x Rows); not decoded")
    sample_bytes = max(1, (max(found.bits, 1) + 7) // 8)
    check_size(image_id, f"{found.kind} codestream size {found.columns}x{found.rows}",
               found.rows * found.columns * max(found.components, 1) * sample_bytes)
