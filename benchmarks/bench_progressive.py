"""Progressive loading through a throttled link: a 300 x 512^2 HTJ2K CT (lossless RPCL with TLM,
real CT pixels plus scanner-like noise) served by a static DICOMweb server that honours Range,
behind a proxy on 127.0.0.1 that gives 100 Mbit/s shared and 20 ms per request.

Runs, each with the cache purged first (same data, same run):

- plain: ``ms.open_volume(url)`` (the whole series in one request, decoded as it arrives);
- progressive: ``ms.open_volume(url, stages="progressive")`` (``ms.PROGRESSIVE``);
- decimated: ``ms.open_volume(url, decimate=(2, 2, 4))``;
- progressive again with a server that ignores Range (as Orthanc does): it must still load.

Reported: time to the first slice, time until every slice has a value (lossy or filled count;
for the plain load that is its final time), time to final, bytes through the proxy, requests.
Targets: every slice with a value within 25% of the plain load's time, final within 1.1x of it,
decimated within 15% of it. Best of ``--repeat`` by final time; the volumes are checked equal
to the plain load before anything is reported.

    .venv/bin/python benchmarks/bench_progressive.py [--slices 300] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")


def prepare(data: Path, slices: int) -> Path:
    from series import htj2k_series, write_series

    out = data / f"htj2k-rpcl-{slices}"
    if not (out / ".done").exists():
        shutil.rmtree(out, ignore_errors=True)
        raw = write_series(data / f"htj2k-src-{slices}", slices, size=512, spacing=1.0,
                           pixel_spacing=(0.7, 0.7))
        htj2k_series(raw, out, noise=12)
        shutil.rmtree(data / f"htj2k-src-{slices}")
        (out / ".done").write_text("ok")
    return out


def run(url: str, proxy, **kwargs) -> dict:
    import medstream as ms

    ms.purge_cache()
    proxy.reset()
    n = None
    t_first = t_all = None
    start = time.perf_counter()
    shown = 0

    def progress(p) -> None:
        nonlocal t_first, t_all, shown
        now = time.perf_counter() - start
        if t_first is None:
            t_first = now
        if t_all is None:
            shown_now = int(np.count_nonzero(vol_ref[0].slice_status)) if vol_ref else 0
            if shown_now == p.total:
                t_all = now

    vol_ref: list = []
    vol = ms.open_volume(url, load=False, **{k: v for k, v in kwargs.items() if k == "decimate"})
    vol_ref.append(vol)
    stages = kwargs.get("stages")
    job = vol.load(progress, stages=stages) if stages else vol.load(progress)
    job.result(600)
    t_final = time.perf_counter() - start
    n = vol.shape[0]
    return {"first": t_first, "all": t_all or t_final, "final": t_final, "bytes": proxy.bytes_down,
            "requests": proxy.requests, "slices": n, "volume": vol}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()

    import medstream as ms
    from static_dicomweb import StaticDicomWeb
    from throttle_proxy import ThrottleProxy

    folder = prepare(ROOT / "benchmarks" / ".data", args.slices)
    rows = []
    plain_final = None
    reference = None
    for label, kwargs, ranges in [
        ("plain", {}, True),
        ("progressive", {"stages": "progressive"}, True),
        ("decimated (2, 2, 4)", {"decimate": (2, 2, 4)}, True),
        ("progressive, server ignores Range", {"stages": "progressive"}, False),
    ]:
        server = StaticDicomWeb(folder, ranges=ranges)
        proxy = ThrottleProxy(server.port)
        url = f"{proxy.url}/studies/{server.study_uid}/series/{server.series_uid}"
        try:
            results = [run(url, proxy, **kwargs) for _ in range(args.repeat)]
        finally:
            proxy.close()
            server.close()
        best = min(results, key=lambda r: r["final"])
        vol = best.pop("volume")
        for r in results:
            r.pop("volume", None)
        if label == "plain":
            reference, plain_final = np.array(vol.scalar_data), best["final"]
        elif "decimate" not in kwargs:
            assert np.array_equal(vol.scalar_data, reference), f"{label}: not identical"
        best.update(label=label, all_vs_plain=best["all"] / plain_final,
                    final_vs_plain=best["final"] / plain_final)
        rows.append(best)
        print(f"{label:38s} first {best['first']:.2f} s  every slice {best['all']:.2f} s "
              f"({best['all_vs_plain']:.0%})  final {best['final']:.2f} s "
              f"({best['final_vs_plain']:.2f}x)  {best['bytes'] / 1e6:.1f} MB  "
              f"{best['requests']} requests", flush=True)
        ms.purge_cache()
    print("\n| load | first slice | every slice has a value | final | bytes | requests |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {r['first']:.2f} s | {r['all']:.2f} s ({r['all_vs_plain']:.0%}) "
              f"| {r['final']:.2f} s ({r['final_vs_plain']:.2f}x) | {r['bytes'] / 1e6:.1f} MB "
              f"| {r['requests']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
