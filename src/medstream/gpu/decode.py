"""Batched nvImageCodec decode of DICOM frames, into given GPU buffers where the library allows.

``decode_batch`` takes the frames' codestreams (one batch, many files) and returns one device array
per frame (or None where the GPU could not decode it: that frame then takes the CPU path). With
``targets`` (slices of the volume) it asks nvImageCodec to decode straight into them; if this
nvImageCodec cannot (older versions only reuse their own buffers) it falls back, once and for
good, to decoding into nvImageCodec's buffers, which the caller then copies from.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("medstream.gpu")

# Transfer syntaxes sent to nvImageCodec (grayscale frames only; the rest decode on the CPU).
# JPEG lossless (.57/.70) is left to the CPU: on an H100, nvImageCodec 0.9 returned wrong samples
# for 64^2 12-bit frames (batched or one at a time; 512^2 frames were exact), see docs/gpu.md.
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
GPU_SYNTAXES = frozenset({
    JPEG_BASELINE,  # 8-bit only
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
})

_direct_ok: bool | None = None  # None: untried; False: this nvImageCodec cannot decode into our buffers


class CodeStreamInfo:
    """What a parsed codestream says about its samples (read before decoding)."""

    __slots__ = ("stream", "dtype", "precision", "shape")

    def __init__(self, stream: Any, dtype: np.dtype, precision: int, shape: tuple[int, int, int]):
        self.stream, self.dtype, self.precision, self.shape = stream, dtype, precision, shape


def parse(nv: Any, payload: bytes) -> CodeStreamInfo | None:
    """Parse one codestream's header; None where nvImageCodec does not recognise it."""
    try:
        cs = nv.CodeStream(payload)
        dtype = np.dtype(cs.dtype)
        precision = int(getattr(cs, "precision", 0) or 0)
        shape = (int(cs.height), int(cs.width), int(cs.num_channels))
    except Exception as exc:  # corrupt header, unknown format
        log.debug("nvImageCodec cannot parse a codestream: %s", exc)
        return None
    return CodeStreamInfo(cs, dtype, precision, shape)


_ITEM, _SEQ_END = b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0"


def single_frame(data: bytes) -> bytes | None:
    """The codestream of a one-frame encapsulated Pixel Data value (its fragments joined), read
    without pydicom: a few item headers. None where the layout is not the plain one."""
    pos, n, parts = 0, len(data), []
    first = True
    while pos + 8 <= n:
        tag, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        pos += 8
        if tag == _SEQ_END:
            break
        if tag != _ITEM or length == 0xFFFFFFFF or pos + length > n:
            return None
        if not first:  # the first item is the basic offset table
            parts.append(data[pos:pos + length])
        first = False
        pos += length
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _params(nv: Any) -> Any:
    return nv.DecodeParams(allow_any_depth=True, color_spec=nv.ColorSpec.UNCHANGED)


def _ptr(obj: Any) -> int:
    return int(obj.__cuda_array_interface__["data"][0])


def decode_batch(backend: Any, streams: list[CodeStreamInfo], stream: Any,
                 targets: list[Any] | None = None) -> tuple[list[Any | None], bool]:
    """Decode ``streams`` on ``stream``; returns (arrays or None per frame, whether the arrays are
    the ``targets``).

    ``targets``: one CuPy 2-D view per frame with the frame's decoded dtype; used when given and
    this nvImageCodec decodes into external buffers. The arrays returned are CuPy views (of the
    targets when in place, else of nvImageCodec's images); ready once ``stream`` is synchronised.
    """
    global _direct_ok
    nv, cupy = backend.nvimgcodec, backend.cupy
    dec = backend.decoder()
    params = _params(nv)
    codestreams = [s.stream for s in streams]
    if targets is not None and _direct_ok is not False:
        precision = streams[0].precision
        try:
            images = nv.as_images(targets, cuda_stream=stream.ptr,
                                  **({"precision": precision} if precision else {}))
            out = dec.decode(codestreams, images=images, params=params, cuda_stream=stream.ptr)
        except Exception as exc:
            log.info("nvImageCodec cannot decode into external buffers (%s); using its own", exc)
            _direct_ok = False
        else:
            arrays: list[Any | None] = []
            in_place = True
            for img, tgt in zip(out, targets):
                if img is None:
                    arrays.append(None)
                    continue
                if _ptr(img) != _ptr(tgt):  # decoded elsewhere: copy into the slice
                    in_place = False
                    src = cupy.asarray(img)
                    tgt[...] = src.reshape(tgt.shape) if src.size == tgt.size else src
                arrays.append(tgt)
            if _direct_ok is None:
                _direct_ok = in_place
            return arrays, True
    try:
        out = dec.decode(codestreams, params=params, cuda_stream=stream.ptr)
    except Exception as exc:  # isolate the frame that breaks the batch
        log.info("nvImageCodec batch decode failed (%s); decoding frame by frame", exc)
        out = []
        for cs in codestreams:
            try:
                out.append(dec.decode(cs, params=params, cuda_stream=stream.ptr))
            except Exception:
                out.append(None)
    arrays = []
    for img in out:
        if img is None:
            arrays.append(None)
            continue
        arr = cupy.asarray(img)
        arrays.append(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    return arrays, False


def direct_mode() -> bool | None:
    """Whether batches decode straight into the volume (None until the first batch tried)."""
    return _direct_ok
