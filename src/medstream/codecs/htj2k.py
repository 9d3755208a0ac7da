"""HTJ2K frames read in pieces: the leading bytes of a codestream decoded before the rest comes,
and a frame decoded at a reduced resolution from only the bytes that resolution needs.

Why: an HTJ2K codestream in resolution-major order (RPCL, the ``.202`` syntax requires it) holds
the whole image at every resolution, coarse first. OpenJPH decodes a codestream cut anywhere
(``resilient``): the missing detail is zero, so the wavelet synthesis itself upsamples what came
(10% of a 512x512 CT frame: mean error 18 against noise of 15). A TLM marker with one tile-part
per resolution tells, from the main header alone, where each resolution ends: a quarter-size
decimated slice then needs about a quarter of the frame's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DecodeError
from .codestream import check_codestream
from .frame import FrameInfo

HTJ2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                            "1.2.840.10008.1.2.4.203"})
_SOT, _SOD, _EOC = 0xFF90, 0xFF93, 0xFFD9
_RPCL, _RLCP = 2, 1  # COD progression orders whose packets come resolution by resolution


def partial_decodable(info: FrameInfo) -> bool:
    """Whether a leading piece of this frame's codestream decodes to a useful image."""
    return info.transfer_syntax_uid in HTJ2K_SYNTAXES and info.samples_per_pixel == 1 \
        and not info.float_pixels


@dataclass(frozen=True)
class Resolutions:
    """What a codestream's main header says about where its resolutions lie."""

    header_end: int  # bytes of the main header (the first SOT marker's offset)
    levels: int  # resolutions: decompositions + 1
    ends: tuple[int, ...]  # byte offset where resolution r (0 = coarsest) ends; () if unknown
    cod: bytes = b""  # the COD marker segment's body

    def chain_ok(self, data: bytes | memoryview, end: int) -> bool:
        """Whether ``data`` holds whole tile-parts from the main header up to ``end``, each
        starting with its SOT marker and as long as its Psot says (a TLM can lie)."""
        pos = self.header_end
        while pos < end:
            if len(data) < pos + 10 or bytes(data[pos : pos + 2]) != b"\xff\x90":
                return False
            psot = int.from_bytes(bytes(data[pos + 6 : pos + 10]), "big")
            if psot < 14:
                return False
            pos += psot
        return pos == end and len(data) >= end

    def end_for(self, skip: int) -> int | None:
        """Bytes that decode the image with its ``skip`` finest resolutions left out."""
        keep = self.levels - skip
        if not self.ends or not 1 <= keep <= len(self.ends):
            return None
        return self.ends[keep - 1]


def resolutions(head: bytes | memoryview) -> Resolutions | None:
    """The main header of ``head`` (the leading bytes of a codestream), or None when ``head`` is
    not a J2K codestream or ends inside its main header (read more)."""
    b = bytes(head)
    if b[:4] != b"\xff\x4f\xff\x51":
        return None
    pos, levels, order, tiles_one, cod = 2, 0, -1, False, b""
    tlm: list[int] = []
    while pos + 4 <= len(b):
        marker = int.from_bytes(b[pos : pos + 2], "big")
        if marker == _SOT:
            ends: tuple[int, ...] = ()
            if tiles_one and order in (_RPCL, _RLCP) and len(tlm) == levels:
                acc, out = pos, []
                for n in tlm:
                    acc += n
                    out.append(acc)
                ends = tuple(out)
            return Resolutions(pos, levels, ends, cod)
        length = int.from_bytes(b[pos + 2 : pos + 4], "big")
        body = b[pos + 4 : pos + 2 + length]
        if length < 2 or len(body) < length - 2:
            return None
        if marker == 0xFF51 and len(body) >= 36:  # SIZ: one tile covering the image
            xs, ys = int.from_bytes(body[2:6], "big"), int.from_bytes(body[6:10], "big")
            xt, yt = int.from_bytes(body[18:22], "big"), int.from_bytes(body[22:26], "big")
            xto, yto = int.from_bytes(body[26:30], "big"), int.from_bytes(body[30:34], "big")
            tiles_one = xto + xt >= xs and yto + yt >= ys
        elif marker == 0xFF52 and len(body) >= 8:  # COD
            order, levels, cod = body[1], body[5] + 1, body
        elif marker == 0xFF55 and len(body) >= 2:  # TLM: Ztlm, Stlm, then (Ttlm, Ptlm) pairs
            st = body[1]
            t_size, p_size = (st >> 4) & 0x3, 4 if st & 0x40 else 2
            step = t_size + p_size
            for i in range(2, len(body) - step + 1, step):
                tlm.append(int.from_bytes(body[i + t_size : i + step], "big"))
        pos += 2 + length
    return None


def header_problem(head: bytes | memoryview) -> str | None:
    """Why OpenJPH's resilient decoder must not see this codestream, or None.

    Resilient decoding reads past damage instead of stopping, and a damaged header can send it
    into a loop that never ends (a fuzzed tile origin in SIZ did: a hang, not an error). So a
    piece is decoded resiliently only under a main header of the plain kind DICOM encoders
    write: one component, no image or tile offsets, one tile, no subsampling, at most 16 bits,
    a COD with sane decomposition and code-block sizes. Anything else is decoded whole by the
    strict decoders."""
    b = bytes(head)
    if b[:4] != b"\xff\x4f\xff\x51" or len(b) < 47:
        return "no SIZ marker at the start"
    u32 = lambda o: int.from_bytes(b[o : o + 4], "big")  # noqa: E731
    xs, ys, xo, yo, xt, yt, xto, yto = (u32(8 + 4 * i) for i in range(8))
    comps = int.from_bytes(b[40:42], "big")
    if comps != 1 or xo or yo or xto or yto or not (0 < xs <= xt and 0 < ys <= yt):
        return "not a single-component, single-tile image without offsets"
    if (b[42] & 0x7F) + 1 > 16 or b[43] != 1 or b[44] != 1:
        return "more than 16 bits or subsampled"
    found = resolutions(b)
    if found is None:
        return "the main header is incomplete"
    if not found.cod:
        return "no COD marker in the main header"
    levels, xcb, ycb = found.cod[5], found.cod[6] & 0x0F, found.cod[7] & 0x0F
    if levels > 15 or xcb > 8 or ycb > 8 or xcb + ycb > 8:
        return f"COD with {levels} decompositions, code-blocks 2^{xcb + 2} x 2^{ycb + 2}"
    return None


def _stored_range(info: FrameInfo) -> tuple[int, int]:
    bits = info.bits_stored
    if info.pixel_representation:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _conform(image_id: str, arr: np.ndarray, info: FrameInfo) -> np.ndarray:
    """Stored values within BitsStored. A decode of part of a codestream (or at a reduced level)
    can overshoot a little below 0 or above the top, and OpenJPH wraps that in the unsigned
    output; those samples are taken back to the nearest end of the range."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise DecodeError(image_id, f"partial HTJ2K decode gave shape {arr.shape}")
    lo, hi = _stored_range(info)
    wide = arr.astype(np.int64)
    if arr.dtype.kind == "u" and info.bits_stored < arr.dtype.itemsize * 8:
        wrap = 1 << (arr.dtype.itemsize * 8)
        wide[wide > (hi + wrap) // 2] -= wrap  # nearer the wrap than the top: below zero
    return np.clip(wide, lo, hi).astype(info.stored_dtype)


def decode_leading(image_id: str, data: bytes | memoryview, info: FrameInfo,
                   skip: int = 0) -> np.ndarray:
    """Stored values of a frame from the leading ``data`` of its codestream (any length past the
    main header), at full size (``skip=0``) or with ``skip`` resolutions left out (each halves
    rows and columns, rounding up). Lossy unless ``data`` is the whole codestream."""
    import imagecodecs

    check_codestream(image_id, data, info)
    problem = header_problem(data[:4096])
    if problem:
        raise DecodeError(image_id, f"HTJ2K piece not decoded: {problem}")
    try:
        arr = imagecodecs.htj2k_decode(bytes(data), skipres=skip or None, resilient=True)
    except (imagecodecs.Htj2kError, ValueError, RuntimeError) as exc:
        raise DecodeError(image_id, f"partial HTJ2K decode failed: {exc}") from exc
    scale = 1 << skip
    want = (-(-info.rows // scale), -(-info.columns // scale))
    out = _conform(image_id, arr, info)
    if out.shape != want:
        raise DecodeError(image_id, f"partial HTJ2K decode gave {out.shape}, expected {want}")
    return out
