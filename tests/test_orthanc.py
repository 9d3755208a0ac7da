"""wadors: and wadouri: against a real Orthanc: every object, every frame, identical to the
uploaded file as pydicom (or dcmtk, where pydicom has no decoder) reads it."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
import warnings

import numpy as np
import pydicom
import pytest

import medstream as ms
from corpus import find, make_transcoded, with_new_uids
from reference import expected_image, matches

warnings.filterwarnings("ignore", category=UserWarning)

LOCAL_NAMES = [
    "CT_small.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm", "emri_small.dcm",
    "emri_small_jpeg_2k_lossless.dcm", "emri_small_jpeg_ls_lossless.dcm", "eCT_Supplemental.dcm",
    "SC_rgb_rle_2frame.dcm", "US1_J2KR.dcm", "US1_J2KI.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "OBXXXX1A.dcm", "color-pl.dcm", "JPEG-LL.dcm", "JPGExtended.dcm", "liver.dcm",
    "rtdose.dcm", "examples_ybr_color.dcm", "MR2_J2KI.dcm", "RG3_J2KR.dcm",
]


@pytest.fixture(scope="module")
def uploaded(orthanc, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("orthanc-upload")
    sources = [find(n) for n in LOCAL_NAMES]
    sources += [t.path for t in make_transcoded(tmp_path_factory.mktemp("tc"))]
    out = []
    for src in sources:
        copy = with_new_uids(src, tmp / src.name)
        info = orthanc.upload(copy)
        study, series, sop = orthanc.uids(info["ID"])
        n = int(pydicom.dcmread(copy, stop_before_pixels=True).get("NumberOfFrames") or 1)
        out.append((copy, study, series, sop, n))
    return out


def _wadouri(orthanc, study, series, sop, frame=None):
    url = (f"{orthanc.url}/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
           f"&objectUID={sop}&contentType=application/dicom")
    return f"wadouri:{url}" + (f"&frame={frame}" if frame else "")


def test_every_object_every_frame_matches_pydicom(orthanc, uploaded, tmp_path):
    """Each frame over wadors: and wadouri: against the uploaded file read with pydicom (dcmtk
    where pydicom has no decoder): pixels element-wise after the Modality LUT, and the window,
    inversion and colour the header states."""
    checked = 0
    for path, study, series, sop, n in uploaded:
        series_url = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
        ids = ms.wadors_image_ids(series_url)
        assert len(ids) == n, path.name
        frames = range(1, n + 1) if n <= 12 else (1, n // 2, n)
        for k in frames:
            want = expected_image(path, k if n > 1 else None, tmp_path)
            web = ms.load_image(f"wadors:{series_url}/instances/{sop}/frames/{k}").result(60)
            uri = ms.load_image(_wadouri(orthanc, study, series, sop, k if n > 1 else None)).result(60)
            for other, scheme in ((web, "wadors"), (uri, "wadouri")):
                got = other.get_pixel_data()
                assert matches(got, want["pixels"]), f"{scheme} {path.name} frame {k}"
                assert got.dtype.kind in ("ui" if want["integral"] else "f"), (scheme, path.name)
                assert other.window_center == pytest.approx(want["window_center"], rel=1e-6), (
                    scheme, path.name)  # float images: computed in float32
                assert other.invert == want["invert"] and other.color == want["color"]
            checked += 1
    assert checked >= len(uploaded)


def test_series_metadata_feeds_providers(orthanc, uploaded):
    path, study, series, sop, n = next(u for u in uploaded if u[0].name == "eCT_Supplemental.dcm")
    ids = ms.wadors_image_ids(f"{orthanc.dicomweb}/studies/{study}/series/{series}")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    plane = ms.metadata.get("imagePlaneModule", ids[1])
    exp = [float(x) for x in ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient]
    assert plane["image_position_patient"] == exp
    assert ms.metadata.get("generalSeriesModule", ids[0])["series_instance_uid"] == series
    assert ms.metadata.get("multiframeModule", ids[0])["number_of_frames"] == n


def test_metadata_fetched_once_per_series(orthanc, uploaded):
    from medstream.loaders import wadors

    path, study, series, sop, n = next(u for u in uploaded if u[0].name == "emri_small.dcm")
    wadors.series_metadata.clear()
    calls = []
    real = wadors.fetch

    async def counting(url, *a, **kw):
        calls.append(url)
        return await real(url, *a, **kw)

    wadors.fetch = counting
    try:
        base = f"wadors:{orthanc.dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/"
        objs = [ms.load_image(base + str(k)) for k in range(1, n + 1)]
        for o in objs:
            o.result(30)
    finally:
        wadors.fetch = real
    assert sum(u.endswith("/metadata") for u in calls) == 1
    assert sum("/frames/" in u for u in calls) == n


def test_http_errors_are_typed_and_redacted(orthanc, uploaded):
    _, study, series, sop, _ = uploaded[0]
    secret = "s3cr3t-token-value"
    iid = f"wadors:{orthanc.dicomweb}/studies/{study}/series/{series}/instances/1.2.3.999/frames/1"
    with pytest.raises(ms.ImageLoadError) as ei:
        ms.load_image(iid, token=secret).result(30)
    assert iid in str(ei.value) and secret not in str(ei.value) and secret not in repr(ei.value)
    bad_series = f"wadors:{orthanc.dicomweb}/studies/{study}/series/9.9.9/instances/{sop}/frames/1"
    with pytest.raises(ms.HTTPStatusError) as ei:
        ms.load_image(bad_series, token=secret).result(30)
    assert ei.value.status_code == 404 and secret not in str(ei.value)
    url = f"{orthanc.url}/wado?requestType=WADO&objectUID=1.2.3&token={secret}"
    with pytest.raises(ms.ImageLoadError) as ei:
        ms.load_image(f"wadouri:{url}").result(30)
    assert secret not in str(ei.value) and "token=***" in str(ei.value)


def test_connection_refused_and_timeout_are_network_errors():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    iid = f"wadouri:http://127.0.0.1:{port}/x.dcm"
    t0 = time.monotonic()
    with pytest.raises(ms.NetworkError) as ei:
        ms.load_image(iid, retries=1).result(30)
    assert iid in str(ei.value) and time.monotonic() - t0 < 10

    # A server that accepts and never answers: the timeout fires, nothing hangs.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    stalled = f"wadouri:http://127.0.0.1:{srv.getsockname()[1]}/stall.dcm"
    try:
        t0 = time.monotonic()
        with pytest.raises(ms.NetworkError, match="timed out"):
            ms.load_image(stalled, timeout=0.5, retries=0).result(30)
        assert time.monotonic() - t0 < 10  # 20x the 0.5 s timeout: guards a hang, not speed
    finally:
        srv.close()


def test_cancel_aborts_in_flight_request():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    accepted = []

    def accept():
        try:
            while True:
                conn, _ = srv.accept()
                accepted.append(conn)
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    iid = f"wadouri:http://127.0.0.1:{srv.getsockname()[1]}/slow.dcm"
    try:
        obj = ms.load_image(iid, timeout=60)
        deadline = time.monotonic() + 30
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert accepted, "request never reached the server"
        t0 = time.monotonic()
        obj.cancel()
        with pytest.raises(concurrent.futures.CancelledError):
            obj.result(30)
        # The request would wait 60 s for an answer; a cancel takes milliseconds. The bound
        # (far above that) guards a cancel that waits for the timeout, not speed.
        assert time.monotonic() - t0 < 20
        # The client closed the connection: the server sees EOF.
        accepted[0].settimeout(5)
        assert accepted[0].recv(65536, socket.MSG_PEEK) is not None
        data = b"x"
        while data:
            data = accepted[0].recv(65536)
    finally:
        srv.close()
        for c in accepted:
            c.close()


def test_async_loads_from_orthanc(orthanc, uploaded):
    path, study, series, sop, n = next(u for u in uploaded if u[0].name == "emri_small.dcm")

    async def main():
        ids = await ms.wadors_image_ids_async(f"{orthanc.dicomweb}/studies/{study}/series/{series}")
        return await asyncio.gather(*(ms.load_and_cache_image(i) for i in ids))

    images = asyncio.run(main())
    ref = pydicom.dcmread(path).pixel_array
    assert np.array_equal(np.stack([i.get_pixel_data() for i in images]), ref)
