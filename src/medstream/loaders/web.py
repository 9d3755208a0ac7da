"""``http:``/``https:``/``web:`` PNG and JPEG images (Pillow), as RGB uint8 like Cornerstone's
web image loader. The request is async, so ``cancel()`` aborts it; decoding runs in the pool."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..core.image import Image
from ..core.runtime import runtime
from ..errors import DecodeError
from ..redact import redact_url
from .http import fetch, http_config

ACCEPT = "image/png, image/jpeg;q=0.9, image/*;q=0.5"


def url_of(image_id: str) -> str:
    return image_id[4:] if image_id.startswith("web:") else image_id


def decode_web_image(image_id: str, data: bytes) -> Image:
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as pic:
            fmt = pic.format
            rgb = np.asarray(pic.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DecodeError(image_id, f"not a decodable PNG/JPEG image ({type(exc).__name__}: {exc})") from exc
    return Image.from_array(
        image_id, rgb, color=True, photometric_interpretation="RGB", window_center=127.5,
        window_width=256.0, transfer_syntax_uid=None, extra={"format": fmt},
    )


async def load_web_image(image_id: str, **http: Any) -> Image:
    url = url_of(image_id)
    resp = await fetch(url, image_id, accept=ACCEPT, config=http_config(**http))
    if not resp.content:
        raise DecodeError(image_id, f"empty response from {redact_url(url)}")
    return await runtime.to_thread(decode_web_image, image_id, resp.content)
