"""Soak: thousands of mixed loads in one process, then ``purge_cache()``: does memory come back,
do file descriptors and threads stay flat?

The mix, in a fixed shuffled order: single images of every codec in pydicom's test files, frames
of a real enhanced multi-frame file and tiles of real Siemens mosaics (tests/data/qa-dev), CT
volumes (40 x 256x256, built here), mosaic 4D volumes, loads cancelled mid-flight, and loads that
fail (missing file, corrupt codestream). After the first 50 operations the cache is purged and
RSS is the baseline; every ``--every`` operations the cache is purged again and RSS, VmHWM, open
file descriptors and threads are recorded. The claim: RSS after a purge stays within 60 MB of
the baseline.

    .venv/bin/python benchmarks/soak.py [--ops 3000] [--every 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import CancelledError
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


def status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * (1024 if line.rstrip().endswith("kB") else 1)
    return 0


def sample(ops: int, t0: float) -> dict[str, float]:
    import medstream as ms

    return {"ops": ops, "seconds": round(time.perf_counter() - t0, 1),
            "rss_mb": round(status("VmRSS") / 1024**2, 1),
            "hwm_mb": round(status("VmHWM") / 1024**2, 1),
            "fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "os_threads": status("Threads"), "cache_mb": round(ms.get_cache_size() / 1024**2, 1)}


def build(tmp: Path) -> dict[str, list]:
    import pydicom
    from pydicom.encaps import encapsulate, generate_fragmented_frames

    from corpus import local_files, qa
    from series import write_series

    import medstream as ms

    images = [ms.dicomfile_image_id(p) for p in local_files()
              if int(pydicom.dcmread(p, stop_before_pixels=True).get("NumberOfFrames") or 1) < 50]
    enhanced = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    n = int(pydicom.dcmread(enhanced, stop_before_pixels=True).NumberOfFrames)
    frames = [ms.dicomfile_image_id(enhanced, k) for k in range(1, n + 1)]
    mosaics = [qa("siemens-mosaic", "ax", "axasc35"), qa("siemens-mosaic", "axmb", "AxAsc36mb2a")]
    cts = []
    for k in range(3):
        cts.append(tmp / f"ct{k}")
        write_series(cts[-1], 40, size=256)
    bad = tmp / "bad_rle.dcm"  # a corrupt codestream: a typed error every time
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("MR_small_RLE.dcm"))
    frame = bytearray(b"".join(next(generate_fragmented_frames(ds.PixelData, number_of_frames=1))))
    frame[8:12] = b"\xff\xff\xff\xff"
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(bad)
    return {"images": images, "frames": frames, "mosaics": mosaics, "cts": cts,
            "failing": [ms.dicomfile_image_id(bad), ms.dicomfile_image_id(tmp / "missing.dcm")]}


def run(ops: int, every: int, seed: int) -> dict:
    import medstream as ms

    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as td:
        data = build(Path(td))
        kinds = ["image"] * 50 + ["frame"] * 20 + ["volume"] * 6 + ["mosaic"] * 2 + \
                ["cancel"] * 10 + ["fail"] * 12
        counts: dict[str, int] = {}
        outcomes = {"ok": 0, "typed": 0, "cancelled": 0}
        samples = []
        t0 = time.perf_counter()
        for i in range(1, ops + 1):
            kind = rng.choice(kinds)
            counts[kind] = counts.get(kind, 0) + 1
            try:
                if kind == "image":
                    ms.load_image(rng.choice(data["images"])).result(60)
                elif kind == "frame":
                    ms.load_image(rng.choice(data["frames"])).result(60)
                elif kind == "volume":
                    ms.open_volume(str(rng.choice(data["cts"])))
                elif kind == "mosaic":
                    ms.open_volume(str(rng.choice(data["mosaics"])), dynamic=True)
                elif kind == "cancel":
                    vol = ms.open_volume(str(rng.choice(data["cts"])), load=False)
                    pending = vol.load()
                    vol.cancel_loading()
                    try:
                        pending.result(60)
                    except (ms.MedstreamError, CancelledError):
                        pass
                    outcomes["cancelled"] += 1
                    continue
                else:
                    ms.load_image(rng.choice(data["failing"])).result(60)
                outcomes["ok"] += 1
            except ms.MedstreamError:
                outcomes["typed"] += 1
            if i == 50 or i % every == 0 or i == ops:
                ms.purge_cache()
                gc.collect()
                samples.append(sample(i, t0))
                print(json.dumps(samples[-1]), flush=True)
        base = samples[0]["rss_mb"]
        return {"ops": ops, "seed": seed, "mix": counts, "outcomes": outcomes, "samples": samples,
                "baseline_rss_mb": base,
                "max_rss_after_purge_over_baseline_mb": round(
                    max(s["rss_mb"] for s in samples) - base, 1),
                "fds": sorted({s["fds"] for s in samples}),
                "threads": sorted({s["os_threads"] for s in samples})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=3000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = run(args.ops, args.every, args.seed)
    print(f"\n{result['ops']} operations {result['mix']}: {result['outcomes']}")
    print(f"RSS after purge: baseline {result['baseline_rss_mb']} MB (after 50 ops), at most "
          f"{result['max_rss_after_purge_over_baseline_mb']:+} MB over it; fds {result['fds']}; "
          f"OS threads {result['threads']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
