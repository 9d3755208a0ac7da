"""CUDA kernels for the GPU volume: stored samples -> modality LUT -> volume dtype, per batch.

One launch handles a whole batch: frame ``b`` is read from slice ``sidx[b]`` of ``src`` and written
to slice ``didx[b]`` of ``dst`` (the same array for frames decoded in place). The arithmetic mirrors
the CPU path exactly (``codecs/pixels``): samples masked to BitsStored (unsigned) or sign-extended
from it (signed), integer LUTs in 64-bit integers, non-integral ones in float64 with explicit
round-to-nearest multiply and add (no FMA contraction) stored as the volume's float32, so a GPU
volume is bit-identical to the CPU one.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

C_TYPES = {
    "uint8": "unsigned char", "int8": "signed char", "uint16": "unsigned short",
    "int16": "short", "uint32": "unsigned int", "int32": "int", "int64": "long long",
    "float32": "float", "float64": "double",
}

MODE_COPY, MODE_INT, MODE_FLOAT = 0, 1, 2

_SOURCE = r"""
template<typename S>
__device__ __forceinline__ long long ms_conform(S x, int ubits, int sbits) {
    long long v = (long long)x;
    if (ubits > 0) v &= (long long)((1ULL << ubits) - 1ULL);          // signed codestream, unsigned header
    if (sbits > 0) { int s = 64 - sbits; v = (long long)((unsigned long long)v << s) >> s; }  // sign-extend
    return v;
}

template<typename S, typename T>
__global__ void ms_lut(const S* src, const int* __restrict__ sidx, T* dst, const int* __restrict__ didx,
                       long long plane, int n, int ubits, int sbits, const double* __restrict__ slope,
                       const double* __restrict__ inter, const int* __restrict__ mode) {
    long long total = plane * (long long)n;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        int b = (int)(i / plane);
        long long p = i - (long long)b * plane;
        long long v = ms_conform<S>(src[(long long)sidx[b] * plane + p], ubits, sbits);
        T out;
        int m = mode[b];
        if (m == 0) out = (T)v;
        else if (m == 1) out = (T)(v * (long long)slope[b] + (long long)inter[b]);
        else out = (T)__dadd_rn(__dmul_rn((double)v, slope[b]), inter[b]);
        dst[(long long)didx[b] * plane + p] = out;
    }
}

template<typename S>
__global__ void ms_minmax(const S* src, const int* __restrict__ sidx, long long plane, int ubits,
                          int sbits, long long* lo, long long* hi) {
    int b = blockIdx.y;
    const S* p = src + (long long)sidx[b] * plane;
    long long mn = 0x7fffffffffffffffLL, mx = -0x7fffffffffffffffLL - 1;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < plane;
         i += (long long)gridDim.x * blockDim.x) {
        long long v = ms_conform<S>(p[i], ubits, sbits);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    for (int o = 16; o > 0; o >>= 1) {
        long long a = __shfl_down_sync(0xffffffffu, mn, o), c = __shfl_down_sync(0xffffffffu, mx, o);
        mn = a < mn ? a : mn;
        mx = c > mx ? c : mx;
    }
    if ((threadIdx.x & 31) == 0) { atomicMin(lo + b, mn); atomicMax(hi + b, mx); }
}
"""

_modules: dict[str, Any] = {}
_lock = threading.Lock()


def _function(cupy: Any, name: str) -> Any:
    """A compiled template instance; CuPy caches the binary on disk, so only a machine's first
    use of a type pair pays the NVRTC compile."""
    with _lock:
        mod = _modules.get(name)
        if mod is None:
            mod = cupy.RawModule(code=_SOURCE, options=("-std=c++14",), name_expressions=[name])
            _modules[name] = mod
    return mod.get_function(name)


def _ctype(dtype: np.dtype) -> str:
    try:
        return C_TYPES[np.dtype(dtype).name]
    except KeyError:
        raise TypeError(f"no GPU kernel for dtype {dtype}") from None


def apply_lut(cupy: Any, src: Any, sidx: Any, dst: Any, didx: Any, n: int, ubits: int, sbits: int,
              slope: Any, inter: Any, mode: Any, stream: Any) -> None:
    """dst[didx[b]] = LUT(conform(src[sidx[b]])) for b < n; src/dst are (slices, rows, cols).
    Launched on the current CuPy stream: call inside ``with stream:``."""
    plane = int(src.shape[1] * src.shape[2])
    fn = _function(cupy, f"ms_lut<{_ctype(src.dtype)}, {_ctype(dst.dtype)}>")
    threads = 256
    blocks = max(1, min(65535, (plane * n + threads - 1) // threads))
    fn((blocks,), (threads,), (src, sidx, dst, didx, np.int64(plane), np.int32(n), np.int32(ubits),
                               np.int32(sbits), slope, inter, mode))


def minmax(cupy: Any, src: Any, sidx: Any, n: int, ubits: int, sbits: int,
           stream: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (min, max) of the conformed stored values, to catch a frame that would not fit
    the volume dtype (the CPU path promotes the array then; so does the GPU one). Call inside
    ``with stream:`` so the buffers are filled on that stream."""
    plane = int(src.shape[1] * src.shape[2])
    lo = cupy.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    hi = cupy.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    fn = _function(cupy, f"ms_minmax<{_ctype(src.dtype)}>")
    threads = 256
    blocks = max(1, min(64, (plane + threads - 1) // threads))
    fn((blocks, n), (threads,), (src, sidx, np.int64(plane), np.int32(ubits), np.int32(sbits), lo, hi))
    out = lo.get(stream=stream), hi.get(stream=stream)
    stream.synchronize()
    return out
