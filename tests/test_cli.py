"""The command line as a user runs it: each command in a subprocess, on real data."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from corpus import find
from series import write_series

CLI = [sys.executable, "-m", "medstream.cli"]


def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout,
                          env=env or dict(os.environ))


def test_demo_builds_data_and_writes_outputs(tmp_path):
    env = dict(os.environ, MEDSTREAM_CACHE=str(tmp_path / "cache"))
    proc = run("demo", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "compressed copy identical to uncompressed: yes" in proc.stdout
    out = tmp_path / "cache" / "demo-output"
    assert str(out / "demo_volume.nii.gz") in proc.stdout.replace("\n", "")
    img = nib.load(str(out / "demo_volume.nii.gz"))
    assert img.shape == (256, 256, 96) and img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.affine, [[-0.9, 0, 0, 115.2], [0, -0.9, 0, 115.2],
                                            [0, 0, 2.0, 0], [0, 0, 0, 1]], atol=1e-4)
    data = np.asarray(img.dataobj)
    assert data.min() < -900 and data.max() > 900  # air and bone in HU
    pic = np.asarray(Image.open(out / "demo_views.png"))
    assert pic.ndim == 2 and pic.shape[0] >= 256 and pic.std() > 20  # three views, not blank
    again = run("demo", env=env)  # the second run reuses the cached sample
    assert again.returncode == 0 and "sample data" in again.stdout


def test_version():
    proc = run("--version", timeout=60)
    assert proc.returncode == 0 and "medstream" in proc.stdout


def test_info_folder_json_and_table(tmp_path):
    write_series(tmp_path / "f" / "a", 7, size=32)
    write_series(tmp_path / "f" / "b", 5, size=32, offsets=[0, 2.5, 5, 10, 12.5])
    (tmp_path / "f" / "readme.txt").write_text("hello")
    proc = run("info", str(tmp_path / "f"), "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["series"]
    assert sorted(s["images"] for s in found) == [5, 7]
    gap = next(s for s in found if s["images"] == 5)
    assert any("missing" in w for w in gap["warnings"])
    assert next(s for s in found if s["images"] == 7)["spacing"] == [0.7, 0.8, 2.5]
    table = run("info", str(tmp_path / "f"))
    assert table.returncode == 0 and "CT" in table.stdout and "missing" in table.stdout


def test_info_image_modules(tmp_path):
    path = write_series(tmp_path / "one", 1, size=16)[0]
    proc = run("info", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    modules = json.loads(proc.stdout)["modules"]
    assert modules["imagePlaneModule"]["rows"] == 16
    assert modules["generalSeriesModule"]["modality"] == "CT"


def test_render_grayscale_monochrome1_and_color(tmp_path):
    path = write_series(tmp_path / "r", 1, size=32)[0]
    out = tmp_path / "r.png"
    proc = run("render", str(path), "-o", str(out), "--window", "40", "400")
    assert proc.returncode == 0, proc.stderr
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) - 1024
    expected = (np.clip((hu - 39.5) / 399 + 0.5, 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(out)), expected)

    mono1 = find("RG1_UNCR.dcm")  # MONOCHROME1: high values are dark
    proc = run("render", str(mono1), "-o", str(tmp_path / "m1.png"))
    assert proc.returncode == 0, proc.stderr
    pic = np.asarray(Image.open(tmp_path / "m1.png"))
    raw = pydicom.dcmread(mono1).pixel_array
    assert pic.shape == raw.shape
    assert pic[raw > np.percentile(raw, 99)].mean() < pic[raw < np.percentile(raw, 1)].mean()

    rgb = find("US1_UNCR.dcm")
    proc = run("render", str(rgb), "-o", str(tmp_path / "c.png"))
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), pydicom.dcmread(rgb).pixel_array)

    multi = find("emri_small.dcm")
    proc = run("render", str(multi), "--frame", "3", "-o", str(tmp_path / "f3.png"))
    assert proc.returncode == 0 and "wrote" in proc.stdout


def test_volume_folder_to_nifti_npz_and_back(tmp_path):
    write_series(tmp_path / "s", 9, orientation="coronal", size=24)
    out = tmp_path / "v.nii.gz"
    proc = run("volume", str(tmp_path / "s"), "-o", str(out), "--order", "sequential")
    assert proc.returncode == 0, proc.stderr
    img = nib.load(str(out))
    assert img.shape == (24, 24, 9)
    lps = np.diag([-1, -1, 1, 1]) @ img.affine
    np.testing.assert_allclose(lps[:3, :3], [[0.7, 0, 0], [0, 0, 2.5], [0, -0.8, 0]], atol=1e-6)
    proc = run("volume", str(out), "-o", str(tmp_path / "v.npz"))
    assert proc.returncode == 0, proc.stderr
    z = np.load(tmp_path / "v.npz")
    assert z["data"].shape == (9, 24, 24)
    np.testing.assert_allclose(z["affine_lps"], lps, atol=1e-5)


def test_volume_from_orthanc_series_url(orthanc, tmp_path):
    import concurrent.futures

    paths = write_series(tmp_path / "o", 10, size=32)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(orthanc.upload, paths))
    study, series, _ = orthanc.uids(infos[0]["ID"])
    url = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
    proc = run("volume", url, "-o", str(tmp_path / "web.nii.gz"))
    assert proc.returncode == 0, proc.stderr
    local = run("volume", str(tmp_path / "o"), "-o", str(tmp_path / "local.nii.gz"))
    assert local.returncode == 0, local.stderr
    a, b = nib.load(str(tmp_path / "web.nii.gz")), nib.load(str(tmp_path / "local.nii.gz"))
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_allclose(a.affine, b.affine)
    info = run("info", f"{orthanc.dicomweb}/studies/{study}", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["series"][0]["images"] == 10


def test_errors_are_one_line_with_exit_code(tmp_path):
    proc = run("volume", str(tmp_path / "nope"), "-o", str(tmp_path / "x.nii.gz"))
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr

    write_series(tmp_path / "gap", offsets=[0, 2, 4, 8, 10], size=16)
    proc = run("volume", str(tmp_path / "gap"), "-o", str(tmp_path / "g.nii.gz"))
    assert proc.returncode == 1 and "irregular slice spacing" in proc.stderr
    assert "--spacing resample" in proc.stderr and "spacing='" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # Kept positions cannot be one NIfTI (the affine would misplace a slice); .npz keeps them.
    kept = run("volume", str(tmp_path / "gap"), "-o", str(tmp_path / "g.nii.gz"), "--spacing", "keep")
    assert kept.returncode == 1 and "cannot be written as one NIfTI" in kept.stderr
    ok = run("volume", str(tmp_path / "gap"), "-o", str(tmp_path / "g.npz"), "--spacing", "keep")
    assert ok.returncode == 0, ok.stderr
    assert np.load(tmp_path / "g.npz")["positions"].shape == (5, 3)
    ok = run("volume", str(tmp_path / "gap"), "-o", str(tmp_path / "g.nii.gz"), "--spacing", "resample")
    assert ok.returncode == 0, ok.stderr

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\0" * 200)
    proc = run("render", str(bad), "-o", str(tmp_path / "b.png"))
    assert proc.returncode == 1 and str(bad) in proc.stderr and "not a DICOM" in proc.stderr
    proc = run("volume", str(tmp_path / "gap"), "-o", str(tmp_path / "g.tiff"))
    assert proc.returncode == 1 and "unknown output format" in proc.stderr
    debug = run("--debug", "render", str(bad), "-o", str(tmp_path / "b.png"))
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_ctrl_c_cancels_and_exits_nonzero(tmp_path):
    srv = socket.socket()  # a server that accepts and never answers
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/dicom-web/studies/1.2/series/1.2.3"
    proc = subprocess.Popen(CLI + ["volume", url, "-o", str(tmp_path / "x.nii.gz")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = srv.accept()  # the request is in flight
        time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert time.monotonic() - t0 < 5
        assert proc.returncode == 130 and "cancelled" in err and "Traceback" not in err
        conn.close()
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.close()
    assert not (tmp_path / "x.nii.gz").exists()


@pytest.mark.parametrize("args", [["info"], ["render", "x"], ["volume", "x"]])
def test_usage_errors(args):
    proc = run(*args, timeout=60)
    assert proc.returncode == 2 and "Usage" in proc.stderr
