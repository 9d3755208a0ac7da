"""GPU volumes (``device="cuda"``): CuPy arrays filled by batched nvImageCodec decodes.

Optional: needs ``pip install 'medstream[gpu]'`` and a CUDA GPU. Importing this package does not
import CuPy; ``require_gpu()`` does, and says what is missing.
"""

from __future__ import annotations

from ..core.hooks import register_device
from .backend import (
    GpuMemoryError,
    GpuUnavailableError,
    check_device,
    gpu_available,
    require_gpu,
)


def _check_and_register(device: str) -> str:
    """The device check for ``device="cuda"``; a passing check brings in the GPU volume."""
    dev = check_device(device)
    if dev == "cuda":
        from . import volume  # noqa: F401  (registers GpuStreamingVolume for "cuda")
    return dev


register_device("cuda", _check_and_register)

__all__ = ["GpuMemoryError", "GpuUnavailableError", "check_device", "gpu_available", "require_gpu"]
