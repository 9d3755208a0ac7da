"""The whole-series request of a DICOMweb volume goes out beside its metadata request (a server
builds /metadata by reading every file), is claimed by the load, and is closed when no load
takes it: a failed metadata request, a cancelled open_volume, a volume already cached."""

from __future__ import annotations

import concurrent.futures
import time

import numpy as np
import pytest

import medstream as ms
from medstream.core.runtime import runtime
from medstream.errors import MedstreamError
from medstream.loaders import early
from series import expected_stack, write_series
from static_dicomweb import StaticDicomWeb

N = 12


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_series(tmp_path_factory.mktemp("early"), N, size=64)


@pytest.fixture
def slow_metadata(files):
    server = StaticDicomWeb(files[0].parent, metadata_delay=0.6)
    yield server
    server.close()


def _requests(server: StaticDicomWeb, suffix: str) -> list[float]:
    return [t for path, t in server.received if path.endswith(suffix)]


def test_series_request_goes_out_beside_the_metadata_request(slow_metadata):
    server = slow_metadata
    ms.purge_cache()
    volume = ms.open_volume(server.series_url)
    assert np.array_equal(volume.scalar_data, expected_stack(files_of(server)))  # pydicom
    assert volume.status.bulk_frames == N
    meta = _requests(server, "/metadata")
    whole = _requests(server, server.series_uid)
    assert len(meta) == 1 and len(whole) == 1  # one of each, no frame requests
    assert len(server.received) == 2
    assert whole[0] < meta[0] + 0.3  # sent while the metadata was being built (0.6 s)
    assert early.waiting() == 0
    # The same volume again: cached, nothing is requested.
    server.clear()
    assert ms.open_volume(server.series_url) is volume
    assert not _requests(server, server.series_uid) and early.waiting() == 0


def files_of(server: StaticDicomWeb):
    return list(server.instances.values())


def test_unclaimed_series_request_is_closed_when_the_metadata_fails(slow_metadata):
    server = slow_metadata
    ms.purge_cache()
    url = server.series_url.replace(server.series_uid, "1.2.3.4")  # an unknown series: 404
    with pytest.raises(MedstreamError):
        ms.open_volume(url)
    assert early.waiting() == 0
    assert len(_requests(server, "1.2.3.4")) == 1  # the series request went, and was closed


def test_cancelled_open_volume_closes_the_series_request(slow_metadata):
    server = slow_metadata
    ms.purge_cache()
    job = runtime.submit(ms.open_volume_async(server.series_url))
    deadline = time.monotonic() + 10
    while not (_requests(server, "/metadata") and _requests(server, server.series_uid)) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _requests(server, server.series_uid)  # begun
    job.cancel()  # while the metadata is being built: the series request is waiting
    with pytest.raises(concurrent.futures.CancelledError):
        job.result(10)
    deadline = time.monotonic() + 10
    while early.waiting() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert early.waiting() == 0
    ms.purge_cache()
    volume = ms.open_volume(server.series_url)  # and a new load is whole
    assert np.array_equal(volume.scalar_data, expected_stack(files_of(server)))


def test_a_claimed_response_is_left_to_its_claimant(slow_metadata):
    """Whichever load claims the response (another variant of the same series may) reads it to
    the end: the call that began it does not close it under that load."""
    from medstream.loaders.httpconfig import http_config
    from medstream.loaders.multipart import MultipartReader
    from medstream.loaders.wadors import INSTANCE_ACCEPT

    server = slow_metadata
    url = server.series_url

    async def scenario() -> int:
        cfg = http_config()
        began = early.begin(url, f"wadors:{url}", INSTANCE_ACCEPT, cfg)
        assert began is not None and early.begin(url, "x", INSTANCE_ACCEPT, cfg) is None
        claimed = early.claim(url, cfg)
        assert claimed is began and early.waiting() == 0
        await began.release()  # the starter's end: not closed, a load owns it now
        reader, parts = None, 0
        async for ctype, chunk in claimed.chunks():
            reader = reader or MultipartReader(ctype)
            parts += len(reader.feed(chunk))
        await claimed.aclose()
        return parts

    assert runtime.run_sync(scenario(), timeout=30) == N  # every instance arrived
