"""GPU volumes (``device="cuda"``): CuPy arrays filled by batched nvImageCodec decodes.

Optional: needs ``pip install 'medstream[gpu]'`` and a CUDA GPU. Importing this package does not
import CuPy; ``require_gpu()`` does, and says what is missing.
"""

from __future__ import annotations

from .backend import (
    GpuMemoryError,
    GpuUnavailableError,
    check_device,
    gpu_available,
    require_gpu,
)

__all__ = ["GpuMemoryError", "GpuUnavailableError", "check_device", "gpu_available", "require_gpu"]
