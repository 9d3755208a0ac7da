"""What ``device="cuda"`` needs (CuPy, nvImageCodec, a CUDA GPU), found once, with clear errors.

Nothing here imports CuPy or nvImageCodec at medstream import time: the CPU path must not pay for
(or break on) the optional GPU stack. ``require_gpu()`` raises ``GpuUnavailableError`` naming every
missing piece, so a user knows what to install instead of reading an ImportError from deep inside.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import MedstreamError, VolumeError

INSTALL_HINT = "pip install 'medstream[gpu]' (CuPy and nvImageCodec for CUDA 13; see docs/gpu.md)"


class GpuUnavailableError(MedstreamError):
    """``device="cuda"`` was asked for but CuPy, nvImageCodec or a CUDA GPU is missing."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__("device='cuda' is unavailable: " + "; ".join(self.missing)
                         + f". Install with: {INSTALL_HINT}, or use device='cpu'.")

    def __reduce__(self):
        return (self.__class__, (self.missing,))


class GpuMemoryError(VolumeError):
    """The volume (plus its staging buffers) does not fit in free GPU memory; raised before any
    frame is read."""


@dataclass
class GpuBackend:
    cupy: Any
    nvimgcodec: Any  # the nvidia.nvimgcodec module
    device_id: int = 0
    name: str = ""
    _decoders: dict[int, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def decoder(self) -> Any:
        """One nvImageCodec decoder per thread (a decoder is not re-entrant), GPU backends only,
        so a frame the GPU cannot decode comes back as None and takes medstream's CPU path
        (counted) instead of nvImageCodec's own CPU codecs (uncounted)."""
        key = threading.get_ident()
        dec = self._decoders.get(key)
        if dec is None:
            nv = self.nvimgcodec
            backends = [nv.Backend(nv.BackendKind.GPU_ONLY), nv.Backend(nv.BackendKind.HYBRID_CPU_GPU)]
            dec = nv.Decoder(device_id=self.device_id, backends=backends)
            with self._lock:
                self._decoders[key] = dec
        return dec

    def free_bytes(self) -> int:
        """Free device memory, counting what CuPy's pool holds but does not use."""
        with self.cupy.cuda.Device(self.device_id):
            free, _total = self.cupy.cuda.runtime.memGetInfo()
            return int(free) + int(self.cupy.get_default_memory_pool().free_bytes())


_backend: GpuBackend | None = None
_backend_lock = threading.Lock()


def _probe() -> GpuBackend:
    missing: list[str] = []
    cupy = nv = None
    try:
        import cupy  # type: ignore[import-not-found,no-redef]
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        missing.append(f"CuPy is not importable ({type(exc).__name__}: {exc})")
    try:
        from nvidia import nvimgcodec as nv  # type: ignore[import-not-found,no-redef]
    except Exception as exc:
        missing.append(f"nvImageCodec is not importable ({type(exc).__name__}: {exc})")
    name = ""
    if cupy is not None:
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:
            count = 0
            missing.append(f"no CUDA driver or GPU ({type(exc).__name__}: {exc})")
        else:
            if count < 1:
                missing.append("no CUDA GPU is visible")
            else:
                props = cupy.cuda.runtime.getDeviceProperties(0)
                raw = props.get("name", b"")
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
    if missing:
        raise GpuUnavailableError(missing)
    return GpuBackend(cupy, nv, 0, name)


def require_gpu() -> GpuBackend:
    """The GPU stack, probed once; raises ``GpuUnavailableError`` saying what is missing."""
    global _backend
    if _backend is None:
        with _backend_lock:
            if _backend is None:
                _backend = _probe()
    return _backend


def gpu_available() -> bool:
    """True when ``device="cuda"`` can work here (CuPy, nvImageCodec and a GPU)."""
    try:
        require_gpu()
    except GpuUnavailableError:
        return False
    return True


def check_device(device: str | None) -> str:
    """Normalise a ``device`` argument; for CUDA, fail now (typed) if the stack is missing."""
    dev = (device or "cpu").lower()
    if dev == "cpu":
        return "cpu"
    if dev in ("cuda", "cuda:0", "gpu"):
        require_gpu()
        return "cuda"
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
