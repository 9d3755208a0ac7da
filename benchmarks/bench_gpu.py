"""300 x 512^2 CT series from files into GPU memory: medstream device="cuda" vs its CPU path vs
the nvImageCodec pydicom plugin loop, same data, same machine, one process.

Per codec (HTJ2K lossless, JPEG 2000 lossless, uncompressed), best of ``--repeat`` runs after one
warm-up (kernel compile, decoder start-up, page cache):
- medstream GPU: ``open_volume(folder, device="cuda")`` end to end (folder scan + headers +
  geometry + batched GPU decode + modality LUT), caches cleared before each run; also its load
  alone (``volume.load()`` on a volume whose headers are read) and the time to the first slice.
- medstream CPU: ``open_volume(folder)`` end to end, same caches cleared.
- pydicom + nvImageCodec plugin: ``dcmread`` + ``pixel_array`` (the plugin decodes on the GPU and
  copies back) per file, sort by position, ``cupy.asarray`` each and ``cupy.stack`` (what MONAI
  Deploy ships).
- nvImageCodec alone: one batch decode of the series' codestreams already in memory (the limit).
GPU and CPU volumes are checked bit-identical.

    python benchmarks/bench_gpu.py [--slices 300] [--size 512] [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

CODECS = ["htj2k", "j2k", "uncompressed"]


def prepare(data: Path, slices: int, size: int) -> dict[str, Path]:
    from gpu_series import write_series

    out = {}
    for codec in CODECS:
        folder = data / f"{codec}-{slices}x{size}"
        if not (folder / ".done").exists():
            t = time.perf_counter()
            write_series(folder, slices, size, codec, workers=os.cpu_count() or 4)
            (folder / ".done").write_text("ok")
            print(f"wrote {folder} in {time.perf_counter() - t:.1f} s", flush=True)
        out[codec] = folder
    return out


def fresh() -> None:
    import medstream as ms
    from medstream.dicom.header import locators
    from medstream.dicom.store import module_store

    ms.purge_cache()
    module_store.clear()
    locators.clear()


def run_medstream(folder: Path, device: str) -> dict:
    import cupy

    import medstream as ms

    fresh()
    first: list[float] = []
    t0 = time.perf_counter()
    vol = ms.open_volume(str(folder), device=device,
                         on_progress=lambda p: first or first.append(time.perf_counter()))
    if device == "cuda":
        cupy.cuda.Device().synchronize()
    total = time.perf_counter() - t0
    st = vol.status
    return {"seconds": total, "load_seconds": st.seconds, "first_slice": first[0] - t0,
            "gpu_frames": getattr(st, "gpu_frames", None),
            "cpu_fallback_frames": getattr(st, "cpu_fallback_frames", None),
            "in_place": getattr(st, "decoded_in_place", None), "volume": vol}


def run_load_only(folder: Path) -> dict:
    """Headers already read (a volume created, then loaded): the decode path alone."""
    import cupy

    import medstream as ms

    ms.purge_cache()
    vol = ms.open_volume(str(folder), device="cuda", load=False)
    first: list[float] = []
    t0 = time.perf_counter()
    vol.load(lambda p: first or first.append(time.perf_counter())).result()
    cupy.cuda.Device().synchronize()
    return {"seconds": time.perf_counter() - t0, "first_slice": first[0] - t0}


def run_plugin_loop(folder: Path) -> dict:
    import cupy
    import pydicom

    paths = sorted(folder.glob("*.dcm"))
    t0 = time.perf_counter()
    items = []
    first = None
    for p in paths:
        ds = pydicom.dcmread(p)
        g = cupy.asarray(ds.pixel_array)
        if first is None:
            cupy.cuda.Device().synchronize()
            first = time.perf_counter() - t0
        items.append((float(ds.ImagePositionPatient[2]), g))
    items.sort(key=lambda x: x[0])
    vol = cupy.stack([g for _, g in items])
    cupy.cuda.Device().synchronize()
    return {"seconds": time.perf_counter() - t0, "first_slice": first, "shape": vol.shape}


def run_nvimgcodec_batch(folder: Path) -> dict | None:
    import cupy
    import pydicom
    from pydicom.encaps import generate_frames
    from nvidia import nvimgcodec

    streams = []
    for p in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(p)
        if not ds.file_meta.TransferSyntaxUID.is_compressed:
            return None
        streams.append(next(generate_frames(ds.PixelData, number_of_frames=1)))
    dec = nvimgcodec.Decoder()
    params = nvimgcodec.DecodeParams(allow_any_depth=True, color_spec=nvimgcodec.ColorSpec.UNCHANGED)
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        out = dec.decode(streams, params=params)
        cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t0)
    one = 1e9
    for _ in range(2):
        t0 = time.perf_counter()
        for s in streams:
            dec.decode(s, params=params)
        cupy.cuda.Device().synchronize()
        one = min(one, time.perf_counter() - t0)
    return {"seconds": best, "frame_by_frame": one, "decoded": sum(o is not None for o in out)}


def best_of(fn, repeat: int, *args) -> dict:
    fn(*args)  # warm-up
    runs = [fn(*args) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path("/tmp/medstream-bench-gpu"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import cupy

    import medstream as ms
    from medstream.gpu import require_gpu

    gpu = require_gpu()
    plugin = "pydicom + nvImageCodec plugin"
    try:
        from nvidia.nvimgcodec.tools.dicom import pydicom_plugin

        if not pydicom_plugin.register():
            plugin = "pydicom (plugin failed to register: its default decoders)"
    except Exception as exc:  # pragma: no cover - depends on the wheel
        plugin = f"pydicom (no nvImageCodec plugin: {exc})"
    print(f"GPU: {gpu.name}; nvImageCodec {gpu.nvimgcodec.__version__}; CuPy {cupy.__version__}; "
          f"{os.cpu_count()} CPUs; medstream workers {ms.runtime.workers}", flush=True)
    folders = prepare(args.data, args.slices, args.size)
    rows, results = [], {}
    for codec, folder in folders.items():
        g = best_of(run_medstream, args.repeat, folder, "cuda")
        c = best_of(run_medstream, args.repeat, folder, "cpu")
        same = bool(np.array_equal(g["volume"].to_numpy(), c["volume"].scalar_data))
        lo = best_of(run_load_only, args.repeat, folder)
        pl = best_of(run_plugin_loop, max(1, args.repeat - 1), folder)
        nb = run_nvimgcodec_batch(folder)
        for r in (g, c):
            r.pop("volume")
        results[codec] = {"gpu": g, "cpu": c, "gpu_load_only": lo, "plugin_loop": pl,
                          "nvimgcodec_batch": nb, "bit_identical": same}
        print(json.dumps({codec: results[codec]}, default=str), flush=True)
        rows.append(
            f"| {codec} | {g['seconds']:.3f} s (load {lo['seconds']:.3f} s) | "
            f"{lo['first_slice']:.3f} s ({100 * lo['first_slice'] / lo['seconds']:.0f}% of the load) | "
            f"{c['seconds']:.3f} s ({c['seconds'] / g['seconds']:.1f}x) | "
            f"{pl['seconds']:.3f} s ({pl['seconds'] / g['seconds']:.1f}x) | "
            + (f"{nb['seconds']:.3f} s / {nb['frame_by_frame']:.3f} s" if nb else "-")
            + f" | {g['gpu_frames']}/{g['cpu_fallback_frames']} | {'yes' if same else 'NO'} |")
    table = [
        f"{args.slices} x {args.size}^2 CT from files, {gpu.name}, {os.cpu_count()} CPUs, best of "
        f"{args.repeat} (plugin loop: {max(1, args.repeat - 1)}); peer: {plugin}",
        "",
        "| codec | medstream GPU end to end (load alone) | first slice on the GPU | "
        "medstream CPU (GPU speed-up) | pydicom plugin loop (GPU speed-up) | "
        "nvImageCodec alone: batch / frame by frame | GPU/CPU-fallback frames | bit-identical |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    print("\n".join(table))
    if args.json:
        args.json.write_text(json.dumps({"table": table, "results": results}, indent=1, default=str))


if __name__ == "__main__":
    main()
