"""Frame decoding: a registry of decoders per transfer syntax (imagecodecs first, pydicom's
plugins as fallback), native (uncompressed) unpacking, colour conversion and the modality LUT."""

from .frame import FrameInfo
from .pixels import frame_to_image
from .registry import decode_frame, decoders

__all__ = ["FrameInfo", "decoders", "decode_frame", "frame_to_image"]
