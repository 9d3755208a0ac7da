"""Many series on a Dask LocalCluster with 2 worker processes: files and a real Orthanc, one
broken series reported in the manifest, outputs identical to single-process loading."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

import medstream as ms
from series import write_series

distributed = pytest.importorskip("distributed")
import medstream.distributed as msd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def sources(orthanc, tmp_path_factory):
    root = tmp_path_factory.mktemp("many")
    out = []
    for k in range(10):
        write_series(root / f"files{k}", 5 + k, size=24 + 2 * k, spacing=1.5 + k / 10)
        out.append(str(root / f"files{k}"))
    for k in range(9):
        paths = write_series(root / f"web{k}", 4 + k, size=20, orientation="sagittal")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            infos = list(pool.map(orthanc.upload, paths))
        study, series, _ = orthanc.uids(infos[0]["ID"])
        out.append(f"{orthanc.dicomweb}/studies/{study}/series/{series}")
    write_series(root / "broken", offsets=[0, 2, 4, 9, 11], size=16)  # a missing slice
    out.append(str(root / "broken"))
    return out


def test_convert_many_on_a_local_cluster(client, sources, tmp_path):
    rows = msd.convert_many(sources, tmp_path / "out", client=client, max_requests=4,
                            max_series=3)
    assert [r["source"] for r in rows] == sources and len(rows) == 20
    broken = rows[-1]
    assert broken["output"] is None and "irregular slice spacing" in broken["error"]
    good = rows[:-1]
    assert all(r["error"] is None for r in good)
    assert len({r["worker"] for r in good}) == 2  # both worker processes did work
    for row in good:
        assert os.path.dirname(row["output"]) == str(tmp_path / "out")
        local = ms.open_volume(row["source"])  # single-process reference
        img = nib.load(row["output"])
        assert list(local.shape) == row["shape"] and row["dtype"] == str(local.dtype)
        assert np.array_equal(np.asarray(img.dataobj).transpose(2, 1, 0), local.scalar_data)
        np.testing.assert_allclose(img.affine, local.geometry.affine_ras, atol=1e-5)
        ms.purge_cache()


def test_lazy_arrays(client, sources):
    picked = [sources[0], sources[12], sources[-1]]
    arrays = msd.lazy_arrays(picked, client=client)
    assert set(arrays) == set(picked[:2])  # the broken series has no array
    for source, arr in arrays.items():
        local = ms.open_volume(source).scalar_data
        assert arr.shape == local.shape and arr.dtype == local.dtype
        assert np.array_equal(arr.compute(), local)


def test_output_names_stay_inside_the_folder():
    for source in ["../../etc/passwd", "/data/ct/", "https://pacs/x/series/1.2.3?token=a/b",
                   "nifti:/tmp/a.nii.gz", ""]:
        name = msd.output_name(source, "nii.gz")
        assert "/" not in name and not name.startswith(".") and name.endswith(".nii.gz")
    assert msd.output_name("/a/ct", "nii.gz") != msd.output_name("/b/ct", "nii.gz")


def test_cli_convert_many(sources, tmp_path):
    picked = [sources[1], sources[11], sources[-1]]
    proc = subprocess.run([sys.executable, "-m", "medstream.cli", "convert-many", *picked,
                           "--out", str(tmp_path / "o"), "--workers", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # one series failed
    assert "2 of 3 series converted" in proc.stdout
    assert "failed:" in proc.stderr and "broken" in proc.stderr
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert [r["error"] is None for r in manifest] == [True, True, False]
    assert all(os.path.exists(r["output"]) for r in manifest[:2])


def test_same_source_twice_is_converted_once(client, tmp_path):
    write_series(tmp_path / "s", 4, size=16)
    rows = msd.convert_many([str(tmp_path / "s")] * 2, tmp_path / "out", client=client,
                            series_timeout=60)
    assert len(rows) == 2 and rows[0] == rows[1] and rows[0]["error"] is None
    assert os.listdir(tmp_path / "out") == [os.path.basename(rows[0]["output"])]
