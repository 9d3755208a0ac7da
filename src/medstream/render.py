"""Pictures for people: VOI windowing to 8 bits and three orthogonal views of a volume."""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.image import Image


def window_to_uint8(pixels: np.ndarray, center: float, width: float, *, invert: bool = False,
                    function: str = "LINEAR") -> np.ndarray:
    """DICOM VOI windowing (linear or sigmoid) to 0..255; MONOCHROME1 is inverted."""
    x = pixels.astype(np.float32)
    width = max(float(width), 1.0)
    if function.upper() == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    else:  # LINEAR (and LINEAR_EXACT, close enough for a picture)
        y = np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)
    out = (y * 255.0 + 0.5).astype(np.uint8)
    return 255 - out if invert else out


def image_to_uint8(image: Image, window: tuple[float, float] | None = None) -> np.ndarray:
    """The image as shown: colour scaled from its stored depth, grayscale with its window."""
    px = image.get_pixel_data()
    if image.color:
        if px.dtype == np.uint8:
            return px
        width = image.window_width
        peak = float((width[0] if isinstance(width, list) else width) or 256) - 1.0  # 0..peak
        return (np.clip(px * (255.0 / peak), 0, 255) + 0.5).astype(np.uint8)
    if window is None:
        wc, ww = image.window_center, image.window_width
        wc = wc[0] if isinstance(wc, list) else wc
        ww = ww[0] if isinstance(ww, list) else ww
        if wc is None or ww is None:
            wc = (image.min_pixel_value + image.max_pixel_value) / 2
            ww = max(image.max_pixel_value - image.min_pixel_value, 1)
        window = (float(wc), float(ww))
    return window_to_uint8(px, *window, invert=image.invert, function=image.voi_lut_function)


def three_views(volume: np.ndarray, spacing: tuple[float, float, float],
                window: tuple[float, float], gap: int = 8) -> np.ndarray:
    """Axial, coronal and sagittal mid-slices side by side, each at its true aspect ratio."""
    from PIL import Image as PILImage

    k, r, c = (s // 2 for s in volume.shape[:3])
    dx, dy, dz = spacing
    views = [window_to_uint8(volume[k], *window)]
    for reformat, in_plane in ((volume[:, r, :], dx), (volume[:, :, c], dy)):
        pic = PILImage.fromarray(window_to_uint8(reformat[::-1], *window))  # head up
        height = max(1, round(pic.height * dz / in_plane))
        views.append(np.asarray(pic.resize((pic.width, height), PILImage.Resampling.BILINEAR)))
    height = max(v.shape[0] for v in views)
    canvas = np.zeros((height, sum(v.shape[1] for v in views) + gap * 2), np.uint8)
    x = 0
    for v in views:
        canvas[: v.shape[0], x : x + v.shape[1]] = v
        x += v.shape[1] + gap
    return canvas


def save_png(pixels: np.ndarray, path: Any) -> None:
    from PIL import Image as PILImage

    PILImage.fromarray(pixels).save(path)
