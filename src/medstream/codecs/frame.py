"""What a decoder needs to know about one frame, independent of where the bytes came from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Transfer syntaxes whose pixel data is not encapsulated.
NATIVE_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    }
)
BIG_ENDIAN = "1.2.840.10008.1.2.2"


class CorruptStream(ValueError):
    """Raised by a decoder that read the stream and found it corrupt (not merely unsupported):
    the registry then tries no other decoder, which would spend the same time to say the same."""


@dataclass(frozen=True)
class FrameInfo:
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    transfer_syntax_uid: str
    planar_configuration: int = 0
    number_of_frames: int = 1
    float_pixels: bool = False  # FloatPixelData / DoubleFloatPixelData
    pixel_vr: str = "OW"

    @property
    def native(self) -> bool:
        return self.transfer_syntax_uid in NATIVE_SYNTAXES

    @property
    def big_endian(self) -> bool:
        return self.transfer_syntax_uid == BIG_ENDIAN

    @property
    def stored_dtype(self) -> np.dtype:
        """The dtype that holds one stored sample (native byte order)."""
        if self.float_pixels:
            return np.dtype(np.float32 if self.bits_allocated == 32 else np.float64)
        if self.bits_allocated <= 8:
            return np.dtype(np.int8 if self.pixel_representation else np.uint8)
        if self.bits_allocated <= 16:
            return np.dtype(np.int16 if self.pixel_representation else np.uint16)
        return np.dtype(np.int32 if self.pixel_representation else np.uint32)

    @property
    def subsampled_422(self) -> bool:
        return self.native and self.photometric_interpretation == "YBR_FULL_422"

    def frame_nbytes(self) -> int:
        """Bytes of one native frame (1-bit frames are counted in bits by the caller)."""
        spp = self.samples_per_pixel
        n = self.rows * self.columns * spp
        if self.subsampled_422:
            n = self.rows * self.columns * 2
        return n * (self.bits_allocated // 8)

    def validate(self) -> str | None:
        """A reason these attributes cannot describe a frame, or None."""
        if self.rows <= 0 or self.columns <= 0:
            return f"invalid image size {self.rows}x{self.columns}"
        if self.samples_per_pixel not in (1, 3, 4):
            return f"unsupported SamplesPerPixel {self.samples_per_pixel}"
        if self.bits_allocated not in (1, 8, 16, 32, 64):
            return f"unsupported BitsAllocated {self.bits_allocated}"
        if not 0 < self.bits_stored <= self.bits_allocated:
            return f"BitsStored {self.bits_stored} does not fit BitsAllocated {self.bits_allocated}"
        if self.number_of_frames < 1:
            return f"invalid NumberOfFrames {self.number_of_frames}"
        return None
