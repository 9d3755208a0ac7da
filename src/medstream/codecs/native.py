"""Uncompressed pixel data: a zero-copy view where the byte order allows."""

from __future__ import annotations

import numpy as np

from .frame import FrameInfo


class PixelDataLengthError(ValueError):
    pass


def decode_native(buffer: bytes | memoryview, index: int, info: FrameInfo) -> np.ndarray:
    """Frame ``index`` (0-based) of native pixel data as (rows, cols) or (rows, cols, samples)."""
    rows, cols, spp = info.rows, info.columns, info.samples_per_pixel
    buf = np.frombuffer(buffer, dtype=np.uint8)
    if info.big_endian and info.pixel_vr == "OW" and info.bits_allocated < 16 and buf.size % 2 == 0:
        buf = buf.view(">u2").byteswap().view(np.uint8)  # OW words were written big endian
    if info.bits_allocated == 1:
        nbits = rows * cols * spp
        start = index * nbits
        need = (start + nbits + 7) // 8
        if buf.size < need:
            raise PixelDataLengthError(f"pixel data too short: {buf.size} bytes, need {need}")
        chunk = buf[start // 8 : need]
        bits = np.unpackbits(chunk, bitorder="little")[start % 8 : start % 8 + nbits]
        return bits.reshape(rows, cols) if spp == 1 else bits.reshape(rows, cols, spp)

    nbytes = info.frame_nbytes()
    offset = index * nbytes
    if buf.size < offset + nbytes:
        raise PixelDataLengthError(
            f"pixel data too short: {buf.size} bytes, frame {index + 1} needs {offset + nbytes}"
        )
    dt = info.stored_dtype.newbyteorder(">" if info.big_endian else "<")
    arr = buf[offset : offset + nbytes].view(dt)
    if info.big_endian and dt.itemsize > 1:
        arr = arr.astype(dt.newbyteorder("="))
    if info.subsampled_422:
        return upsample_ybr_422(arr.reshape(rows, cols // 2, 4))
    if spp == 1:
        return arr.reshape(rows, cols)
    if info.planar_configuration == 1:
        return arr.reshape(spp, rows, cols).transpose(1, 2, 0)
    return arr.reshape(rows, cols, spp)


def upsample_ybr_422(packed: np.ndarray) -> np.ndarray:
    """[Y1 Y2 Cb Cr] per pixel pair -> (rows, cols, 3) YBR_FULL."""
    rows, half, _ = packed.shape
    out = np.empty((rows, half * 2, 3), dtype=packed.dtype)
    out[:, 0::2, 0] = packed[..., 0]
    out[:, 1::2, 0] = packed[..., 1]
    out[:, :, 1] = np.repeat(packed[..., 2], 2, axis=1)
    out[:, :, 2] = np.repeat(packed[..., 3], 2, axis=1)
    return out


def copy_stored_bits(out: np.ndarray, src: np.ndarray, bits_stored: int) -> None:
    """``src`` into ``out`` (same itemsize) with the bits above ``bits_stored`` given their
    meaning, as ``correct_unused_bits`` does: the copy is the first shift, two passes for three."""
    shift = out.dtype.itemsize * 8 - bits_stored
    if out.dtype.kind not in "ui" or shift <= 0 or src.dtype.kind != out.dtype.kind:
        np.copyto(out, src)
        correct_unused_bits(out, bits_stored)
        return
    np.left_shift(src, shift, out=out)
    np.right_shift(out, shift, out=out)  # arithmetic for signed dtypes: sign-extends


def correct_unused_bits(arr: np.ndarray, bits_stored: int) -> np.ndarray:
    """Give the bits above ``bits_stored`` their meaning: zero (unsigned) or the sign (signed).

    PS3.5 8.1.1 says nothing about their content and scanners leave overlay or random bits
    there. A writable array is fixed in place; a read-only view is copied only when some sample
    actually has such bits set, so clean data keeps its zero-copy view.
    """
    if arr.dtype.kind not in "ui" or arr.size == 0:
        return arr
    shift = arr.dtype.itemsize * 8 - bits_stored
    if shift <= 0:
        return arr
    if not arr.flags.writeable:
        half = 1 << (bits_stored - 1)
        if arr.dtype.kind == "u":
            clean = int(arr.max()) < 2 * half
        else:
            clean = -half <= int(arr.min()) and int(arr.max()) < half
        if clean:
            return arr
        arr = arr.copy()
    np.left_shift(arr, shift, out=arr)
    np.right_shift(arr, shift, out=arr)  # arithmetic for signed dtypes: sign-extends
    return arr

