"""A stand-in GPU stack (NumPy for CuPy, imagecodecs for nvImageCodec) so the GPU volume's
batching, fallback, cancel and failure logic is tested on machines without a GPU (CI).

The kernels are replaced by NumPy versions of the same arithmetic, and the "GPU" decoder is a CPU
decoder: a test on this stack that compares the "GPU" volume with the CPU one compares the CPU
path with a NumPy copy of itself. Such tests check logic only and are never evidence about a GPU;
the real kernels and decoders run only in ``test_gpu.py``'s ``real-gpu`` cases, which skip
without a CUDA GPU.
"""

from __future__ import annotations

import types
from typing import Any

import imagecodecs
import numpy as np

from medstream.gpu import backend, decode, kernels


class FakeArray(np.ndarray):
    def set(self, host: np.ndarray, stream: Any = None) -> None:
        self[...] = host

    def get(self, stream: Any = None) -> np.ndarray:
        return np.asarray(self).copy()

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"data": self.__array_interface__["data"], "shape": self.shape}


def _fa(a: np.ndarray) -> FakeArray:
    return np.asarray(a).view(FakeArray)


class _Ctx:
    ptr = 1

    def __init__(self, *a: Any, **k: Any) -> None:
        pass

    def __enter__(self) -> "_Ctx":
        return self

    def __exit__(self, *a: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass


def make_cupy(free: int = 1 << 40) -> Any:
    cp = types.SimpleNamespace()
    cp.cuda = types.SimpleNamespace(
        Device=_Ctx, Stream=_Ctx, alloc_pinned_memory=lambda n: bytearray(n),
        runtime=types.SimpleNamespace(memGetInfo=lambda: (free, free)),
    )
    cp.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)
    cp.zeros = lambda shape, dtype: _fa(np.zeros(shape, dtype))
    cp.empty = lambda shape, dtype: _fa(np.empty(shape, dtype))
    cp.full = lambda n, v, dtype: _fa(np.full(n, v, dtype))
    cp.asarray = lambda a: a if isinstance(a, FakeArray) else _fa(np.array(a))
    cp.asnumpy = lambda a: np.array(a)
    return cp


class _CodeStream:
    def __init__(self, data: bytes) -> None:
        if data[:2] == b"\xff\xd8":
            arr = imagecodecs.jpeg8_decode(data)
        else:
            arr = imagecodecs.jpeg2k_decode(data)  # raises on garbage, like nvImageCodec's parser
        self.arr = arr
        self.dtype, self.precision = arr.dtype, 0
        self.height, self.width, self.num_channels = arr.shape[0], arr.shape[1], 1


class _Decoder:
    def __init__(self, **kwargs: Any) -> None:
        pass

    def decode(self, streams: Any, images: Any = None, params: Any = None,
               cuda_stream: int = 0) -> Any:
        if not isinstance(streams, list):
            return self.decode([streams])[0]
        streams = [s if isinstance(s, _CodeStream) else _CodeStream(s) for s in streams]
        if images is None:
            return [_fa(s.arr) for s in streams]
        for s, img in zip(streams, images):
            img[...] = s.arr
        return images


def make_nvimgcodec() -> Any:
    nv = types.SimpleNamespace()
    nv.CodeStream = _CodeStream
    nv.Decoder = _Decoder
    nv.DecodeParams = lambda **k: k
    nv.ColorSpec = types.SimpleNamespace(UNCHANGED=0)
    nv.Backend = lambda kind: kind
    nv.BackendKind = types.SimpleNamespace(GPU_ONLY=0, HYBRID_CPU_GPU=1)
    nv.as_images = lambda targets, **k: targets
    return nv


def _conform(x: np.ndarray, ubits: int, sbits: int) -> np.ndarray:
    v = x.astype(np.int64)
    if ubits:
        v &= (1 << ubits) - 1
    if sbits:
        s = 64 - sbits
        v = (v << s) >> s
    return v


def apply_lut(cupy: Any, src: Any, sidx: Any, dst: Any, didx: Any, n: int, ubits: int,
              sbits: int, slope: Any, inter: Any, mode: Any, stream: Any) -> None:
    for b in range(n):
        v = _conform(np.asarray(src[int(sidx[b])]), ubits, sbits)
        if mode[b] == kernels.MODE_COPY:
            out = v
        elif mode[b] == kernels.MODE_INT:
            out = v * int(slope[b]) + int(inter[b])
        else:
            out = v.astype(np.float64) * float(slope[b]) + float(inter[b])
        dst[int(didx[b])] = out.astype(dst.dtype)


def minmax(cupy: Any, src: Any, sidx: Any, n: int, ubits: int, sbits: int,
           stream: Any) -> tuple[np.ndarray, np.ndarray]:
    vals = [_conform(np.asarray(src[int(sidx[b])]), ubits, sbits) for b in range(n)]
    return np.array([v.min() for v in vals]), np.array([v.max() for v in vals])


def install(monkeypatch: Any, free: int = 1 << 40) -> None:
    """Make ``device="cuda"`` use the fake stack for one test."""
    fake = backend.GpuBackend(make_cupy(free), make_nvimgcodec(), 0, "fake")
    monkeypatch.setattr(backend, "_backend", fake)
    monkeypatch.setattr(kernels, "apply_lut", apply_lut)
    monkeypatch.setattr(kernels, "minmax", minmax)
    monkeypatch.setattr(decode, "_direct_ok", None)
