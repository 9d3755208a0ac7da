"""Attacks as a hostile file or server would make them, each in a fresh interpreter under an
address-space limit (tests/attack.py): the load must end in a typed error, within a bound on
time, with the peak memory growing by no more than a small fixed margin. Servers are local
(127.0.0.1); every loop in them is bounded. ``pytest -s`` prints the measurements."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medstream as ms
from attack import run_attack
from corpus import find
from hostile_server import (
    FRAMES_TYPE,
    Blackhole,
    CountingRefuser,
    HostileServer,
    one_instance_series,
    send,
)

SMALL_MB = 64  # a refused attack may grow the peak RSS by at most this much
MEASURED: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    print("\nhostile inputs:")
    for name, result in MEASURED.items():
        print(f"  {name}: {result}")


def record(name: str, out) -> None:  # noqa: ANN001 - attack.Outcome
    MEASURED[name] = f"{out.error} in {out.seconds:.2f} s, peak RSS +{out.grew_mb:.0f} MB"


@pytest.fixture(scope="module")
def server():
    srv = HostileServer()
    yield srv
    srv.close()


# -- HTTP bodies --------------------------------------------------------------------------------
def _lying_length(h) -> None:  # noqa: ANN001
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", str(50 * 1024**3))
    h.end_headers()
    for _ in range(50):  # a little data, then silence: at most 5 s
        h.wfile.write(b"\0" * 1024)
        time.sleep(0.1)


def _endless(h) -> None:  # noqa: ANN001
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Connection", "close")
    h.end_headers()
    block = b"\0" * (1024**2)
    for _ in range(512):  # 512 MB at most
        h.wfile.write(block)


_GZIP_BOMB: list[bytes] = []


def _gzip_bomb_body() -> bytes:
    """512 MB of zeros, gzipped to 0.5 MB (made once, before the attack is timed)."""
    if not _GZIP_BOMB:
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        _GZIP_BOMB.append(b"".join([c.compress(bytes(1024**2)) for _ in range(512)] + [c.flush()]))
    return _GZIP_BOMB[0]


def _gzip_bomb(h) -> None:  # noqa: ANN001
    send(h, _gzip_bomb_body(), ctype="image/png", Content_Encoding="gzip")


def _drip(h) -> None:  # noqa: ANN001
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", "100")
    h.end_headers()
    for _ in range(100):  # 20 s at most
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(0.2)


FETCH = """
def attack(url):
    ms.load_image(url, retries=0, timeout=ARG_TIMEOUT).result(60)
"""


@pytest.mark.parametrize("route,handler,timeout", [
    ("/lying-length.png", _lying_length, 30),
    ("/endless.png", _endless, 30),
    ("/gzip-bomb.png", _gzip_bomb, 30),
])
def test_http_body_over_budget(server, route, handler, timeout):
    """Content-Length of 50 GB; an endless body; 512 MB of gzip in 0.5 MB: refused at the
    budget (set to 32 MB here), never read or inflated beyond it."""
    server.routes[route] = handler
    _gzip_bomb_body()
    out = run_attack("ms.loaders.http.configure_http(max_bytes=32 * 1024**2)\n"
                     + FETCH.replace("ARG_TIMEOUT", str(timeout)), server.url + route)
    record(f"HTTP {route}", out)
    assert out.error == "ResourceLimitError", out.message
    assert server.url.split("//")[1] in out.message or route in out.message
    assert out.grew_mb < SMALL_MB and out.seconds < 15 and out.exited


def test_http_drip_is_bounded_by_a_total_deadline(server):
    """One byte every 0.2 s: ``timeout=0.5`` ends the request at 0.5 s, not at 20 s."""
    server.routes["/drip.png"] = _drip
    out = run_attack(FETCH.replace("ARG_TIMEOUT", "0.5"), server.url + "/drip.png", timeout=15)
    record("HTTP drip, timeout=0.5", out)
    assert out.error == "NetworkError" and "timed out" in out.message
    # Normally about 0.5 s; a per-read timeout would let the drip run its 20 s. The bound sits
    # between the two, far above the normal time: it guards that, not speed.
    assert out.seconds < 10 and out.exited


def test_wadors_metadata_claiming_millions_of_frames(server):
    item = {"00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
            "00280008": {"vr": "IS", "Value": [5_000_000]},
            "00280010": {"vr": "US", "Value": [512]}, "00280011": {"vr": "US", "Value": [512]},
            "00280100": {"vr": "US", "Value": [16]}}
    body = json.dumps([item]).encode()
    server.routes["/dicom-web/studies/1/series/2/metadata"] = lambda h: send(
        h, body, ctype="application/dicom+json")
    out = run_attack("def attack(url):\n    return len(ms.wadors_image_ids(url, retries=0))\n",
                     server.url + "/dicom-web/studies/1/series/2", timeout=30)
    record("DICOMweb metadata with 5,000,000 frames", out)
    assert out.error == "ResourceLimitError" and "5000000" in out.message
    assert out.grew_mb < SMALL_MB and out.seconds < 10


def test_multipart_without_boundary_is_capped_and_linear():
    from medstream.loaders.multipart import MultipartError, MultipartReader

    reader = MultipartReader("multipart/related; boundary=XYZ", max_part=16 * 1024**2)
    reader.feed(b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n")
    t0 = time.monotonic()
    with pytest.raises(MultipartError, match="over"):
        for _ in range(4096):  # up to 64 MB in 16 kB chunks, never a boundary
            reader.feed(b"\0" * 16384)
    assert time.monotonic() - t0 < 5
    assert len(reader._buf) <= 16 * 1024**2 + 32 * 1024
    header_bomb = MultipartReader("multipart/related; boundary=XYZ")
    with pytest.raises(MultipartError, match="header"):
        for _ in range(200):
            header_bomb.feed(b"--XYZ\r\n" + b"X-Junk: a\r\n" * 1000)


# -- files --------------------------------------------------------------------------------------
def _deflate_bomb(path: Path, mb: int) -> None:
    """A real deflated CT slice followed by an element of ``mb`` MB of zeros."""
    ds = pydicom.dcmread(find("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    raw = buf.getvalue()
    meta_end = 132 + 12 + struct.unpack("<I", raw[140:144])[0]
    plain = zlib.decompress(raw[meta_end:], -15)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [raw[:meta_end], c.compress(plain),
             c.compress(struct.pack("<HH2sHI", 0x7FE1, 0x1010, b"OB", 0, mb * 1024**2))]
    parts += [c.compress(bytes(1024**2)) for _ in range(mb)]
    path.write_bytes(b"".join(parts + [c.flush()]))


LOAD_FILE = """
def attack(path):
    return ms.load_image(ms.dicomfile_image_id(path)).result(60).rows
"""


def test_deflate_bomb(tmp_path):
    path = tmp_path / "deflate-bomb.dcm"
    _deflate_bomb(path, 384)
    out = run_attack(LOAD_FILE, str(path), timeout=40)
    record(f"deflated file of {path.stat().st_size // 1024} kB inflating to 384 MB", out)
    assert out.error == "ResourceLimitError", out.message
    assert "deflate" in out.message and str(path) in out.message
    assert out.grew_mb < SMALL_MB and out.exited


def test_deflated_file_still_loads(tmp_path):
    ds = pydicom.dcmread(find("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.save_as(tmp_path / "ok.dcm", enforce_file_format=True)
    image = ms.load_image(ms.dicomfile_image_id(tmp_path / "ok.dcm")).result(30)
    assert np.array_equal(image.get_pixel_data(),
                          ms.load_image(ms.dicomfile_image_id(find("CT_small.dcm"))).result(30)
                          .get_pixel_data())


def _j2k_claiming(path: Path, size: int, header_size: int | None) -> None:
    """A real J2K file whose codestream (SIZ, and tiles) claims ``size`` x ``size``."""
    from pydicom.encaps import encapsulate, generate_frames

    ds = pydicom.dcmread(find("693_J2KR.dcm"))
    frag = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    pos = frag.find(b"\xff\x4f\xff\x51")
    assert pos >= 0
    for off in (8, 12, 24, 28):  # Xsiz, Ysiz, XTsiz, YTsiz
        frag[pos + off : pos + off + 4] = size.to_bytes(4, "big")
    ds.PixelData = encapsulate([bytes(frag)])
    if header_size is not None:
        ds.Rows = ds.Columns = header_size
    ds.save_as(path, enforce_file_format=False)


@pytest.mark.parametrize("header", ["same", "small"])
def test_j2k_codestream_claiming_60000_squared(tmp_path, header):
    path = tmp_path / f"j2k-{header}.dcm"
    _j2k_claiming(path, 60000, 60000 if header == "same" else None)
    out = run_attack(LOAD_FILE, str(path), timeout=40)
    record(f"J2K of {path.stat().st_size // 1024} kB, SIZ 60000^2, header {header}", out)
    if header == "same":
        assert out.error == "ResourceLimitError", out.message
    else:
        assert out.error == "DecodeError" and "60000x60000" in out.message, out.message
    assert str(path) in out.message and out.grew_mb < SMALL_MB


def test_number_of_frames_bomb_in_a_folder(tmp_path):
    ds = pydicom.dcmread(find("CT_small.dcm"))
    ds.NumberOfFrames = 100_000
    (tmp_path / "s").mkdir()
    ds.save_as(tmp_path / "s" / "bomb.dcm", enforce_file_format=False)
    body = """
def attack(folder):
    scan = ms.scan_folder(folder)
    return [len(scan.series), sum(s.n_images for s in scan.series), list(scan.skipped.values())]
"""
    out = run_attack(body, str(tmp_path / "s"), timeout=30)
    record("one file claiming 100,000 frames in a scanned folder", out)
    assert out.error is None
    n_series, n_images, skipped = out.value
    assert n_series == 0 and n_images == 0 and "NumberOfFrames 100000" in skipped[0]
    assert out.seconds < 10


def test_invalid_number_of_frames_is_an_error(tmp_path):
    raw = find("CT_small.dcm").read_bytes()
    ds = pydicom.dcmread(find("CT_small.dcm"))
    ds.NumberOfFrames = 2
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    data = buf.getvalue().replace(b"\x28\x00\x08\x00IS\x02\x002 ", b"\x28\x00\x08\x00IS\x02\x001A")
    assert data != raw and b"1A" in data
    (tmp_path / "1a.dcm").write_bytes(data)
    image_id = ms.dicomfile_image_id(tmp_path / "1a.dcm")
    with pytest.raises(ms.DicomParseError, match="NumberOfFrames '1A'"):
        ms.load_image(image_id).result(30)


def _nifti_header(shape: tuple[int, ...], gz: bool) -> bytes:
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    data = hdr.binaryblock + b"\0" * 4 + b"\0" * 1024  # vox_offset 352, then 1 kB of voxels
    return gzip.compress(data) if gz else data


def test_nifti_claiming_more_than_it_holds(tmp_path, server):
    (tmp_path / "t.nii").write_bytes(_nifti_header((1000, 1000, 1000), gz=False))
    bomb = _nifti_header((4000, 4000, 4000), gz=True)
    server.routes["/bomb.nii.gz"] = lambda h: send(h, bomb)
    body = """
def attack(source):
    return ms.open_volume(source, retries=0).shape
"""
    local = run_attack(body, str(tmp_path / "t.nii"), timeout=30)
    record("local .nii of 1 kB claiming 1000^3 int16", local)
    assert local.raised("ImageLoadError") and "truncated NIfTI" in local.message
    remote = run_attack(body, f"nifti:{server.url}/bomb.nii.gz", timeout=30)
    record("remote .nii.gz claiming 4000^3 int16", remote)
    assert remote.error == "ResourceLimitError" and "4000x4000x4000" in remote.message
    assert local.grew_mb < SMALL_MB and remote.grew_mb < SMALL_MB


# -- hangs --------------------------------------------------------------------------------------
def test_fifo_does_not_hang_a_scan_a_load_or_the_exit(tmp_path):
    from series import write_series

    write_series(tmp_path / "s", 3, size=32)
    fifo = tmp_path / "s" / "x.dcm"
    os.mkfifo(fifo)
    body = """
def attack(folder):
    scan = ms.scan_folder(folder)
    try:
        ms.load_image(ms.dicomfile_image_id(folder + "/x.dcm")).result(10)
    except ms.ImageLoadError as exc:
        return [len(scan.series), scan.series[0].n_images, str(exc)]
"""
    out = run_attack(body, str(tmp_path / "s"), timeout=20)
    record("a FIFO named x.dcm in a scanned folder", out)
    assert out.error is None and out.exited
    assert out.value[:2] == [1, 3] and "not a regular file" in out.value[2]


def test_handlers_raising_system_exit_do_not_stop_the_loop(tmp_path):
    from series import write_series

    write_series(tmp_path / "s", 4, size=32)
    body = """
def attack(folder):
    ms.events.on("IMAGE_LOADED", lambda ev: sys.exit(3))
    ids = [ms.load_image("warm:%d" % i).result(10).image_id for i in range(3)]
    def progress(p):
        raise SystemExit(4)
    volume = ms.open_volume(folder, load=False)
    volume.load(progress).result(10)
    return [len(ids), bool(volume.loaded_mask.all())]
"""
    out = run_attack(body, str(tmp_path / "s"), timeout=20)
    record("event handler and on_progress raising SystemExit", out)
    assert out.error is None and out.value == [3, True] and out.exited


def test_blocking_result_inside_a_worker_raises_at_once():
    body = """
def attack(_):
    ms.runtime.set_workers(2)
    def nested(image_id):  # a sync loader blocking on another load: would hold a worker
        return ms.load_image("warm:inner").result()
    ms.register_image_loader("nested", nested)
    return errors_of([ms.load_image("nested:%d" % i) for i in range(4)], 10)
"""
    out = run_attack(body, timeout=20)
    record("sync loaders blocking on result() in every worker", out)
    assert out.error is None and len(out.value) == 4
    assert all("worker thread" in e for e in out.value) and out.seconds < 5


def test_result_timeout_names_the_id():
    body = """
def attack(_):
    register_waiting("slow", 10)
    obj = ms.load_image("slow:https://u:pw@h/x?token=SECRET")
    try:
        obj.result(0.2)
    finally:
        assert obj.cancel() and obj.cancelled()
"""
    out = run_attack(body, timeout=20)
    record("result(0.2) on a 10 s load", out)
    assert out.raised("TimeoutError") and out.raised("MedstreamError")
    assert "slow:https://h/x?token=***" in out.message and "SECRET" not in out.message
    assert out.seconds < 6  # 0.2 s normally, 10 s if result() waited for the load: a hang guard


def test_exit_with_loads_in_flight_is_prompt():
    body = """
def attack(_):
    register_waiting("stubborn", 60)
    global KEEP
    KEEP = [ms.load_image("stubborn:%d" % i) for i in range(4)]
    time.sleep(0.2)
"""
    t0 = time.monotonic()
    out = run_attack(body, timeout=20)
    took = time.monotonic() - t0
    MEASURED["exit with 4 sync loads in flight"] = f"interpreter gone in {took:.1f} s"
    assert out.exited and took < 10
    assert "meta_path" not in out.stderr and "Task was destroyed" not in out.stderr


def test_circuit_breaker_fails_queued_requests_fast():
    refuser = CountingRefuser()
    try:
        body = """
def attack(url):
    return errors_of([ms.load_image(f"{url}/x{i}.png", retries=2, backoff=0.05)
                      for i in range(30)])
"""
        out = run_attack(body, refuser.url, timeout=40)
    finally:
        refuser.close()
    MEASURED["30 loads against a host that drops every connection"] = (
        f"{refuser.count} connections (90 without the breaker) in {out.seconds:.2f} s")
    assert out.error is None and len(out.value) == 30
    assert refuser.count < 30 and any("host unreachable" in e for e in out.value)


def test_cli_on_a_dead_server_is_short(tmp_path):
    hole = Blackhole()
    try:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "medstream.cli", "render", f"{hole.url}/x.png", "-o",
             str(tmp_path / "x.png"), "--timeout", "0.5", "--retries", "0"],
            capture_output=True, text=True, timeout=30)
        took = time.monotonic() - t0
    finally:
        hole.close()
    MEASURED["CLI render against a server that never answers (--timeout 0.5)"] = (
        f"exit {proc.returncode} in {took:.1f} s")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ") and "timed out" in proc.stderr
    from medstream.cli import DEFAULT_RETRIES, DEFAULT_TIMEOUT

    assert DEFAULT_TIMEOUT * (DEFAULT_RETRIES + 1) <= 30


# -- credentials --------------------------------------------------------------------------------
def _png() -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_configured_token_goes_only_to_its_host(server):
    other = HostileServer()
    png = _png()
    server.routes["/scoped.png"] = other.routes["/scoped.png"] = lambda h: send(h, png)
    try:
        with pytest.raises(ValueError, match="base_url"):
            ms.configure_http(token="T0KEN-scope")
        ms.configure_http(token="T0KEN-scope", base_url=server.url)
        ms.load_image(f"{server.url}/scoped.png").result(10)
        ms.load_image(f"{other.url}/scoped.png").result(10)
    finally:
        ms.configure_http(token=None, base_url=None)
        other.close()
    assert server.seen("/scoped.png")[-1].get("authorization") == "Bearer T0KEN-scope"
    assert "authorization" not in other.seen("/scoped.png")[-1]


def test_custom_auth_header_dropped_on_cross_origin_redirect(server):
    other = HostileServer()
    png = _png()
    other.routes["/landing.png"] = lambda h: send(h, png)
    server.routes["/redirect.png"] = lambda h: send(h, b"", status=302,
                                                    Location=f"{other.url}/landing.png")
    try:
        ms.load_image(f"{server.url}/redirect.png", headers={"X-Api-Key": "K3Y"},
                      token="B3ARER").result(10)
        landed = other.seen("/landing.png")[-1]
    finally:
        other.close()
    assert server.seen("/redirect.png")[-1]["x-api-key"] == "K3Y"
    assert "x-api-key" not in landed and "authorization" not in landed


def test_results_are_not_shared_across_credentials(server):
    ds = pydicom.dcmread(find("CT_small.dcm"))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()

    def guarded(h) -> None:  # noqa: ANN001
        if h.headers.get("Authorization") != "Bearer good":
            send(h, b"no", status=401)
        else:
            send(h, data, ctype="application/dicom")

    server.routes["/wado"] = guarded
    image_id = f"wadouri:{server.url}/wado?objectUID=1"
    assert ms.load_and_cache_image(image_id, token="good").result(10).rows == ds.Rows
    for token in ("bad", None):
        with pytest.raises(ms.HTTPStatusError, match="401"):
            ms.load_and_cache_image(image_id, token=token, retries=0).result(10)
        ms.purge_cache()
        with pytest.raises(ms.HTTPStatusError, match="401"):
            ms.load_image(image_id, token=token, retries=0).result(10)


def test_httpx_logs_and_errors_are_redacted(server, caplog):
    png = _png()
    server.routes["/signed.png"] = lambda h: send(h, png)
    caplog.set_level(logging.DEBUG)
    secret = "S3CR3T-sig"
    url = (f"{server.url}/signed.png?X-Amz-Security-Token={secret}&X-Goog-Signature={secret}"
           f"&my_jwt_token={secret}#frag{secret}")
    ms.load_image(url).result(10)
    with pytest.raises(ms.HTTPStatusError) as err:
        ms.load_image(url.replace("signed", "missing"), retries=0).result(10)
    assert any(r.name == "httpx" for r in caplog.records)
    assert all(secret not in r.getMessage() for r in caplog.records)
    assert secret not in str(err.value) and secret not in repr(err.value)
    assert secret not in str(pickle.loads(pickle.dumps(err.value)))
    tblib = pytest.importorskip("tblib.pickling_support")  # as Dask does: tracebacks, causes
    tblib.install()
    assert secret not in str(pickle.loads(pickle.dumps(err.value)))  # no context cycle


# -- partial results and errors -----------------------------------------------------------------
def test_partial_volume_is_not_saved_as_data(tmp_path):
    from series import write_series

    paths = write_series(tmp_path / "s", 5, size=32)
    volume = ms.open_volume(tmp_path / "s", load=False)
    paths[2].write_bytes(paths[2].read_bytes()[:-500])
    with pytest.raises(ms.VolumeLoadError):
        volume.load().result(30)
    with pytest.raises(ms.VolumeError, match="1 of 5 slices are not loaded"):
        volume.save(tmp_path / "out.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()
    volume.save(tmp_path / "out.nii.gz", allow_partial=True)
    mask = np.load(tmp_path / "out.mask.npy")
    assert mask.tolist() == volume.loaded_mask.tolist() and mask.sum() == 4


def test_pickled_errors_keep_their_detail():
    errors = [
        ms.HTTPStatusError("wadors:x", 500, "http://h/x", "Orthanc: cannot split frames"),
        ms.UnsupportedTransferSyntaxError("dicomfile:/a", "1.2.3", "no JPEG XL decoder"),
        ms.ResourceLimitError("dicomfile:/b", "decoded frame", 10**10, 2**31, "J2K"),
        ms.LoadTimeoutError("wadors:y", 0.5),
    ]
    for err in errors:
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
    assert "cannot split frames" in str(pickle.loads(pickle.dumps(errors[0])))
    assert isinstance(errors[3], TimeoutError)


def test_cancel_reports_what_happened():
    import threading

    started = threading.Event()

    def slow(image_id, signal=None):
        started.set()
        signal.wait(10)
        signal.raise_if_cancelled()

    ms.register_image_loader("slowcancel", slow)
    obj = ms.load_image("slowcancel:1")
    assert started.wait(30)  # cancel a load that is running, not one still queued
    assert obj.cancel() is True and obj.cancelled()
    ms.register_image_loader("instant", lambda i: ms.Image.from_array(i, np.zeros((2, 2), np.uint8)))
    finished = ms.load_image("instant:1")
    finished.result(10)
    assert finished.cancel() is False and not finished.cancelled()


def test_presigned_style_query_strings_work(server, tmp_path):
    """A DICOMweb series URL and a NIfTI URL carrying their credentials in the query: the query
    stays on every derived URL (metadata, frames) and never shows in errors."""
    import nibabel as nib

    ds = pydicom.dcmread(find("CT_small.dcm"))
    meta, frame = one_instance_series(ds)
    root = "/dw/studies/1/series/2"
    uid = ds.SOPInstanceUID

    def need_token(body: bytes, ctype: str):
        def route(h) -> None:  # noqa: ANN001
            ok = "access_token=t0k" in h.path.partition("?")[2].split("&")
            send(h, body if ok else b"denied", status=200 if ok else 401, ctype=ctype)
        return route

    server.routes[f"{root}/metadata"] = need_token(meta, "application/dicom+json")
    server.routes[f"{root}/instances/{uid}/frames/1"] = need_token(frame, FRAMES_TYPE)
    volume = ms.open_volume(f"{server.url}{root}?access_token=t0k", retries=0)
    assert volume.shape == (1, ds.Rows, ds.Columns)
    assert np.array_equal(volume.scalar_data[0], ms.load_image(
        ms.dicomfile_image_id(find("CT_small.dcm"))).result(10).get_pixel_data())
    with pytest.raises(ms.MedstreamError) as err:
        ms.open_volume(f"{server.url}{root}?access_token=wr0ng", retries=0)
    assert "401" in str(err.value) and "wr0ng" not in str(err.value)

    nii = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4)), nii)
    data = nii.read_bytes()
    server.routes["/v.nii.gz"] = need_token(data, "application/gzip")
    vol = ms.open_volume(f"nifti:{server.url}/v.nii.gz?X-Amz-Signature=abc&access_token=t0k",
                         retries=0)
    assert vol.shape == (4, 3, 2)


def test_a_stalled_host_does_not_starve_local_files(tmp_path):
    """Interaction requests pile up on a server that never answers; a local-file volume (and a
    local interaction load) still load at once: a host may hold only part of each pool."""
    from series import write_series

    write_series(tmp_path / "s", 40, size=32)
    hole = Blackhole()
    try:
        stalled = [ms.load_image(f"{hole.url}/x{i}.png", timeout=10, retries=0)
                   for i in range(12)]
        time.sleep(0.2)
        t0 = time.monotonic()
        volume = ms.open_volume(tmp_path / "s", order="sequential")
        ms.load_image(ms.dicomfile_image_id(tmp_path / "s" / sorted(
            os.listdir(tmp_path / "s"))[0])).result(10)
        took = time.monotonic() - t0
        assert not any(o.done() for o in stalled)  # still stalled: they held their slots
    finally:
        for o in stalled:
            o.cancel()
        hole.close()
    MEASURED["40-slice local volume while 12 requests stall on another server"] = (
        f"loaded in {took:.2f} s")
    assert volume.loaded_mask.all() and took < 5


@pytest.mark.parametrize("text,secret", [
    ("HTTPS://user:pa55word@pacs.example.org/dicom-web", "pa55word"),
    ("https://s3.amazonaws.com/b/k.nii.gz?X-Amz-Security-Token=tok1&X-Amz-Credential=c", "tok1"),
    ("https://storage.googleapis.com/b/o?X-Goog-Signature=sig2", "sig2"),
    ("wadors:https://h/studies/1/series/2?my_api_key=k3y", "k3y"),
    ("https://h/viewer#access_token=frag4", "frag4"),
    ("sent Authorization: Bearer abcdef123456", "abcdef123456"),
    ("query was session_token=s5&x=1", "s5"),
])
def test_redaction_by_pattern(text, secret):
    from medstream.redact import redact_text

    assert secret not in redact_text(text)
