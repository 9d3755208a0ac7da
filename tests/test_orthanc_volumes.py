"""Volumes over wadors: from a real Orthanc, identical to the same series read from its files with
pydicom (voxels ordered by position, affine from the headers); cancel of a 300-frame load; study
and series URLs through open_volume."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import medstream as ms
from reference import expected_affine
from series import expected_stack, oblique, transcode, write_series
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
    raw = write_series(tmp_path / "raw", 24, orientation=oblique(), size=80)
    paths = raw
    if tool is not None:
        need(tool[0])
        paths = transcode(raw, tmp_path / tool[0], tool)
    study, series = _upload(orthanc, paths)
    # The reference: the uncompressed originals (the codecs are lossless) read with pydicom.
    want, affine = expected_stack(raw), expected_affine(raw)
    remote = ms.open_volume(f"{orthanc.dicomweb}/studies/{study}/series/{series}")
    assert remote.image_ids[0].startswith("wadors:")
    assert remote.status.bulk_frames == 24  # the whole series came in one request
    assert remote.shape == want.shape == (24, 80, 80) and remote.dtype == np.int16
    assert np.array_equal(remote.scalar_data, want)
    np.testing.assert_allclose(remote.affine, affine, atol=1e-4)
    # A study URL with one series resolves to it; the wadors: prefix is accepted too.
    ms.purge_cache()  # the study URL names the same cached volume: load it afresh
    again = ms.open_volume(f"wadors:{orthanc.dicomweb}/studies/{study}", retrieve="frames")
    assert np.array_equal(again.scalar_data, want)
    np.testing.assert_allclose(again.affine, affine, atol=1e-4)
    assert again.status.bulk_frames == 0 and again.status.frames_loaded == 24
    # A volume of part of the series is fetched frame by frame.
    part = ms.create_and_cache_volume("part", image_ids=remote.image_ids[5:15]).result(30)
    part.load().result(30)
    assert part.status.bulk_frames == 0
    assert np.array_equal(part.scalar_data, want[5:15])


@pytest.mark.parametrize("retrieve", ["auto", "frames"])
def test_cancel_300_frame_wadors_load_stops_it(series_300, retrieve):
    """A cancel settles the load with CancelledError, frees every request slot and stops the
    frames. The time bounds are hang guards (a cancel takes milliseconds), not speed checks."""
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
        job.result(30)
    elapsed = time.monotonic() - t0
    assert elapsed < 20, elapsed  # a cancel takes milliseconds: this guards a hang, not speed
    deadline = time.monotonic() + 30
    while sum(ms.request_pools.get_running().values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(ms.request_pools.get_running().values()) == 0
    assert sum(ms.request_pools.get_request_pool().values()) == 0
    assert vol.status.cancelled and 10 <= vol.status.frames_loaded < 300
    loaded = vol.status.frames_loaded
    time.sleep(0.3)
    assert vol.status.frames_loaded == loaded  # nothing trickles in after the cancel
    ms.set_max_cache_size(64 * 1024**2)
    assert ms.get_cache_size() - sum(ms.cache.stores().values()) == vol.size_in_bytes
    ms.purge_cache()
    assert ms.get_cache_size() == 0 <= ms.cache.get_max_cache_size()


def test_wadors_volume_after_cancel_resumes_and_matches_files(series_300):
    paths, url = series_300
    vol = ms.open_volume(url, load=False)
    started = threading.Event()
    job = vol.load(on_progress=lambda p: started.set())
    assert started.wait(60)  # cancel once frames are coming in
    vol.cancel_loading()
    try:
        job.result(60)
    except concurrent.futures.CancelledError:
        pass
    vol.load().result(120)
    assert np.array_equal(vol.scalar_data, expected_stack(paths))  # pydicom, from the files
    np.testing.assert_allclose(vol.affine, expected_affine(paths), atol=1e-4)


def test_series_stream_masks_bits_above_bits_stored(orthanc, tmp_path):
    """Native frames of a series response are decoded by the workers straight into their slices;
    bits above BitsStored (set here in every word, as some scanners leave overlays) are masked
    there as pydicom masks them, and the rescale applied after."""
    import pydicom

    paths = write_series(tmp_path / "s", 10, size=48)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        words = np.frombuffer(ds.PixelData, "<u2").copy()
        words |= np.uint16(0xF000 if k % 2 else 0xA000)  # BitsStored 12: junk in the top four
        ds.PixelData = words.tobytes()
        ds.save_as(path)
    assert int(np.frombuffer(pydicom.dcmread(paths[0]).PixelData, "<u2").max()) > 4095
    study, series = _upload(orthanc, paths)
    volume = ms.open_volume(f"{orthanc.dicomweb}/studies/{study}/series/{series}")
    assert volume.status.bulk_frames == 10  # the series stream, not frame requests
    assert np.array_equal(volume.scalar_data, expected_stack(paths))  # pydicom masks them
