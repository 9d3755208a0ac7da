"""Fallback decoders through pydicom's own pixel plugins (pylibjpeg, gdcm, pillow, pyjpegls when
installed). They hold the GIL, so they only serve syntaxes or streams imagecodecs cannot."""

from __future__ import annotations

import numpy as np

from .frame import FrameInfo


def _make(uid: str):  # noqa: ANN202
    def decode(data: bytes, info: FrameInfo) -> tuple[np.ndarray, str]:
        from pydicom.encaps import encapsulate
        from pydicom.pixels import get_decoder

        decoder = get_decoder(uid)
        if not decoder.is_available:
            raise RuntimeError(f"no pydicom plugin available: {decoder.missing_dependencies}")
        arr, meta = decoder.as_array(
            encapsulate([data]),  # pydicom takes a buffer as encapsulated Pixel Data, not a frame
            rows=info.rows,
            columns=info.columns,
            samples_per_pixel=info.samples_per_pixel,
            bits_allocated=info.bits_allocated,
            bits_stored=info.bits_stored,
            pixel_representation=info.pixel_representation,
            photometric_interpretation=info.photometric_interpretation,
            planar_configuration=info.planar_configuration,
            number_of_frames=1,
            pixel_keyword="PixelData",
            as_rgb=True,
        )
        return arr, str(meta.get("photometric_interpretation", info.photometric_interpretation))

    return decode


def register(registry) -> None:  # noqa: ANN001
    from . import imagecodecs_plugin as ic

    for uid in (
        ic.JPEG_BASELINE, ic.JPEG_EXTENDED, ic.JPEG_LOSSLESS, ic.JPEG_LOSSLESS_SV1,
        ic.JPEG_LS_LOSSLESS, ic.JPEG_LS_NEAR_LOSSLESS, ic.J2K_LOSSLESS, ic.J2K,
        ic.HTJ2K_LOSSLESS, ic.HTJ2K_LOSSLESS_RPCL, ic.HTJ2K, ic.RLE,
    ):
        registry.register(uid, "pydicom", _make(uid), priority=90)
