"""``http:``/``https:``/``web:`` PNG and JPEG images (Pillow), as RGB uint8 like Cornerstone's
web image loader. The request is async, so ``cancel()`` aborts it; decoding runs in the pool."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..core.image import Image
from ..core.runtime import runtime
from ..errors import DecodeError
from ..limits import check_size
from ..redact import redact_url
from .http import fetch, http_config

ACCEPT = "image/png, image/jpeg;q=0.9, image/*;q=0.5"
_GRAY_MODES = frozenset({"1", "L", "LA", "La"})  # 8-bit gray (16-bit would clip in L)


def url_of(image_id: str) -> str:
    return image_id[4:] if image_id.startswith("web:") else image_id


def decode_web_image(image_id: str, data: bytes, keep_gray: bool = False) -> Image:
    """PNG/JPEG bytes as an RGB uint8 image; with ``keep_gray``, a grayscale picture stays
    ``(rows, columns)`` uint8 (a server-rendered DICOM frame keeps its shape). The decoded
    size is checked against the byte budget before any pixel is decoded."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as pic:
            fmt = pic.format
            width, height = pic.size
            check_size(image_id, "decoded web image", width * height * 4,
                       detail=f"{width}x{height} pixels")
            gray = keep_gray and pic.mode in _GRAY_MODES
            pixels = np.asarray(pic.convert("L" if gray else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            PILImage.DecompressionBombError) as exc:
        raise DecodeError(image_id, f"not a decodable PNG/JPEG image ({type(exc).__name__}: {exc})") from exc
    return Image.from_array(
        image_id, pixels, color=not gray, photometric_interpretation="MONOCHROME2" if gray
        else "RGB", window_center=127.5, window_width=256.0, transfer_syntax_uid=None,
        extra={"format": fmt},
    )


async def load_web_image(image_id: str, **http: Any) -> Image:
    url = url_of(image_id)
    resp = await fetch(url, image_id, accept=ACCEPT, config=http_config(**http))
    if not resp.content:
        raise DecodeError(image_id, f"empty response from {redact_url(url)}")
    return await runtime.to_thread(decode_web_image, image_id, resp.content)
