"""Series per minute: converting many series to NIfTI in 1 process vs on a Dask LocalCluster.

    .venv/bin/pip install -e '.[distributed]'
    .venv/bin/python benchmarks/bench_distributed.py [--series 24] [--slices 80] [--workers 2]

The same series, written once (uncompressed and JPEG 2000 halves), are converted by
``medstream.distributed.convert_one`` in a loop in this process, then by ``convert_many`` on a
LocalCluster (worker processes, 2 threads each). Outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


def prepare(data: Path, n: int, slices: int) -> list[str]:
    from series import transcode, write_series

    out = []
    for k in range(n):
        folder = data / f"s{k:03d}-{slices}"
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            paths = write_series(folder / "raw", slices, size=256, spacing=1.0 + k / 100)
            if k % 2 and shutil.which("gdcmconv"):
                transcode(paths, folder / "j2k", ["gdcmconv", "--j2k"])
                shutil.rmtree(folder / "raw")
            (folder / ".done").write_text("ok")
        out.append(str(next(p for p in (folder / "raw", folder / "j2k") if p.exists())))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=24)
    ap.add_argument("--slices", type=int, default=80)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".data" / "many")
    args = ap.parse_args()
    sources = prepare(args.data, args.series, args.slices)

    from distributed import Client, LocalCluster

    import medstream.distributed as msd

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        single = [msd.convert_one(s, os.path.join(tmp, "single")) for s in sources]
        t_single = time.perf_counter() - t0
        assert all(r["error"] is None for r in single), single
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=2, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        client.run(lambda: __import__("medstream"))  # workers warm (imports), as in a real cluster
        t0 = time.perf_counter()
        rows = msd.convert_many(sources, os.path.join(tmp, "cluster"), client=client)
        t_cluster = time.perf_counter() - t0
        client.close()
        cluster.close()
        assert all(r["error"] is None for r in rows), rows
        import nibabel as nib

        for a, b in zip(single, rows):
            assert np.array_equal(np.asarray(nib.load(a["output"]).dataobj),
                                  np.asarray(nib.load(b["output"]).dataobj))
    n = len(sources)
    table = "\n".join([
        "| mode | seconds | series/minute | vs 1 process |",
        "|---|---|---|---|",
        f"| 1 process (medstream threads) | {t_single:.1f} | {n / t_single * 60:.0f} | 1.00x |",
        f"| LocalCluster, {args.workers} worker processes | {t_cluster:.1f} | "
        f"{n / t_cluster * 60:.0f} | {t_single / t_cluster:.2f}x |",
    ])
    print(f"\n{n} series of {args.slices} x 256x256 CT (half uncompressed, half J2K), "
          f"{os.cpu_count()} cores\n\n{table}")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "distributed.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
