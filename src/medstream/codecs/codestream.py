"""The header of a JPEG, JPEG-LS, JPEG 2000, HTJ2K or RLE frame, checked before a native decoder
sees it.

Why: native decoders trust their input. A decoder allocates what the codestream declares, not what
the DICOM header says (a 174 kB J2K claiming 60000 x 60000 made OpenJPEG allocate 7.5 GB); an RLE
segment offset past the fragment made the RLE decoder read outside its buffer (a segfault); a
lossless JPEG with a zero SOF height corrupted the heap; a JPEG-LS stream cut short kept CharLS busy
for seconds. Each of these is a ``DecodeError`` (or a ``ResourceLimitError``) here, before one byte
is decoded.
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
_EOI = b"\xff\xd9"  # JPEG end of image; also JPEG 2000's end of codestream (EOC)
_TAIL = 64  # bytes searched for the end marker (DICOM pads fragments; some encoders add more)
RLE_SYNTAX = "1.2.840.10008.1.2.5"


@dataclass(frozen=True)
class CodestreamSize:
    kind: str
    rows: int  # 0: not declared in the header (JPEG DNL)
    columns: int
    components: int
    bits: int
    header_ok: bool = True  # JPEG: the SOF segment's length is 8 + 3 x components (T.81 B.2.2)


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
            return CodestreamSize("JPEG-LS" if marker == 0xF7 else "JPEG", rows, cols, comps, bits,
                                  header_ok=length == 8 + 3 * comps)
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


def rle_problem(data: bytes | memoryview, info: FrameInfo) -> str | None:
    """Why an RLE frame's 64-byte header cannot describe this frame (PS3.5 G.3.1), or None.

    The segment count must be one per sample byte (SamplesPerPixel x BitsAllocated / 8); offsets
    start at 64, increase, and lie inside the frame."""
    n = len(data)
    if n < 64:
        return f"RLE frame of {n} bytes is shorter than its 64-byte header"
    header = bytes(data[:64])
    count = int.from_bytes(header[:4], "little")
    want = info.samples_per_pixel * max(1, (info.bits_allocated + 7) // 8)
    if count != want:
        return (f"RLE header declares {count} segments, {want} expected for SamplesPerPixel "
                f"{info.samples_per_pixel} and BitsAllocated {info.bits_allocated}")
    offsets = [int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "little") for i in range(count)]
    if offsets[0] != 64:
        return f"RLE first segment offset is {offsets[0]}, not 64"
    for a, b in zip(offsets, offsets[1:] + [n]):
        if not a < b <= n:
            return f"RLE segment offsets {offsets} do not lie in increasing order inside {n} bytes"
    return None


def has_end_marker(data: bytes | memoryview) -> bool:
    """Whether the stream ends with its EOI/EOC marker, allowing for trailing padding."""
    return _EOI in bytes(data[-_TAIL:])


def check_codestream(image_id: str, data: bytes | memoryview, info: FrameInfo) -> None:
    """Refuse a frame whose decoded size would be over budget, whose codestream declares a size,
    sample count or precision other than the DICOM header's, or whose stream is cut short,
    before decoding it."""
    check_size(image_id, "decoded frame size from Rows x Columns", info.frame_nbytes())
    if info.transfer_syntax_uid == RLE_SYNTAX:
        problem = rle_problem(data, info)
        if problem:
            raise DecodeError(image_id, problem + "; not decoded")
        return
    found = codestream_size(data)
    if found is None:
        return
    if found.columns != info.columns or found.rows != info.rows:
        # rows 0 would be a DNL marker (never used in DICOM; it corrupted a decoder's heap)
        raise DecodeError(
            image_id, f"{found.kind} codestream is {found.columns}x{found.rows}, the header says "
            f"{info.columns}x{info.rows} (Columns x Rows); not decoded")
    if not found.header_ok:  # a wrong SOF length made the lossless JPEG decoder segfault
        raise DecodeError(image_id, f"{found.kind} frame header (SOF) has a length that does not "
                                    f"fit its {found.components} components; not decoded")
    if found.kind != "JPEG 2000" and found.components != info.samples_per_pixel:
        raise DecodeError(image_id, f"{found.kind} codestream has {found.components} components, "
                                    f"SamplesPerPixel is {info.samples_per_pixel}; not decoded")
    if found.bits > info.bits_allocated and not info.float_pixels:
        raise DecodeError(image_id, f"{found.kind} codestream has {found.bits}-bit samples, "
                                    f"BitsAllocated is {info.bits_allocated}; not decoded")
    if found.kind != "JPEG 2000" and not has_end_marker(data):
        # libjpeg fills a cut stream with grey (a quietly wrong image); CharLS spins for seconds
        raise DecodeError(image_id, f"{found.kind} codestream is cut short (no end-of-image "
                                    "marker); not decoded")
    sample_bytes = max(1, (max(found.bits, 1) + 7) // 8)
    check_size(image_id, f"{found.kind} codestream size {found.columns}x{found.rows}",
               found.rows * found.columns * max(found.components, 1) * sample_bytes)
