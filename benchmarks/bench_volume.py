"""Loading a 300 x 512x512 CT series into one array, medstream vs its peers, same data, same run.

From files (uncompressed, JPEG 2000 lossless, JPEG-LS, HTJ2K): medstream ``open_volume(folder)``
(scan + geometry + parallel decode) vs a pydicom loop (read, sort by position, stack), SimpleITK
``ImageSeriesReader`` and dcm2niix (DICOM -> NIfTI, as a converter). From a real Orthanc over
DICOMweb: medstream ``open_volume(series_url)`` vs dicomweb-client fetching frames one by one
(decoded with imagecodecs) and plain concurrent HTTP requests without decoding (the server's limit).

Every peer runs in its own fresh process (after one warm-up run): seconds are the best of the
measured runs, peak memory is the process's high-water mark above its RSS after imports.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/bench_volume.py [--slices 300] [--repeat 2] [--no-orthanc]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

CODECS = {
    "uncompressed": None,
    "j2k_lossless": ["gdcmconv", "--j2k"],
    "jpegls": ["dcmcjpls", "+el"],
    "htj2k": "imagecodecs",
}
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


# -- data --------------------------------------------------------------------------------------
def prepare(data: Path, slices: int) -> dict[str, Path]:
    from series import transcode, write_series

    out = {}
    raw = data / f"uncompressed-{slices}"
    if not (raw / ".done").exists():
        shutil.rmtree(raw, ignore_errors=True)
        write_series(raw, slices, size=512, spacing=1.0, pixel_spacing=(0.7, 0.7))
        (raw / ".done").write_text("ok")
    out["uncompressed"] = raw
    paths = sorted(raw.glob("*.dcm"))
    for name, tool in CODECS.items():
        if tool is None:
            continue
        folder = data / f"{name}-{slices}"
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            if tool == "imagecodecs":
                _htj2k(paths, folder)
            elif shutil.which(tool[0]):
                transcode(paths, folder, tool)
            else:
                print(f"skipping {name}: {tool[0]} not installed", file=sys.stderr)
                continue
            (folder / ".done").write_text("ok")
        out[name] = folder
    return out


def _htj2k(paths: list[Path], folder: Path) -> None:
    import imagecodecs
    import pydicom
    from pydicom.encaps import encapsulate

    folder.mkdir(parents=True)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.PixelData = encapsulate([imagecodecs.htj2k_encode(ds.pixel_array, reversible=True)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
        ds.save_as(folder / p.name, enforce_file_format=True)


# -- peers (each runs in a child process) --------------------------------------------------------
def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (``VmHWM``: its high-water mark). Not ``ru_maxrss``,
    which keeps the parent's high-water mark across fork and exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def peer_medstream(source: str) -> np.ndarray:
    import medstream as ms
    from medstream.dicom.header import locators
    from medstream.dicom.store import module_store
    from medstream.loaders.wadors import series_metadata

    ms.purge_cache()
    module_store.clear()  # every run reads headers / series metadata again: no head start
    locators.clear()
    series_metadata.clear()
    return ms.open_volume(source).scalar_data


def stack_by_position(dss: list) -> np.ndarray:
    """What a careful pydicom user writes: sort by position along the normal, decode, rescale
    and stack (the peers that decode with pydicom all end here)."""
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss = sorted(dss, key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float),
                                                  normal)))
    out = np.empty((len(dss), dss[0].Rows, dss[0].Columns), np.int16)
    for k, d in enumerate(dss):
        out[k] = d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept)
    return out


def peer_pydicom(source: str) -> np.ndarray:
    import pydicom

    return stack_by_position([pydicom.dcmread(p) for p in sorted(Path(source).glob("*.dcm"))])


def peer_simpleitk(source: str) -> np.ndarray:
    import SimpleITK as sitk

    global _sitk_image  # the array view below needs its image alive
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(source))
    _sitk_image = reader.Execute()
    return sitk.GetArrayViewFromImage(_sitk_image)


_sitk_image = None


def peer_dcm2niix(source: str) -> np.ndarray:
    import nibabel as nib

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["dcm2niix", "-z", "n", "-f", "v", "-o", out, source], check=True,
                       capture_output=True)
        return np.asarray(nib.load(os.path.join(out, "v.nii")).dataobj)


def _frame_urls(series_url: str) -> list[str]:
    import medstream as ms

    return [i[len("wadors:"):] for i in ms.wadors_image_ids(series_url)]


def peer_dicomweb_client(series_url: str) -> np.ndarray:
    """The natural dicomweb-client loop: series metadata, then each frame in turn, decoded."""
    import imagecodecs
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    root, _, rest = series_url.partition("/studies/")
    study, _, series = rest.partition("/series/")
    client = DICOMwebClient(url=root)
    meta = [pydicom.Dataset.from_json(m) for m in client.retrieve_series_metadata(study, series)]
    normal = np.cross(*np.array(meta[0].ImageOrientationPatient, dtype=float).reshape(2, 3))
    meta.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    out = np.empty((len(meta), meta[0].Rows, meta[0].Columns), np.int16)
    for k, d in enumerate(meta):
        frame = client.retrieve_instance_frames(
            study, series, d.SOPInstanceUID, frame_numbers=[1],
            media_types=(("application/octet-stream", "*"),))[0]
        if len(frame) == d.Rows * d.Columns * 2:
            px = np.frombuffer(frame, np.uint16).reshape(d.Rows, d.Columns)
        else:
            px = imagecodecs.imread(frame)
        out[k] = px.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept)
    return out


def peer_retrieve_series(series_url: str) -> np.ndarray:
    """dicomweb-client at its strongest: the whole series in one request (``retrieve_series``),
    then pydicom decodes and stacks it (what a careful user of that client writes)."""
    from dicomweb_client.api import DICOMwebClient

    root, _, rest = series_url.partition("/studies/")
    study, _, series = rest.partition("/series/")
    return stack_by_position(DICOMwebClient(url=root).retrieve_series(study, series))


def decode_only(source: str, threads: int) -> tuple[float, int]:
    """The decode limit: every frame's codestream already in memory, decoded by imagecodecs
    (medstream's decoder) in ``threads`` threads. (seconds, frames)."""
    import concurrent.futures

    import imagecodecs
    import pydicom
    from pydicom.encaps import generate_frames

    frames = []
    for p in sorted(Path(source).glob("*.dcm")):
        ds = pydicom.dcmread(p)
        data = ds.PixelData
        frames.append(next(generate_frames(data, number_of_frames=1)) if ds.file_meta.TransferSyntaxUID.is_compressed else data)

    def one(b: bytes) -> int:
        if len(b) == 512 * 512 * 2:
            return int(np.frombuffer(b, np.uint16).astype(np.int16).sum() > 0)
        return imagecodecs.imread(b).size

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, frames[:8]))  # warm
        t0 = time.perf_counter()
        list(pool.map(one, frames))
        return time.perf_counter() - t0, len(frames)


def peer_plain_http(series_url: str) -> np.ndarray:
    """Every frame fetched with 12 concurrent requests and not decoded: the server's limit."""
    import httpx

    urls = _frame_urls(series_url)

    async def main() -> int:
        sem = asyncio.Semaphore(12)
        async with httpx.AsyncClient(timeout=60) as client:
            async def get(u: str) -> int:
                async with sem:
                    r = await client.get(u, headers={"Accept": FRAME_ACCEPT})
                    r.raise_for_status()
                    return len(r.content)

            return sum(await asyncio.gather(*(get(u) for u in urls)))

    return np.zeros(asyncio.run(main()) // 2, np.int16)


def peer_server_answers(series_url: str) -> np.ndarray:
    """Orthanc's own two answers on medstream's path, read and not decoded: the series
    ``/metadata``, then the whole series as multipart instances (streamed, discarded). What a
    client that decodes nothing would wait for: the server's limit for this path."""
    import httpx

    with httpx.Client(timeout=120) as client:
        client.get(f"{series_url}/metadata").raise_for_status()
        n = 0
        with client.stream("GET", series_url, headers={"Accept": (
                'multipart/related; type="application/dicom"; transfer-syntax=*')}) as r:
            r.raise_for_status()
            for chunk in r.iter_raw(1 << 20):
                n += len(chunk)
    return np.zeros(n // 2, np.int16)


PEERS = {
    "medstream": peer_medstream,
    "pydicom loop": peer_pydicom,
    "SimpleITK": peer_simpleitk,
    "dcm2niix": peer_dcm2niix,
    "dicomweb-client": peer_dicomweb_client,
    "dicomweb-client retrieve_series": peer_retrieve_series,
    "plain concurrent HTTP": peer_plain_http,
    "Orthanc's answers alone (metadata + series, no decoding)": peer_server_answers,
}


def child(peer: str, source: str, repeat: int) -> None:
    fn = PEERS[peer]
    if peer == "medstream":
        import medstream  # imports count as baseline, as for every peer: ``import medstream``
        import medstream.loaders.wadors  # noqa: F401  (peer_medstream clears its store)

        medstream.load_plugins()  # alone imports nothing: the loaders and numpy come here
    elif peer == "SimpleITK":
        import SimpleITK  # noqa: F401
    elif peer == "pydicom loop":
        import pydicom  # noqa: F401
    base = _rss_mb()
    try:
        arr = fn(source)  # warm-up: also the run whose peak memory counts
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:200]}))
        return
    peak = _rss_mb("VmHWM") - base
    if peer == "dcm2niix":
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    times = []
    for _ in range(repeat):
        del arr
        t0 = time.perf_counter()
        arr = fn(source)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": min(times), "peak_mb": peak, "shape": list(arr.shape),
                      "checksum": float(np.asarray(arr, dtype=np.float64).sum())}))


def run_child(peer: str, source: str, repeat: int, workers: int | None = None) -> dict:
    env = dict(os.environ, **({"MEDSTREAM_WORKERS": str(workers)} if workers else {}))
    proc = subprocess.run([sys.executable, __file__, "--child", peer, source, str(repeat)],
                          capture_output=True, text=True, timeout=1800, env=env)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": (proc.stderr or proc.stdout)[-300:]}


def scaling_table(series: dict[str, Path], codecs: list[str], threads: list[int], repeat: int,
                  slices: int) -> str:
    """medstream files -> volume with N decode threads vs the decode limit in N threads."""
    lines = ["| codec | threads | medstream s | medstream frames/s | decode-only frames/s | share of the decode limit |",
             "|---|---|---|---|---|---|"]
    for codec in codecs:
        for n in threads:
            r = run_child("medstream", str(series[codec]), repeat, workers=n)
            secs, frames = decode_only(str(series[codec]), n)
            if "seconds" not in r:
                lines.append(f"| {codec} | {n} | n/a | | {frames / secs:.0f} | |")
                continue
            fps = slices / r["seconds"]
            lines.append(f"| {codec} | {n} | {r['seconds']:.2f} | {fps:.0f} | {frames / secs:.0f} | "
                         f"{fps / (frames / secs):.2f} |")
            print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


# -- report ------------------------------------------------------------------------------------
def report(rows: list[dict], volume_mb: float) -> str:
    """Markdown table; a peer whose pixel sum differs from medstream's is flagged (medstream's
    own values are checked against pydicom and dcm2niix in the test suite)."""
    lines = ["| source | codec | peer | seconds | MB/s | peak MB | medstream speed-up |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = next(x for x in rows if x["source"] == r["source"] and x["codec"] == r["codec"]
                   and x["peer"] == "medstream")
        if "error" in r:
            lines.append(f"| {r['source']} | {r['codec']} | {r['peer']} | n/a ({r['error'][:60]}) | | | |")
            continue
        ratio = "1.00x" if r["peer"] == "medstream" or "seconds" not in ref else \
            f"{r['seconds'] / ref['seconds']:.2f}x"
        if r["peer"] not in ("medstream", "plain concurrent HTTP") and \
                not r["peer"].startswith("Orthanc's") and "checksum" in ref and \
                abs(r["checksum"] - ref["checksum"]) > 1e-6 * max(1.0, abs(ref["checksum"])):
            ratio += " (**wrong pixel values**)"
        lines.append(f"| {r['source']} | {r['codec']} | {r['peer']} | {r['seconds']:.2f} | "
                     f"{volume_mb / r['seconds']:.0f} | {r['peak_mb']:.0f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".data")
    ap.add_argument("--no-orthanc", action="store_true")
    ap.add_argument("--codecs", default=",".join(CODECS))
    ap.add_argument("--threads", default="1,2",
                    help="thread counts for the scaling table (e.g. 1,2,4,8,16 on a big machine)")
    args = ap.parse_args()
    series = prepare(args.data, args.slices)
    codecs = [c for c in args.codecs.split(",") if c in series]
    volume_mb = args.slices * 512 * 512 * 2 / 1e6
    rows: list[dict] = []
    for codec in codecs:
        for peer in ("medstream", "pydicom loop", "SimpleITK", "dcm2niix"):
            if peer == "dcm2niix" and not shutil.which("dcm2niix"):
                continue
            r = run_child(peer, str(series[codec]), args.repeat)
            rows.append(dict(r, source="files", codec=codec, peer=peer))
            print(rows[-1], file=sys.stderr)
    if not args.no_orthanc:
        from orthanc_server import Orthanc, available

        if available():
            import concurrent.futures

            for codec in codecs:
                # A fresh server per codec: the series share SOP Instance UIDs, and Orthanc
                # would keep the first copy it stored.
                server = Orthanc().start()
                try:
                    paths = sorted(series[codec].glob("*.dcm"))
                    with concurrent.futures.ThreadPoolExecutor(4) as pool:
                        infos = list(pool.map(server.upload, paths))
                    study, uid, _ = server.uids(infos[0]["ID"])
                    url = f"{server.dicomweb}/studies/{study}/series/{uid}"
                    for peer in ("medstream", "dicomweb-client retrieve_series",
                                 "dicomweb-client", "plain concurrent HTTP",
                                 "Orthanc's answers alone (metadata + series, no decoding)"):
                        r = run_child(peer, url, args.repeat)
                        rows.append(dict(r, source="Orthanc", codec=codec, peer=peer))
                        print(rows[-1], file=sys.stderr)
                finally:
                    server.stop()
    table = report(rows, volume_mb)
    scaling = scaling_table(series, codecs, [int(t) for t in args.threads.split(",")],
                            args.repeat, args.slices)
    table += "\n\n" + scaling
    print(f"\n{args.slices} x 512x512 CT ({volume_mb:.0f} MB as int16), {os.cpu_count()} cores\n")
    print(table)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "volume.md").write_text(table + "\n")
    (results / "volume.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
