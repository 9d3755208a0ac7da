"""What nvImageCodec does with DICOM-style codestreams on this GPU, and what the header scan costs
per worker count (the data behind docs/gpu.md's notes). Run where bench_gpu.py left its data:

    PYTHONPATH=src:tests python benchmarks/gpu_probe.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import gpu_series  # noqa: E402
import medstream as ms  # noqa: E402
from medstream.dicom.header import locators  # noqa: E402
from medstream.dicom.store import module_store  # noqa: E402
from medstream.gpu import require_gpu  # noqa: E402


def exact(cp, out, frames, size: int) -> int:  # noqa: ANN001
    return sum(o is None or not np.array_equal(cp.asnumpy(cp.asarray(o)).reshape(size, size), f)
               for o, f in zip(out, frames))


def main() -> None:
    gpu = require_gpu()
    cp, nv = gpu.cupy, gpu.nvimgcodec
    dec = gpu.decoder()
    params = nv.DecodeParams(allow_any_depth=True, color_spec=nv.ColorSpec.UNCHANGED)
    for size in (64, 512):
        frames = [gpu_series.pixels(k, size) for k in range(20)]
        enc = [gpu_series.encode(f, "jpeg_lossless") for f in frames]
        one = [dec.decode(e, params=params) for e in enc]
        print(f"jpeg lossless {size}^2 x20: batch wrong {exact(cp, dec.decode(enc, params=params), frames, size)}, "
              f"one by one wrong {exact(cp, one, frames, size)}")
        for name in ("j2k", "htj2k"):
            enc = [gpu_series.encode(f, name) for f in frames]
            print(f"  {name} {size}^2 batch wrong:", exact(cp, dec.decode(enc, params=params), frames, size))
    folder = "/tmp/medstream-bench-gpu/htj2k-300x512"
    if Path(folder).is_dir():
        for w in (16, 8, 4, 2, 1):
            ms.runtime.set_workers(w)
            best = 9.0
            for _ in range(3):
                ms.purge_cache()
                module_store.clear()
                locators.clear()
                t = time.perf_counter()
                ms.scan_folder(folder)
                best = min(best, time.perf_counter() - t)
            print(f"scan_folder 300 files, {w} workers: {best:.3f} s")


if __name__ == "__main__":
    main()
