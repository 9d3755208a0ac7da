"""The loaded image: pixels plus the display attributes a viewer or model needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import hooks


def as_array(data: np.ndarray, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``__array__`` for volumes and images: the array itself (no copy) unless asked."""
    if dtype is not None and np.dtype(dtype) != data.dtype:
        return data.astype(dtype)
    return data.copy() if copy else data


@dataclass(eq=False)
class Image:
    """Pixels follow one convention: grayscale has the modality LUT applied (e.g. HU) in the
    smallest exact dtype the header implies unless loaded with ``prescale=False``; color is
    (rows, cols, 3) RGB at its stored depth (uint8, uint16 or uint32)."""

    image_id: str
    pixel_data: np.ndarray
    rows: int
    columns: int
    color: bool = False
    number_of_components: int = 1
    photometric_interpretation: str = "MONOCHROME2"
    min_pixel_value: float = 0.0
    max_pixel_value: float = 0.0
    slope: float = 1.0
    intercept: float = 0.0
    prescaled: bool = True
    window_center: float | list[float] | None = None
    window_width: float | list[float] | None = None
    voi_lut_function: str = "LINEAR"
    invert: bool = False
    row_pixel_spacing: float | None = None
    column_pixel_spacing: float | None = None
    transfer_syntax_uid: str | None = None
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int | None = None
    load_time_ms: float | None = None
    decode_time_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get_pixel_data(self) -> np.ndarray:
        return self.pixel_data

    @property
    def size_in_bytes(self) -> int:
        return int(self.pixel_data.nbytes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.pixel_data.shape)

    def __repr__(self) -> str:
        from ..redact import redact_text

        return (
            f"Image({redact_text(self.image_id)!r}, {self.rows}x{self.columns}, "
            f"{self.photometric_interpretation}, dtype={self.pixel_data.dtype})"
        )

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return as_array(self.pixel_data, dtype, copy)

    def _repr_html_(self) -> str:
        return hooks.html("image", self)

    @classmethod
    def from_array(cls, image_id: str, pixels: np.ndarray, **attrs: Any) -> Image:
        """Build an image from an array; color is inferred from a trailing axis of 3 or 4."""
        arr = np.asarray(pixels)
        color = arr.ndim == 3 and arr.shape[-1] in (3, 4)
        attrs.setdefault("color", color)
        attrs.setdefault("number_of_components", arr.shape[-1] if color else 1)
        attrs.setdefault("photometric_interpretation", "RGB" if color else "MONOCHROME2")
        if arr.size:
            attrs.setdefault("min_pixel_value", float(arr.min()))
            attrs.setdefault("max_pixel_value", float(arr.max()))
        return cls(image_id=image_id, pixel_data=arr, rows=arr.shape[0], columns=arr.shape[1], **attrs)
