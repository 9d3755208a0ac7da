"""Jupyter display: ``_repr_html_`` of volumes and images — facts first, a small picture once
the pixels are there (a thumbnail of zeros while loading would only mislead).

Registered at first use of medstream, so what only displays imports when it displays (a
command-line run registers this too and never draws).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core.hooks import register_html
from .redact import redact_text

THUMB_PX = 160


def _png_tag(pixels: np.ndarray, height: int = THUMB_PX) -> str:
    import base64
    import io

    from PIL import Image as PILImage

    pic = PILImage.fromarray(pixels)
    if pic.height > height:
        pic = pic.resize((max(1, round(pic.width * height / pic.height)), height),
                         PILImage.Resampling.BILINEAR)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="thumbnail"/>'


def _window(data: np.ndarray) -> tuple[float, float]:
    """A robust display window (1st..99th percentile) from a subsample."""
    sample = data.ravel()[:: max(1, data.size // 200_000)].astype(np.float64)
    lo, hi = np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0)
    return float(lo + hi) / 2, max(float(hi - lo), 1.0)


def _table(title: str, rows: list[tuple[str, str]], picture: str = "") -> str:
    import html

    cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                    f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
    return (f"<div><b>{html.escape(title)}</b><table>{cells}</table>{picture}</div>")


def _orientation(direction: np.ndarray) -> str:
    """Three letters: the LPS axis each array axis (x, y, z) mostly points to, e.g. 'LPS'."""
    letters = []
    for k in range(3):
        v = np.asarray(direction)[:, k]
        a = int(np.argmax(np.abs(v)))
        letters.append(("LPS" if v[a] > 0 else "RAI")[a])
    return "".join(letters)


def volume_html(volume: Any) -> str:
    from .render import three_views

    g = volume.geometry
    st = volume.status
    state = ("loaded" if st.loaded else "loading" if st.loading else "not loaded") + (
        f", {st.frames_loaded}/{st.total} frames" if st.total else "")
    if st.failed:
        state += f", {len(st.failed)} failed"
    rows = [
        ("shape", f"{volume.shape} (z, y, x)" if len(volume.shape) == 3 else str(volume.shape)),
        ("dtype", str(volume.dtype)),
        ("spacing (x, y, z)", ", ".join(f"{s:.4g}" for s in g.spacing) + " mm"),
        ("orientation", _orientation(g.direction) + " (LPS letters of x, y, z)"),
        ("origin (LPS)", ", ".join(f"{float(x):.2f}" for x in g.origin) + " mm"),
        ("status", state),
    ]
    rows += [("warning", w) for w in g.warnings]
    picture = ""
    data = np.asarray(volume.scalar_data)
    if st.loaded and data.ndim >= 3 and data.size and not getattr(volume, "color", False):
        data3 = data if data.ndim == 3 else data[0]
        picture = _png_tag(three_views(data3, g.spacing, _window(data3)))
    return _table(f"{type(volume).__name__} {redact_text(volume.volume_id)}", rows, picture)


def image_html(image: Any) -> str:
    from .render import image_to_uint8

    rows = [
        ("shape", str(image.shape)),
        ("dtype", str(image.pixel_data.dtype)),
        ("photometric", image.photometric_interpretation),
        ("value range", f"{image.min_pixel_value:g} .. {image.max_pixel_value:g}"),
    ]
    if image.row_pixel_spacing:
        rows.append(("pixel spacing", f"{image.row_pixel_spacing:g} x "
                                      f"{image.column_pixel_spacing or image.row_pixel_spacing:g} mm"))
    picture = _png_tag(image_to_uint8(image)) if image.pixel_data.size else ""
    return _table(f"Image {redact_text(image.image_id)}", rows, picture)


register_html("image", image_html)
register_html("volume", volume_html)
