"""A 300 x 512x512 CT series from an S3-compatible object store vs the same local folder.

The store is moto's S3 server on 127.0.0.1 (started here; a real bucket adds network latency,
which the concurrent ranged reads are there to hide). Cases, each in a fresh process, best of
the measured runs after one warm-up:

- medstream ``open_volume(folder)`` on the local copy (the reference),
- medstream ``open_volume("s3://bucket/ct/")``: listing, ranged header reads, ranged pixel reads,
- the strongest plain peer: s3fs fetching every object at once (``fs.cat`` of the list,
  concurrent) then pydicom reading, sorting and stacking them,
- s3fs fetching every object without decoding: what the server can deliver.

The S3 cases run twice: straight to the server, and through a proxy that adds a round trip
(``--latency``, 20 ms: a bucket in another zone) to every request, as a real store does.

    .venv/bin/pip install -e '.[test,bench]'
    .venv/bin/python benchmarks/bench_storage.py [--slices 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
warnings.filterwarnings("ignore")

from bench_volume import _rss_mb, prepare, stack_by_position  # noqa: E402


def _options() -> dict:
    """The store for every case; the peer gets the same 64 connections as medstream (s3fs's
    own default is 10), its strongest form."""
    from s3_server import KEY, SECRET

    return {"key": KEY, "secret": SECRET,
            "client_kwargs": {"endpoint_url": os.environ["BENCH_S3_ENDPOINT"]},
            "config_kwargs": {"max_pool_connections": 64}}


def _fs():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **_options())


def peer_medstream(source: str) -> np.ndarray:
    import medstream as ms
    from medstream.dicom.header import locators
    from medstream.dicom.store import module_store
    from medstream.storage import storage

    if source.startswith("s3://"):
        ms.configure_storage("s3://" + source[5:].split("/", 1)[0], **_options())
    ms.purge_cache()
    module_store.clear()  # every run lists, reads headers and pixels again: no head start
    locators.clear()
    storage.clear()
    return ms.open_volume(source).scalar_data


def peer_s3fs_pydicom(source: str) -> np.ndarray:
    import io

    import pydicom

    fs = _fs()
    blobs = fs.cat(sorted(fs.find(source)))  # every object, all requests in flight at once
    return stack_by_position([pydicom.dcmread(io.BytesIO(b)) for b in blobs.values()])


def peer_s3fs_fetch(source: str) -> np.ndarray:
    fs = _fs()
    blobs = fs.cat(sorted(fs.find(source)))
    return np.array([sum(len(b) for b in blobs.values())], dtype=np.float64)


PEERS = {"medstream": peer_medstream, "s3fs cat + pydicom": peer_s3fs_pydicom,
         "s3fs cat only (no decode)": peer_s3fs_fetch}


def child(peer: str, source: str, repeat: int) -> None:
    import pydicom  # noqa: F401
    import s3fs  # noqa: F401

    import medstream  # noqa: F401  (imports count as baseline for every case)

    base = _rss_mb()
    arr = PEERS[peer](source)
    peak = _rss_mb("VmHWM") - base
    times = []
    for _ in range(repeat):
        del arr
        t0 = time.perf_counter()
        arr = PEERS[peer](source)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": min(times), "peak_mb": peak,
                      "checksum": float(np.asarray(arr, dtype=np.float64).sum())}))


def run_child(peer: str, source: str, repeat: int, endpoint: str) -> dict:
    env = dict(os.environ, BENCH_S3_ENDPOINT=endpoint)
    proc = subprocess.run([sys.executable, __file__, "--child", peer, source, str(repeat)],
                          capture_output=True, text=True, timeout=1800, env=env)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": (proc.stderr or proc.stdout)[-300:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "medstream-bench"))
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added per request")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    from fault_proxy import FaultProxy
    from s3_server import S3Server

    folder = prepare(Path(args.data), args.slices)["uncompressed"]
    files = sorted(folder.glob("*.dcm"))
    mb = sum(p.stat().st_size for p in files) / 1e6
    server = S3Server().start()
    proxy = FaultProxy(server.port)
    proxy.add("", f"delay:{args.latency}")
    far = f"S3 + {args.latency * 1000:.0f} ms per request"
    try:
        url = "s3://bench/ct/"
        server.upload(folder, url)
        server.filesystem().rm(f"{url}.done")
        rows = [("local folder", "medstream", str(folder), server.endpoint)]
        for where, endpoint in (("S3 (moto, 127.0.0.1)", server.endpoint), (far, proxy.url)):
            rows += [(where, peer, url, endpoint) for peer in PEERS]
        results = []
        for where, peer, source, endpoint in rows:
            r = run_child(peer, source, args.repeat, endpoint)
            results.append((where, peer, r))
            print(where, peer, r, file=sys.stderr)
    finally:
        proxy.stop()
        server.stop()
    local = results[0][2].get("seconds")
    refs = {where: r.get("seconds") for where, peer, r in results if peer == "medstream"}
    print(f"\n{len(files)} files, {mb:.0f} MB, {os.cpu_count()} cores\n")
    print("| source | case | seconds | MB/s | peak MB | medstream speed-up |")
    print("|---|---|---|---|---|---|")
    for where, peer, r in results:
        if "seconds" not in r:
            print(f"| {where} | {peer} | n/a ({r.get('error', '')[:60]}) | | | |")
            continue
        ref = refs.get(where)
        ratio = f"{r['seconds'] / ref:.2f}x" if ref else "n/a"
        print(f"| {where} | {peer} | {r['seconds']:.2f} | {mb / r['seconds']:.0f} | "
              f"{r['peak_mb']:.0f} | {ratio} |")
    for where, ref in refs.items():
        if ref and local and where != "local folder":
            print(f"medstream from {where} runs at {local / ref:.2f}x its local-folder speed.")


if __name__ == "__main__":
    main()
