"""Start-up and whole-process command-line runs: what a user waits for before medstream does any
work, and a whole ``medstream volume`` conversion against dcm2niix, same files, same run.

1. ``python -c "import medstream"`` (next to ``python -c pass``, the interpreter alone), and a
   ``python -X importtime`` summary: medstream's cumulative import time, its 10 largest
   cumulative imports, and which heavy third-party modules a bare ``import medstream`` loads.
2. ``medstream --help`` and ``medstream --version`` (the console script beside this Python, or
   ``python -m medstream`` where there is none).
3. ``medstream volume FOLDER -o out.nii`` vs ``dcm2niix -z n -b n -o OUTDIR FOLDER`` (each run
   into an empty temporary folder) on 120 and 300 uncompressed 512x512 CT slices.
4. In a running process (import not counted): ``ms.open_volume(folder)`` and the header scan
   ``ms.scan_folder(folder)`` alone, vs the dcm2niix whole process of 3. Between runs the
   decoded-image cache and the header stores are cleared (no head start); the files stay in
   the page cache, as they do for every command here.

Every command runs in fresh processes: one warm-up run (it also fills the page cache and the
bytecode cache), then the best of ``--repeat`` measured runs. A ratio is dcm2niix's seconds over
medstream's: above 1 medstream is faster. The series are cached under benchmarks/.data
(shared with bench_volume.py). Without dcm2niix on PATH its rows are skipped with a note.

    .venv/bin/python benchmarks/bench_startup.py [--slices 120,300] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

HEAVY = ["httpx", "pydicom", "rich", "click", "imagecodecs", "fsspec", "dask", "nibabel", "PIL",
         "numpy"]
TIMEOUT = 600  # seconds, any one command
#: Runs as an installed package runs: with its bytecode cache (pip compiles it at install; an
#: inherited PYTHONDONTWRITEBYTECODE would make every run compile medstream again, ~0.07 s).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


# -- data --------------------------------------------------------------------------------------
def prepare(data: Path, slices: int) -> Path:
    """``slices`` uncompressed 512x512 CT slices (the same folder and series as bench_volume)."""
    from series import write_series

    raw = data / f"uncompressed-{slices}"
    if not (raw / ".done").exists():
        shutil.rmtree(raw, ignore_errors=True)
        write_series(raw, slices, size=512, spacing=1.0, pixel_spacing=(0.7, 0.7))
        (raw / ".done").write_text("ok")
    return raw


# -- timing whole processes --------------------------------------------------------------------
def medstream_cmd() -> list[str]:
    script = Path(sys.executable).parent / "medstream"
    return [str(script)] if script.exists() else [sys.executable, "-m", "medstream"]


def wall(cmd: list[str], repeat: int, out_dir: bool = False) -> dict:
    """Best wall seconds of ``repeat`` fresh runs of ``cmd`` after one warm-up. With ``out_dir``,
    every run gets an empty temporary folder, substituted for ``{out}`` in ``cmd``; the last
    one is kept (``"out"``) for the caller to check and remove."""
    times: list[float] = []
    last: str | None = None
    for k in range(repeat + 1):
        if last is not None:  # the previous run's output
            shutil.rmtree(last, ignore_errors=True)
        last = tempfile.mkdtemp(prefix="bench_startup-") if out_dir else None
        argv = [a.replace("{out}", last) for a in cmd] if last else cmd
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
        except (OSError, subprocess.TimeoutExpired) as exc:
            if last:
                shutil.rmtree(last, ignore_errors=True)
            return {"error": f"{type(exc).__name__}: {exc}"[:300]}
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            if last:
                shutil.rmtree(last, ignore_errors=True)
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"error": f"exit {proc.returncode}: {' | '.join(tail)}"[:300]}
        if k:  # run 0 is the warm-up
            times.append(seconds)
    return {"seconds": min(times), "runs": times, **({"out": last} if last else {})}


def nifti_checksum(folder: str) -> dict:
    """Shape and voxel sum (scaled values) of the one .nii in ``folder``: flips and axis order
    differ between converters, the sum does not."""
    import nibabel as nib
    import numpy as np

    files = sorted(Path(folder).glob("*.nii"))
    if len(files) != 1:
        return {"check_error": f"{len(files)} .nii files written"}
    img = nib.load(files[0])
    return {"shape": sorted(img.shape), "checksum": float(img.get_fdata(dtype=np.float64).sum())}


# -- import time -------------------------------------------------------------------------------
_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)\s*$")


def parse_importtime(stderr: str) -> dict:
    """medstream's cumulative import time and the largest cumulative imports inside it.

    ``-X importtime`` prints each module after its children, indented two spaces a level: the
    modules imported by ``import medstream`` are the lines between the previous top-level line
    (site's own imports) and medstream's."""
    rows = []
    for line in stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((m.group(4), int(m.group(2)), (len(m.group(3)) - 1) // 2))
    end = next((i for i in range(len(rows) - 1, -1, -1)
                if rows[i][0] == "medstream" and rows[i][2] == 0), None)
    if end is None:
        return {"error": "no medstream line in the -X importtime output"}
    start = end
    while start > 0 and rows[start - 1][2] > 0:
        start -= 1
    block = rows[start:end]
    top = sorted(block, key=lambda r: -r[1])[:10]
    return {"total_us": rows[end][1], "modules": len(block) + 1,
            "top": [{"module": name, "cumulative_us": us} for name, us, _ in top]}


def importtime(repeat: int) -> dict:
    """The ``-X importtime`` run (after one warm-up) with the smallest medstream total."""
    best: dict = {}
    for k in range(repeat + 1):
        try:
            proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import medstream"],
                                  capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
        except subprocess.TimeoutExpired as exc:
            return {"error": f"TimeoutExpired: {exc}"}
        if proc.returncode != 0:
            return {"error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
        r = parse_importtime(proc.stderr)
        if "error" in r:
            return r
        if k and ("total_us" not in best or r["total_us"] < best["total_us"]):
            best = r
    return best


def heavy_modules() -> dict:
    code = ("import sys, json, medstream; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT, env=ENV)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"loaded": loaded, "not_loaded": [m for m in HEAVY if m not in loaded]}


# -- in a running process (child) ----------------------------------------------------------------
def child(folder: str, repeat: int) -> None:
    """open_volume and scan_folder after ``import medstream`` (not counted), best of ``repeat``
    after one warm-up each; prints one JSON line."""
    import numpy as np

    import medstream as ms

    def fresh() -> None:
        ms.purge_cache()
        for mod, name in (("medstream.dicom.store", "module_store"),
                          ("medstream.dicom.header", "locators")):
            try:  # the header stores: every run parses the headers again
                getattr(__import__(mod, fromlist=[name]), name).clear()
            except (ImportError, AttributeError):
                pass

    out: dict = {}
    try:
        for name, fn in (("scan_folder", lambda: ms.scan_folder(folder)),
                         ("open_volume", lambda: ms.open_volume(folder).scalar_data)):
            times = []
            for k in range(repeat + 1):
                fresh()
                t0 = time.perf_counter()
                result = fn()
                seconds = time.perf_counter() - t0
                if k:
                    times.append(seconds)
                if name == "open_volume" and k == repeat:
                    arr = np.asarray(result)
                    out["shape"] = sorted(arr.shape)
                    out["checksum"] = float(arr.sum(dtype=np.float64))
                del result
            out[name] = min(times)
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    print(json.dumps(out))


def run_child(folder: Path, repeat: int) -> dict:
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", str(folder), str(repeat)],
                              capture_output=True, text=True, timeout=TIMEOUT, env=ENV)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": (proc.stderr or proc.stdout).strip()[-300:]}
    except subprocess.TimeoutExpired as exc:
        return {"error": f"TimeoutExpired: {exc}"}


# -- report ------------------------------------------------------------------------------------
def _s(r: dict, key: str = "seconds") -> str:
    return f"{r[key]:.3f}" if key in r else f"n/a ({r.get('error', 'skipped')[:70]})"


def _ratio(num: dict, den: dict, nkey: str = "seconds", dkey: str = "seconds") -> str:
    return f"{num[nkey] / den[dkey]:.2f}x" if nkey in num and dkey in den else "n/a"


def _agree(*rs: dict) -> str:
    sums = [r for r in rs if "checksum" in r]
    if len(sums) < 2:
        return "n/a"
    ref = sums[0]
    ok = all(r["shape"] == ref["shape"] and
             abs(r["checksum"] - ref["checksum"]) <= 1e-6 * max(1.0, abs(ref["checksum"]))
             for r in sums)
    return "yes" if ok else "**no**"


def report(res: dict) -> str:
    out = [f"| command | seconds (best of {res['repeat']}) |", "|---|---|"]
    for name, r in res["startup"].items():
        out.append(f"| `{name}` | {_s(r)} |")

    it = res["importtime"]
    out += ["", f"`python -X importtime -c \"import medstream\"` (best of {res['repeat']}): "
            + (f"medstream {it['total_us'] / 1000:.0f} ms cumulative, {it['modules']} modules"
               if "total_us" in it else f"n/a ({it.get('error')})"),
            "", "| module | cumulative ms |", "|---|---|"]
    for row in it.get("top", []):
        out.append(f"| {row['module']} | {row['cumulative_us'] / 1000:.1f} |")

    hv = res["heavy"]
    out += ["", "Heavy modules loaded by a bare `import medstream`: "
            + (", ".join(hv["loaded"]) or "none") + "; not loaded: "
            + (", ".join(hv["not_loaded"]) or "none") if "loaded" in hv
            else f"Heavy modules: n/a ({hv.get('error')})"]

    out += ["", "| slices | `medstream volume` s | `dcm2niix` s | dcm2niix / medstream | same voxels |",
            "|---|---|---|---|---|"]
    for row in res["conversion"]:
        ms_r, d_r = row["medstream volume"], row["dcm2niix"]
        out.append(f"| {row['slices']} | {_s(ms_r)} | {_s(d_r)} | {_ratio(d_r, ms_r)} | "
                   f"{_agree(ms_r, d_r, row['in_process'])} |")

    out += ["", "| slices | `scan_folder` s | `open_volume` s (in process) | `dcm2niix` s (process) "
            "| dcm2niix / open_volume |", "|---|---|---|---|---|"]
    for row in res["conversion"]:
        ip, d_r = row["in_process"], row["dcm2niix"]
        out.append(f"| {row['slices']} | {_s(ip, 'scan_folder')} | {_s(ip, 'open_volume')} | "
                   f"{_s(d_r)} | {_ratio(d_r, ip, 'seconds', 'open_volume')} |")
    if res["notes"]:
        out += [""] + [f"Note: {n}" for n in res["notes"]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slices", default="120,300", help="series sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=5, help="measured runs after one warm-up")
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".data")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    repeat = max(1, args.repeat)
    py = sys.executable
    ms_cmd = medstream_cmd()
    dcm2niix = shutil.which("dcm2niix")
    notes: list[str] = []
    if not dcm2niix:
        notes.append("dcm2niix not on PATH: its rows are skipped")

    def log(msg: object) -> None:
        print(msg, file=sys.stderr, flush=True)

    res: dict = {"repeat": repeat, "cores": os.cpu_count(), "python": sys.version.split()[0],
                 "medstream_cmd": ms_cmd, "dcm2niix": dcm2niix, "notes": notes}
    startup = {}
    for name, cmd in (("python -c pass", [py, "-c", "pass"]),
                      ("python -c \"import medstream\"", [py, "-c", "import medstream"]),
                      ("medstream --help", ms_cmd + ["--help"]),
                      ("medstream --version", ms_cmd + ["--version"])):
        startup[name] = wall(cmd, repeat)
        log(f"{name}: {startup[name]}")
    res["startup"] = startup
    res["importtime"] = importtime(repeat)
    res["heavy"] = heavy_modules()
    log(res["heavy"])

    res["conversion"] = []
    for n in [int(s) for s in args.slices.split(",") if s.strip()]:
        folder = prepare(args.data, n)
        row: dict = {"slices": n, "folder": str(folder)}
        if dcm2niix:
            r = wall([dcm2niix, "-z", "n", "-b", "n", "-o", "{out}", str(folder)], repeat,
                     out_dir=True)
        else:
            r = {"error": "dcm2niix not installed"}
        row["dcm2niix"] = r
        row["medstream volume"] = wall(ms_cmd + ["volume", str(folder), "-o", "{out}/out.nii"],
                                       repeat, out_dir=True)
        for key in ("dcm2niix", "medstream volume"):
            if "out" in row[key]:
                row[key].update(nifti_checksum(row[key]["out"]))
                shutil.rmtree(row[key].pop("out"), ignore_errors=True)
        row["in_process"] = run_child(folder, repeat)
        log({k: v for k, v in row.items() if k != "folder"})
        res["conversion"].append(row)

    table = report(res)
    print(f"\n{os.cpu_count()} cores, Python {res['python']}, medstream as "
          f"`{' '.join(ms_cmd)}`, dcm2niix {dcm2niix or 'missing'}\n")
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
