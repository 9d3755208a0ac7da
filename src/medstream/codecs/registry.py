"""Decoder registry per transfer syntax, modelled on pydicom 3's ``pixels`` plugins.

Each syntax maps to decoders in preference order; the first that succeeds wins, and one that
raises ``CorruptStream`` ends the search (the stream is bad, not the decoder). A decoder takes the
encapsulated frame bytes and a ``FrameInfo`` and returns (array, photometric_after_decode): codecs
such as libjpeg and OpenJPEG already turn YCbCr into RGB, and the caller must know that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import DecodeError, UnsupportedTransferSyntaxError
from .frame import NATIVE_SYNTAXES, CorruptStream, FrameInfo
from .native import PixelDataLengthError, correct_unused_bits, decode_native

Decoder = Callable[[bytes, FrameInfo], tuple[np.ndarray, str]]


@dataclass(frozen=True)
class _Plugin:
    name: str
    fn: Decoder
    priority: int


class DecoderRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_syntax: dict[str, list[_Plugin]] = {}

    def register(self, uid: str, name: str, fn: Decoder, priority: int = 50) -> None:
        """Lower ``priority`` is tried first; re-registering a name for a syntax replaces it."""
        with self._lock:
            plugins = [p for p in self._by_syntax.get(uid, []) if p.name != name]
            plugins.append(_Plugin(name, fn, priority))
            plugins.sort(key=lambda p: p.priority)
            self._by_syntax[uid] = plugins

    def unregister(self, uid: str, name: str) -> None:
        with self._lock:
            self._by_syntax[uid] = [p for p in self._by_syntax.get(uid, []) if p.name != name]

    def plugins(self, uid: str) -> list[str]:
        return [p.name for p in self._by_syntax.get(uid, [])]

    def can_decode(self, uid: str) -> bool:
        _ensure_builtin()
        return uid in NATIVE_SYNTAXES or bool(self._by_syntax.get(uid))

    def supported(self) -> list[str]:
        return sorted(uid for uid, plugins in self._by_syntax.items() if plugins)

    def decode(
        self, image_id: str, data: bytes | memoryview, info: FrameInfo, index: int = 0
    ) -> tuple[np.ndarray, str]:
        """Decode one frame. Native data is ``data`` = whole pixel data and ``index`` its frame.

        Every path leaves here with the bits above BitsStored masked (unsigned) or sign-extended
        (signed), whatever the decoder did with them."""
        arr, photometric = self._decode(image_id, data, info, index)
        if info.float_pixels or info.bits_allocated == 1:
            return arr, photometric
        return correct_unused_bits(arr, info.bits_stored), photometric

    def _decode(
        self, image_id: str, data: bytes | memoryview, info: FrameInfo, index: int
    ) -> tuple[np.ndarray, str]:
        if info.native:
            try:
                return decode_native(data, index, info), info.photometric_interpretation
            except PixelDataLengthError as exc:
                raise DecodeError(image_id, str(exc)) from exc
        from .codestream import check_codestream  # compressed frames only

        check_codestream(image_id, data, info)
        plugins = self._by_syntax.get(info.transfer_syntax_uid)
        if not plugins:
            _ensure_builtin()
            plugins = self._by_syntax.get(info.transfer_syntax_uid)
        if not plugins:
            raise UnsupportedTransferSyntaxError(image_id, info.transfer_syntax_uid)
        errors: list[str] = []
        for plugin in plugins:
            try:
                arr, photometric = plugin.fn(bytes(data) if isinstance(data, memoryview) else data, info)
            except CorruptStream as exc:  # read and found corrupt: a second decoder would agree
                errors.append(f"{plugin.name}: {exc}")
                break
            except Exception as exc:  # try the next plugin, report all if none works
                errors.append(f"{plugin.name}: {type(exc).__name__}: {exc}")
                continue
            return _check_shape(image_id, arr, info), photometric
        raise DecodeError(image_id, "corrupt or undecodable codestream (" + "; ".join(errors) + ")")


def _check_shape(image_id: str, arr: np.ndarray, info: FrameInfo) -> np.ndarray:
    spp = info.samples_per_pixel
    if spp == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want = (info.rows, info.columns) if spp == 1 else (info.rows, info.columns, spp)
    if arr.shape != want:
        raise DecodeError(image_id, f"decoded frame has shape {arr.shape}, header says {want}")
    return arr


decoders = DecoderRegistry()
_builtin_loaded = False
_builtin_lock = threading.Lock()


def _ensure_builtin() -> None:
    global _builtin_loaded
    if _builtin_loaded:
        return
    with _builtin_lock:  # other threads wait until every plugin is registered
        if _builtin_loaded:
            return
        from . import imagecodecs_plugin, pydicom_plugin

        imagecodecs_plugin.register(decoders)
        pydicom_plugin.register(decoders)
        _builtin_loaded = True


def decode_frame(
    image_id: str, data: bytes | memoryview, info: FrameInfo, index: int = 0
) -> tuple[np.ndarray, str]:
    if not info.native:  # native data needs no plugin (nor imagecodecs' and pydicom's imports)
        _ensure_builtin()
    return decoders.decode(image_id, data, info, index)
