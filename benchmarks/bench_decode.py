"""Single-image latency and frames/second per codec: medstream (imagecodecs in 1 and 2 threads)
vs pydicom's default plugins, on the same 512x512 CT slice transcoded with dcmtk/gdcm/imagecodecs.

    .venv/bin/python benchmarks/bench_decode.py [--frames 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
warnings.filterwarnings("ignore")

import medstream as ms  # noqa: E402
from corpus import find, make_transcoded  # noqa: E402

CODECS = ["ct_implicit", "ct_rle", "ct_lossless_sv1", "ct_jpegls", "ct_j2k", "ct_htj2k"]


def medstream_fps(path: Path, frames: int, workers: int) -> tuple[float, float]:
    ms.runtime.set_workers(workers)
    iid = ms.dicomfile_image_id(path)
    lat = []
    for _ in range(5):
        t0 = time.perf_counter()
        ms.load_image(iid).result()
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    objs = [ms.load_image(iid, request_type="compute") for _ in range(frames)]
    for o in objs:
        o.result()
    return statistics.median(lat) * 1000, frames / (time.perf_counter() - t0)


def pydicom_fps(path: Path, frames: int) -> float | None:
    try:
        pydicom.dcmread(path).pixel_array
    except Exception:
        return None
    t0 = time.perf_counter()
    for _ in range(frames):
        pydicom.dcmread(path).pixel_array
    return frames / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="medstream-bench-"))
    files = {t.path.stem: t for t in make_transcoded(tmp)}
    files["ct_explicit"] = type(files["ct_rle"])(find("693_UNCI.dcm"), find("693_UNCI.dcm"),
                                                 "1.2.840.10008.1.2.1", True, "-")
    print("| codec (syntax) | latency ms | medstream 1 thread f/s | 2 threads f/s | pydicom f/s |"
          " 2 threads vs pydicom |")
    print("|---|---|---|---|---|---|")
    for name in ["ct_explicit"] + CODECS:
        t = files.get(name)
        if t is None:
            continue
        lat, fps1 = medstream_fps(t.path, args.frames, 1)
        _, fps2 = medstream_fps(t.path, args.frames, 2)
        ref = pydicom_fps(t.path, args.frames)
        ratio = f"{fps2 / ref:.2f}x" if ref else "pydicom has no plugin"
        print(f"| {name} ({t.syntax}) | {lat:.1f} | {fps1:.0f} | {fps2:.0f} | "
              f"{f'{ref:.0f}' if ref else 'n/a'} | {ratio} |")


if __name__ == "__main__":
    main()
