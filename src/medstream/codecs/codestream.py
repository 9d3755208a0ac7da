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

from collections.abc import Iterator
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


def _header_segments(b: bytes) -> Iterator[tuple[int, int, int]]:
    """(position, marker, declared length) of each JPEG segment after SOI, fill bytes skipped,
    up to the first scan (SOS) or a length below 2, both included; (position, -1, 0) where a
    byte begins no marker. The walk ends there, or with the data."""
    pos = 2
    while pos + 4 <= len(b):
        if b[pos] != 0xFF:
            yield pos, -1, 0
            return
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(b[pos + 2 : pos + 4], "big")
        yield pos, marker, length
        if marker == 0xDA or length < 2:
            return
        pos += 2 + length


def jpeg_size(data: bytes | memoryview) -> CodestreamSize | None:
    """From the SOFn (or SOF55) segment of a JPEG / JPEG-LS stream."""
    b = bytes(data[:_SCAN_LIMIT])
    if b[:2] != b"\xff\xd8":
        return None
    for pos, marker, length in _header_segments(b):
        if marker in _SOF and pos + 10 <= len(b):
            bits, rows = b[pos + 4], int.from_bytes(b[pos + 5 : pos + 7], "big")
            cols, comps = int.from_bytes(b[pos + 7 : pos + 9], "big"), b[pos + 9]
            return CodestreamSize("JPEG-LS" if marker == 0xF7 else "JPEG", rows, cols, comps, bits,
                                  header_ok=length == 8 + 3 * comps)
    return None


def lossless_jpeg_problem(data: bytes | memoryview) -> str | None:
    """Why a stream cannot go to the lossless JPEG decoder (imagecodecs' ljpeg), or None.

    That decoder trusts the stream's tables: a scan using a Huffman table no DHT segment
    defined (a DHT marker flipped into another SOF, or dropped) made it segfault. So the
    header must hold exactly one SOF3, whole DHT segments, and a scan whose components are the
    frame's and whose DC tables were all defined before it (T.81 B.2)."""
    b = bytes(data[:_SCAN_LIMIT])
    if b[:2] != b"\xff\xd8":
        return "no start-of-image marker"
    frames: list[int] = []
    components: set[int] = set()
    tables: set[int] = set()
    for pos, marker, length in _header_segments(b):
        if marker < 0:
            return f"no marker at byte {pos} of the header"
        body = b[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return f"segment 0xFF{marker:02X} runs past the header"
        if marker in _SOF:
            frames.append(marker)
            components = {body[6 + 3 * i] for i in range((len(body) - 6) // 3)} if len(
                body) >= 6 else set()
        elif marker == 0xC4:  # DHT: one or more tables, each Tc/Th, 16 counts, the values
            i = 0
            while i < len(body):
                if i + 17 > len(body):
                    return "a Huffman table (DHT) is cut short"
                end = i + 17 + sum(body[i + 1 : i + 17])
                if end > len(body):
                    return "a Huffman table (DHT) holds more codes than its segment"
                if body[i] >> 4 == 0:  # class 0: the DC (lossless) tables
                    tables.add(body[i] & 0x0F)
                i = end
        elif marker == 0xDA:  # SOS: the scan and the tables it uses
            if frames != [0xC3]:
                found = ", ".join(f"0xFF{m:02X}" for m in frames) or "none"
                return f"one lossless frame header (SOF3) expected, found {found}"
            n = body[0] if body else 0
            if n == 0 or len(body) < 1 + 2 * n:
                return "the scan header (SOS) is malformed"
            for k in range(n):
                comp, table = body[1 + 2 * k], body[2 + 2 * k] >> 4
                if comp not in components:
                    return f"the scan uses component {comp}, which the frame header lacks"
                if table not in tables:
                    return f"the scan uses Huffman table {table}, which no DHT segment defines"
            return None
    return "no scan (SOS) in the header"


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
