"""HTTP faults between medstream and a real Orthanc: error statuses, resets mid-body, stalls,
truncated bodies, and the server killed in the middle of a volume load. A volume that completes
is checked against its files read with pydicom (series.expected_stack), never against medstream.
Time bounds are hang guards, many times what the operation takes, not speed checks."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import numpy as np
import pytest

import medstream as ms
from fault_proxy import FaultProxy
from needs import require
from orthanc_server import Orthanc, available
from reference import expected_affine
from series import expected_stack, write_series

FAST = {"retries": 3, "backoff": 0.01, "timeout": 5.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A private Orthanc (this module kills it) with a fault proxy in front, and one series."""
    require(available(), "Orthanc + orthanc-dicomweb not installed "
                         "(apt-get install orthanc orthanc-dicomweb)")
    orthanc = Orthanc().start()
    folder = tmp_path_factory.mktemp("faults") / "series"
    paths = write_series(folder, 40, size=64)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(orthanc.upload, paths))
    study, series, _ = orthanc.uids(infos[0]["ID"])
    proxy = FaultProxy(orthanc.port)
    yield orthanc, proxy, folder, f"/dicom-web/studies/{study}/series/{series}"
    proxy.stop()
    orthanc.stop()


@pytest.fixture()
def env(server):
    orthanc, proxy, folder, path = server
    proxy.clear()
    if orthanc.proc is None:
        orthanc.start()
    ids = ms.wadors_image_ids(proxy.url + path)
    proxy.clear()
    return orthanc, proxy, folder, proxy.url + path, ids


def _matches_files(vol, folder) -> bool:
    """The volume holds the series' files as pydicom reads them, in position order, with the
    geometry their headers give."""
    paths = sorted(folder.glob("*.dcm"))
    np.testing.assert_allclose(vol.affine, expected_affine(paths), atol=1e-4)
    return bool(np.array_equal(vol.scalar_data, expected_stack(paths)))


def test_transient_503_is_retried(env):
    _, proxy, _, _, ids = env
    proxy.add("/frames/", "status:503", times=2)
    image = ms.load_image(ids[0], **FAST).result(30)
    assert image.rows == 64
    assert proxy.count("/frames/", "status:503") == 2 and proxy.count("/frames/", "pass") == 1


def test_404_fails_at_once_with_the_id(env):
    _, proxy, _, _, ids = env
    proxy.add("/frames/", "status:404")
    with pytest.raises(ms.HTTPStatusError) as err:
        ms.load_image(ids[1], **FAST).result(30)
    assert err.value.status_code == 404 and ids[1] in str(err.value)
    assert proxy.count("/frames/") == 1  # not retried


def test_500_on_frames_falls_back_to_the_instance(env):
    _, proxy, _, _, ids = env
    proxy.add("/frames/", "status:500")
    image = ms.load_image(ids[2], **FAST).result(30)
    assert image.rows == 64 and proxy.count("/frames/") == 1
    assert proxy.count(ids[2].split("/frames/")[0].split("/dicom-web")[1] + "$", "pass") == 1


@pytest.mark.parametrize("action", ["reset", "truncate"])
def test_broken_bodies_retried_then_reported(env, action):
    _, proxy, _, _, ids = env
    proxy.add("/frames/", action, times=1)
    assert ms.load_image(ids[3], **FAST).result(30).rows == 64
    proxy.clear()
    proxy.add("/frames/", action)
    with pytest.raises(ms.NetworkError) as err:
        ms.load_image(ids[4], **FAST).result(30)
    assert ids[4] in str(err.value)
    assert proxy.count("/frames/", action) == FAST["retries"] + 1


def test_stall_times_out_within_the_limit(env):
    _, proxy, _, _, ids = env
    proxy.add("/frames/", "stall")
    t0 = time.monotonic()
    with pytest.raises(ms.NetworkError, match="timed out"):
        ms.load_image(ids[5], timeout=0.5, retries=1, backoff=0.01).result(30)
    # Two 0.5 s attempts take about 1 s; 15 s guards a timeout that never fires, not speed.
    assert time.monotonic() - t0 < 15


def test_volume_keeps_loaded_frames_lists_failed_and_retry_completes(env):
    _, proxy, folder, url, ids = env
    bad = [i.split("/dicom-web")[1] for i in ids[:3]]
    for path in bad:
        proxy.add(path, "status:404")
    vol = ms.open_volume(url, load=False, retrieve="frames", **FAST)
    with pytest.raises(ms.VolumeLoadError) as err:
        vol.load().result(60)
    assert sorted(err.value.failed) == sorted(ids[:3])
    assert all("HTTP 404" in r for r in err.value.failed.values())
    assert vol.status.frames_loaded == 37
    proxy.clear()  # the server is fine again
    vol.load().result(60)
    assert vol.status.loaded and _matches_files(vol, folder)
    assert proxy.count("/frames/") == 3  # only the missing frames were fetched again


def test_series_stream_reset_falls_back_to_frames(env):
    _, proxy, folder, url, ids = env
    series_path = url.split("/dicom-web")[1]
    proxy.add(series_path + "$", "reset")
    vol = ms.open_volume(url, **FAST)
    assert vol.status.loaded and proxy.count(series_path + "$", "reset") == 1
    assert vol.status.bulk_frames < 40 and proxy.count("/frames/") == 40 - vol.status.bulk_frames
    assert _matches_files(vol, folder)


def test_orthanc_killed_mid_volume_then_back(env):
    orthanc, proxy, folder, url, ids = env
    ms.request_pools.set_max_simultaneous_requests("prefetch", 2)
    vol = ms.open_volume(url, load=False, retrieve="frames", retries=1, backoff=0.01, timeout=2)
    some = threading.Event()
    job = vol.load(on_progress=lambda p: p.frames_loaded >= 8 and some.set())
    assert some.wait(30)
    orthanc.kill()
    t0 = time.monotonic()
    with pytest.raises(ms.VolumeLoadError) as err:
        job.result(60)
    elapsed = time.monotonic() - t0
    assert elapsed < 30, elapsed
    loaded = vol.status.frames_loaded
    assert 8 <= loaded < 40 and len(err.value.failed) == 40 - loaded
    assert all(isinstance(r, str) and "wadors:" in r for r in err.value.failed.values())
    assert sum(ms.request_pools.get_running().values()) == 0
    orthanc.start()
    try:
        vol.load().result(60)
    except ms.VolumeLoadError as exc:
        # A connection kept alive from before the kill can still be handed out once (the
        # server closed it: "disconnected without sending a response"); the frames it cost are
        # listed, the others landed, and the next load() takes just those.
        assert all("without sending a response" in r for r in exc.failed.values()), exc.failed
        assert len(exc.failed) < 40
        vol.load().result(60)
    assert vol.status.loaded and _matches_files(vol, folder)


def test_twenty_concurrent_volume_loads_share_one_set_of_requests(env):
    _, proxy, folder, url, ids = env
    ms.loaders.wadors.series_metadata.clear()
    proxy.clear()
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        volumes = list(pool.map(lambda _: ms.open_volume(url), range(20)))
    assert all(v is volumes[0] for v in volumes)
    series_path = url.split("/dicom-web")[1]
    assert proxy.count(series_path + "/metadata$") == 1
    assert proxy.count(series_path + "$") == 1 and proxy.count("/frames/") == 0
    assert len(proxy.log) == 2
    assert _matches_files(volumes[0], folder)


def test_volume_load_timeout_settles_against_a_stalled_server(env):
    _, proxy, folder, url, ids = env
    proxy.add("/frames/", "stall")
    vol = ms.open_volume(url, load=False, retrieve="frames", timeout=30)
    t0 = time.monotonic()
    with pytest.raises(ms.VolumeLoadError) as err:
        vol.load(timeout=1.0).result(30)
    assert time.monotonic() - t0 < 15  # the 1 s load timeout, 15x: guards a hang, not speed
    assert len(err.value.failed) == 40
    assert all("load timeout" in r for r in err.value.failed.values())
    assert sum(ms.request_pools.get_running().values()) == 0
    proxy.clear()
    vol.load().result(60)
    assert _matches_files(vol, folder)
