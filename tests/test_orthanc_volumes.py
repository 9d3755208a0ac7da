"""Volumes over wadors: from a real Orthanc, identical to the same series from files; cancel of a
300-frame load; study and series URLs through open_volume."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import medstream as ms
from series import oblique, transcode, write_series
from test_volumes import need


def _upload(orthanc, paths: list[Path]) -> tuple[str, str]:
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(orthanc.upload, paths))
    study, series, _ = orthanc.uids(infos[0]["ID"])
    return study, series


@pytest.fixture(scope="module")
def series_300(orthanc, tmp_path_factory):
    paths = write_series(tmp_path_factory.mktemp("s300"), 300, size=96)
    study, series = _upload(orthanc, paths)
    return paths, f"{orthanc.dicomweb}/studies/{study}/series/{series}"


@pytest.mark.parametrize("tool", [None, ["dcmcjpls", "+el"], ["gdcmconv", "--j2k"]])
def test_wadors_volume_identical_to_files(orthanc, tmp_path, tool):
    paths = write_series(tmp_path / "raw", 24, orientation=oblique(), size=80)
    if tool is not None:
        need(tool[0])
        paths = transcode(paths, tmp_path / tool[0], tool)
    study, series = _upload(orthanc, paths)
    local = ms.open_volume(tmp_path / ("raw" if tool is None else tool[0]))
    remote = ms.open_volume(f"{orthanc.dicomweb}/studies/{study}/series/{series}")
    assert remote.image_ids[0].startswith("wadors:")
    assert remote.status.bulk_frames == 24  # the whole series came in one request
    assert remote.shape == local.shape and remote.dtype == local.dtype
    assert np.array_equal(remote.scalar_data, local.scalar_data)
    np.testing.assert_allclose(remote.affine, local.affine, atol=1e-6)
    # A study URL with one series resolves to it; the wadors: prefix is accepted too.
    ms.purge_cache()  # the study URL names the same cached volume: load it afresh
    again = ms.open_volume(f"wadors:{orthanc.dicomweb}/studies/{study}", retrieve="frames")
    assert np.array_equal(again.scalar_data, local.scalar_data)
    assert again.status.bulk_frames == 0 and again.status.frames_loaded == 24
    # A volume of part of the series is fetched frame by frame.
    part = ms.create_and_cache_volume("part", image_ids=remote.image_ids[5:15]).result(30)
    part.load().result(30)
    assert part.status.bulk_frames == 0
    assert np.array_equal(part.scalar_data, local.scalar_data[5:15])


@pytest.mark.parametrize("retrieve", ["auto", "frames"])
def test_cancel_300_frame_wadors_load_within_1s(series_300, retrieve):
    paths, url = series_300
    ms.request_pools.set_max_simultaneous_requests("prefetch", 2)
    ids = ms.wadors_image_ids(url)
    assert len(ids) == 300
    vol = ms.create_and_cache_volume("wadors-300", image_ids=ids, retrieve=retrieve).result(60)
    some = threading.Event()
    job = vol.load(on_progress=lambda p: p.frames_loaded >= 10 and some.set())
    assert some.wait(30)
    t0 = time.monotonic()
    vol.cancel_loading()
    with pytest.raises(concurrent.futures.CancelledError):
        job.result(5)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, elapsed
    deadline = time.monotonic() + 1
    while sum(ms.request_pools.get_running().values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(ms.request_pools.get_running().values()) == 0
    assert sum(ms.request_pools.get_request_pool().values()) == 0
    assert vol.status.cancelled and 10 <= vol.status.frames_loaded < 300
    loaded = vol.status.frames_loaded
    time.sleep(0.3)
    assert vol.status.frames_loaded == loaded  # nothing trickles in after the cancel
    ms.set_max_cache_size(64 * 1024**2)
    assert ms.get_cache_size() == vol.size_in_bytes
    ms.purge_cache()
    assert ms.get_cache_size() == 0 <= ms.cache.get_max_cache_size()


def test_wadors_volume_after_cancel_resumes_and_matches_files(series_300):
    paths, url = series_300
    vol = ms.open_volume(url, load=False)
    job = vol.load()
    time.sleep(0.05)
    vol.cancel_loading()
    try:
        job.result(10)
    except concurrent.futures.CancelledError:
        pass
    vol.load().result(120)
    local = ms.open_volume(paths[0].parent)
    assert np.array_equal(vol.scalar_data, local.scalar_data)
