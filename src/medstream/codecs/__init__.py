"""Frame decoding: a registry of decoders per transfer syntax (imagecodecs first, pydicom's
plugins as fallback), native (uncompressed) unpacking, colour conversion and the modality LUT."""

from .frame import FrameInfo
from .registry import decoders, decode_frame
from .pixels import frame_to_image

__all__ = ["FrameInfo", "decoders", "decode_frame", "frame_to_image"]
