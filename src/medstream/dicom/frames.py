"""Frame counts an input claims, checked against the bytes that are there and the budget.

Why: NumberOfFrames is one header value; a small file claiming two million frames must not
become two million image IDs (or series), and '1A' must not silently mean one frame.
"""

from __future__ import annotations

from typing import Any

from ..codecs.frame import FrameInfo
from ..errors import DicomParseError, MissingPixelDataError
from ..limits import check_frames

ITEM_HEADER = 8  # every encapsulated frame is at least one item: tag + length


def number_of_frames(image_id: str, ds: Any) -> int:
    """The NumberOfFrames of ``ds`` (1 if absent); a typed error for an invalid value."""
    raw = ds.get("NumberOfFrames")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return 1
    try:
        n = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise DicomParseError(image_id, f"invalid NumberOfFrames {str(raw)[:20]!r}") from None
    if n < 1:
        raise DicomParseError(image_id, f"invalid NumberOfFrames {n}")
    check_frames(image_id, "NumberOfFrames", n)
    return n


def pixel_bytes_needed(info: FrameInfo) -> int:
    """Least number of pixel data bytes that can hold ``info.number_of_frames`` frames."""
    n = info.number_of_frames
    if not info.native:
        return n * ITEM_HEADER
    if info.bits_allocated == 1:
        return (n * info.rows * info.columns * info.samples_per_pixel + 7) // 8
    return n * info.frame_nbytes()


def check_frames_fit(image_id: str, info: FrameInfo, available: int) -> None:
    """The claimed frames must fit the ``available`` pixel bytes (before IDs are built)."""
    need = pixel_bytes_needed(info)
    if info.number_of_frames > 1 and need > available:
        raise MissingPixelDataError(
            image_id, f"NumberOfFrames {info.number_of_frames} needs at least {need} bytes of "
            f"pixel data, the object holds {available}")
