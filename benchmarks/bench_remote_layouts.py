"""Vendor layouts from disk and from a real Orthanc (DICOMweb), same files, same run.

For each real series of tests/data/qa-dev (Siemens mosaic runs, a UIH VFRAME DTI, a Philips
enhanced 4D file): ``open_volume(folder, dynamic=True)`` against
``open_volume(<series URL>, dynamic=True)`` from an Orthanc started here on 127.0.0.1 (sharing
the machine's cores), plus the same over DICOMweb with ``retrieve="frames"`` (one request per
frame or tile). Best of ``--repeat`` after a warm-up, cache purged before each run. The volumes
are checked equal before anything is timed.

    .venv/bin/python benchmarks/bench_remote_layouts.py [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

SERIES = {
    "Siemens mosaic run (2 x 35 slices)": "siemens-mosaic/ax/axasc35",
    "Siemens mosaic, JPEG 2000 (2 x 36)": "siemens-mosaic/axmb/AxInt36mb",
    "UIH VFRAME DTI (17 x 20)": "uih-vframe/dti_tra_dir16_AP_SaveBySlc__140028",
    "Philips enhanced 4D, one file (2 x 32)": "enhanced-4d/Philips",
}


def best(fn, repeat: int) -> float:
    import medstream as ms

    fn()
    times = []
    for _ in range(repeat):
        ms.purge_cache()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import medstream as ms
    from orthanc_server import Orthanc, available

    if not available():
        sys.exit("Orthanc + orthanc-dicomweb are needed (apt-get install orthanc orthanc-dicomweb)")
    data = ROOT / "tests" / "data" / "qa-dev"
    server = Orthanc().start()
    rows = []
    try:
        for name, rel in SERIES.items():
            folder = data / rel
            files = sorted(p for p in folder.iterdir()
                           if p.is_file() and p.suffix not in (".nii", ".txt") and p.name != "LICENSE")
            uploaded = [server.upload(p) for p in files]
            study, series, _ = server.uids(uploaded[0]["ID"])
            url = f"{server.dicomweb}/studies/{study}/series/{series}"
            disk = ms.open_volume(folder, dynamic=True)
            web = ms.open_volume(url, dynamic=True)
            assert web.shape == disk.shape and np.array_equal(np.asarray(web), np.asarray(disk))
            t_disk = best(lambda: ms.open_volume(folder, dynamic=True), args.repeat)
            t_web = best(lambda: ms.open_volume(url, dynamic=True), args.repeat)
            t_frames = best(lambda: ms.open_volume(url, dynamic=True, retrieve="frames"),
                            args.repeat)
            rows.append({"series": name, "shape": list(disk.shape), "disk_s": round(t_disk, 3),
                         "dicomweb_s": round(t_web, 3), "frames_s": round(t_frames, 3),
                         "web_over_disk": round(t_web / t_disk, 2)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
    print("\n| series | shape | disk | DICOMweb | DICOMweb / disk | one request per frame |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['series']} | {tuple(r['shape'])} | {r['disk_s']:.3f} s | {r['dicomweb_s']:.3f} s "
              f"| {r['web_over_disk']:.2f}x | {r['frames_s']:.3f} s |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
