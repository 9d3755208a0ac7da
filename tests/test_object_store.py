"""Object stores by URL (s3://...) against a real S3-compatible server started for the tests.

Pixels are checked element-wise against pydicom reading the same files from disk (NIfTI against
the array written), geometry against the DICOM headers (reference.py) or, for real mosaics,
dcm2niix; never against medstream's own reading of the local copy. The transfer counts show that
reads are ranged, not whole-object downloads.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from series import expected_stack, transcode, write_series
from corpus import qa
from reference import LPS_FROM_RAS, expected_affine, expected_enhanced
from test_vendor_layouts import assert_same_volume, canonical, dcm2niix

import medstream as ms
from medstream.errors import ImageLoadError, MedstreamError, NetworkError
from medstream.storage import HEAD_BYTES, storage


@pytest.fixture
def bucket(s3):
    """A fresh bucket, configured for medstream (and forgotten after the test)."""
    name = f"b{uuid.uuid4().hex[:12]}"
    s3.filesystem().mkdir(name)
    ms.configure_storage(f"s3://{name}", **s3.options)
    yield f"s3://{name}"
    with storage._lock:
        storage._options.pop(f"s3://{name}", None)
    storage.clear()


@pytest.fixture(scope="module")
def ct_512(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct512")
    return folder, write_series(folder, 12, size=512)


def _transfer() -> tuple[int, int]:
    return storage.requests, storage.bytes_read


def test_a_bucket_prefix_scans_and_loads_like_the_local_folder(s3, bucket, ct_512):
    folder, paths = ct_512
    s3.upload(folder, f"{bucket}/ct/")
    total = sum(p.stat().st_size for p in paths)

    before = _transfer()
    scan = ms.scan_folder(f"{bucket}/ct/")
    requests, scanned = (a - b for a, b in zip(_transfer(), before))
    headers = {p.name: pydicom.dcmread(p, stop_before_pixels=True) for p in paths}
    assert [s.key for s in scan] == [headers[paths[0].name].SeriesInstanceUID]
    assert scan.files == 12
    # the files in order of their position along the normal (here: axial, so z)
    by_position = sorted(headers, key=lambda n: float(headers[n].ImagePositionPatient[2]))
    assert [i.rsplit("/", 1)[1] for i in scan.series[0].image_ids] == by_position
    assert scan.series[0].image_ids[0].startswith(f"dicomfile:{bucket}/ct/")
    # header-only: one ranged read of the head per object, a fraction of the bytes
    assert requests == 12 and scanned <= 12 * HEAD_BYTES < total / 6

    before = _transfer()
    volume = ms.open_volume(f"{bucket}/ct/")
    loaded = _transfer()[1] - before[1]
    assert np.array_equal(np.asarray(volume), expected_stack(paths))  # pydicom, from disk
    np.testing.assert_allclose(volume.affine, expected_affine(paths), atol=1e-4)
    # pixels by range: the bytes after each cached head, no object fetched again whole
    assert loaded <= total - 12 * HEAD_BYTES + 12 * 1024


def test_a_remote_object_loads_by_image_id_and_async(s3, bucket, ct_512):
    folder, paths = ct_512
    s3.upload(paths[3], f"{bucket}/one/a.dcm")
    image = ms.load_image(f"dicomfile:{bucket}/one/a.dcm").result(timeout=30)
    ds = pydicom.dcmread(paths[3])
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(image.pixel_data, hu)
    assert image.image_id == f"dicomfile:{bucket}/one/a.dcm"
    assert ms.metadata.get("SeriesInstanceUID", image.image_id) == ds.SeriesInstanceUID
    from medstream.dicom.instance import header_of

    header = header_of(image.image_id)  # what metadata by keyword falls back to
    assert header is not None and header.SOPInstanceUID == ds.SOPInstanceUID
    assert "PixelData" not in header

    async def main():
        return await ms.open_volume_async(f"{bucket}/one/a.dcm")

    volume = asyncio.run(main())
    assert volume.shape == (1, 512, 512) and np.array_equal(np.asarray(volume)[0], hu)


def test_compressed_objects_decode_like_pydicom(s3, bucket, tmp_path):
    if shutil.which("dcmcjpls") is None:
        pytest.fail("dcmcjpls (dcmtk) not installed: .ci/run installs it")
    paths = write_series(tmp_path / "raw", 6, size=96)
    transcode(paths, tmp_path / "jls", ["dcmcjpls"])
    s3.upload(tmp_path / "jls", f"{bucket}/jls/")
    volume = ms.open_volume(f"{bucket}/jls/")
    assert np.array_equal(np.asarray(volume), expected_stack(paths))  # lossless: the originals


def test_real_mosaics_from_a_bucket_match_dcm2niix(s3, bucket, tmp_path):
    folder = qa("siemens-mosaic", "axmb", "AxAsc36mb2a")  # JPEG lossless mosaics
    s3.upload(folder, f"{bucket}/mosaic/")
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    dyn = ms.open_volume(f"{bucket}/mosaic/", dynamic=True)
    assert dyn.shape[0] == ref.shape[3]
    assert_same_volume(canonical(dyn), ref)


def test_real_enhanced_multiframe_from_a_bucket(s3, bucket):
    """A Philips object holding a magnitude and a field map: two volumes, each the frames of
    one kind, ordered by position, with each frame's own rescale (all from pydicom)."""
    path = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    s3.upload(path, f"{bucket}/enh/IM_0027_fMAP.dcm")
    remote = ms.scan_folder(f"{bucket}/enh/")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    kinds: dict[str, list[int]] = {}  # FrameType value 4 (M, B0 map) -> its frame numbers
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence, 1):
        kinds.setdefault(group.MRImageFrameTypeSequence[0].FrameType[3], []).append(f)
    assert len(kinds) == 2 and [s.n_images for s in remote] == [len(f) for f in kinds.values()]
    seen = set()
    for k in range(len(remote.series)):
        got = ms.open_volume(f"{bucket}/enh/", series=k)
        frames = [int(i.rsplit("frame=", 1)[1]) for i in got.image_ids]
        first = ds.PerFrameFunctionalGroupsSequence[frames[0] - 1]
        kind = first.MRImageFrameTypeSequence[0].FrameType[3]
        assert sorted(frames) == kinds[kind]  # every frame of one kind, no other
        seen.add(kind)
        want, affine = expected_enhanced(path, kinds[kind])
        assert got.shape == want.shape
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(got.affine, affine, atol=1e-3)
    assert seen == set(kinds)


def test_file_urls_are_local_paths(ct_512):
    folder, paths = ct_512
    volume = ms.open_volume(folder.as_uri())
    assert np.array_equal(np.asarray(volume), expected_stack(paths))
    image = ms.load_image(f"dicomfile:{paths[0].as_uri()}").result(timeout=30)
    assert image.image_id == f"dicomfile:{paths[0].as_uri()}" and image.rows == 512


def test_missing_objects_and_prefixes_are_typed_errors(s3, bucket, ct_512):
    with pytest.raises(ImageLoadError, match="no such object"):
        ms.load_image(f"dicomfile:{bucket}/nothing.dcm").result(timeout=30)
    with pytest.raises(MedstreamError, match="no objects"):
        ms.scan_folder(f"{bucket}/empty/")
    s3.upload(ct_512[1][0], f"{bucket}/x/a.dcm")
    s3.filesystem().pipe(f"{bucket[5:]}/x/b.dcm", b"not dicom at all" * 10)
    s3.filesystem().pipe(f"{bucket[5:]}/x/c.bin", bytes(range(256)) * 40_000)  # 10 MB
    before = _transfer()[1]
    scan = ms.scan_folder(f"{bucket}/x/")
    assert scan.files == 3 and sorted(scan.skipped) == [f"{bucket}/x/b.dcm", f"{bucket}/x/c.bin"]
    assert _transfer()[1] - before < 3 * HEAD_BYTES  # the 10 MB object was not downloaded


def test_a_dead_endpoint_fails_within_its_deadline():
    from orthanc_server import free_port

    prefix = f"s3://dead{uuid.uuid4().hex[:8]}"
    ms.configure_storage(prefix, key="k", secret="s", client_kwargs={
        "endpoint_url": f"http://127.0.0.1:{free_port()}"},
        config_kwargs={"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}})
    try:
        start = time.monotonic()
        with pytest.raises(NetworkError):
            ms.load_image(f"dicomfile:{prefix}/a.dcm").result(timeout=60)
        assert time.monotonic() - start < 30
    finally:
        with storage._lock:
            storage._options.pop(prefix, None)


def test_options_belong_to_their_prefix_only():
    ms.configure_storage("s3://alpha", endpoint_url="http://a.invalid", key="secret-a")
    try:
        assert storage.options_for("s3://alpha/x/y.dcm")["key"] == "secret-a"
        assert storage.options_for("s3://alphabet/y.dcm") == {}  # not a prefix of the bucket
        assert storage.options_for("s3://beta/y.dcm") == {}
        with pytest.raises(MedstreamError):
            ms.configure_storage("bucket-without-scheme", anon=True)
    finally:
        with storage._lock:
            storage._options.pop("s3://alpha", None)


def test_cli_writes_a_nifti_from_a_bucket(s3, bucket, ct_512, tmp_path):
    """The CLI takes its store from the standard AWS environment variables."""
    import os
    import subprocess
    import sys

    from s3_server import KEY, SECRET

    folder, paths = ct_512
    s3.upload(folder, f"{bucket}/cli/")
    out = tmp_path / "ct.nii.gz"
    env = dict(os.environ, AWS_ENDPOINT_URL=s3.endpoint, AWS_ACCESS_KEY_ID=KEY,
               AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run([sys.executable, "-m", "medstream", "volume", f"{bucket}/cli/",
                             "-o", str(out)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    img = nib.load(out)
    assert img.shape == (512, 512, 12)
    # Element-wise, so no order, flip or transpose passes: NIfTI holds (column, row, slice).
    ours, want = np.asarray(img.dataobj), expected_stack(paths)  # pydicom, from disk
    assert np.array_equal(ours, want.transpose(2, 1, 0))
    # The affine the headers give (first position, orientation, pixel spacing, slice step), RAS.
    np.testing.assert_allclose(img.affine, LPS_FROM_RAS @ expected_affine(paths), atol=1e-4)



def test_a_nifti_object_loads_as_a_volume(s3, bucket, tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    s3.upload(tmp_path / "v.nii.gz", f"{bucket}/n/v.nii.gz")
    volume = ms.open_volume(f"{bucket}/n/v.nii.gz")
    assert np.array_equal(np.asarray(volume), data.transpose(2, 1, 0))  # (k, j, i), as written
    np.testing.assert_allclose(volume.affine, LPS_FROM_RAS @ affine, atol=1e-5)  # LPS
    assert np.array_equal(np.asarray(volume.to_nifti().dataobj), data)  # nibabel's own reading


class _RangeServer:
    """Static files over HTTP on 127.0.0.1, with Range support unless told to ignore it."""

    def __init__(self, root: Path, ranges: bool = True, lie: bool = False,
                 token: str | None = None) -> None:
        import http.server
        import threading

        self.seen: list[tuple[str, str | None]] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.seen.append((self.path, self.headers.get("Range")))
                outer.auth.append(self.headers.get("Authorization"))
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_error(401)
                    return
                path = root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                spec = self.headers.get("Range")
                if lie and spec:  # "206" with the whole object: more than was asked
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
                elif ranges and spec:
                    first, last = (int(x) for x in spec.split("=")[1].split("-"))
                    last = min(last, len(data) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
                    data = data[first : last + 1]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{path.stat().st_mtime_ns}"')
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("ranges", [True, False], ids=["ranges", "server-ignores-ranges"])
def test_files_on_a_web_server_load_by_ranges(ct_512, tmp_path, ranges):
    folder, paths = ct_512
    small = write_series(tmp_path / "small", 5, size=64)
    root = folder.parent
    if not ranges:  # without ranges each object comes whole, once: small files only
        root, paths = tmp_path, small
    server = _RangeServer(root, ranges)
    try:
        base = f"{server.url}/{paths[0].parent.name}"
        ids = [f"dicomfile:{base}/{p.name}" for p in paths]
        volume = ms.open_volume(ids)
        assert np.array_equal(np.asarray(volume), expected_stack(paths))
        assert all(r is not None for _, r in server.seen)  # every request asked for a range
        if ranges:  # a head, then the rest of the pixel bytes: two requests per file
            assert len(server.seen) == 2 * len(paths)
            assert {r for _, r in server.seen} >= {f"bytes=0-{HEAD_BYTES - 1}"}
        else:
            assert len(server.seen) == len(paths)
        with pytest.raises(MedstreamError, match="cannot be listed"):
            ms.scan_folder(f"{base}/")
        with pytest.raises(ImageLoadError):
            ms.load_image(f"dicomfile:{base}/missing.dcm").result(timeout=30)
    finally:
        server.close()


def test_object_urls_are_image_ids_too(s3, bucket, ct_512):
    folder, paths = ct_512
    s3.upload(paths[0], f"{bucket}/u/a.dcm")
    s3.upload(paths[1], f"{bucket}/u/b.dcm")
    volume = ms.open_volume([f"{bucket}/u/a.dcm", f"{bucket}/u/b.dcm"], spacing="keep")
    assert volume.shape[0] == 2
    assert all(i.startswith(f"dicomfile:{bucket}/u/") for i in volume.image_ids)


@pytest.mark.parametrize("mode", ["ignores-ranges", "sends-too-much"])
def test_a_web_server_cannot_make_a_range_read_allocate_more(ct_512, mode):
    from medstream.errors import ResourceLimitError

    folder, paths = ct_512
    server = _RangeServer(folder.parent, ranges=mode != "ignores-ranges",
                          lie=mode == "sends-too-much")
    before = ms.configure_limits().max_bytes
    ms.configure_limits(max_bytes=256 * 1024)  # the objects are 525 kB
    try:
        image_id = f"dicomfile:{server.url}/{folder.name}/{paths[0].name}"
        with pytest.raises((ResourceLimitError, ImageLoadError)) as err:
            ms.load_image(image_id).result(timeout=30)
        assert isinstance(err.value, ResourceLimitError) or "asked bytes" in str(err.value)
    finally:
        ms.configure_limits(max_bytes=before)
        server.close()
        storage.clear()


def test_an_object_replaced_with_one_of_the_same_size_is_seen_anew(s3, bucket, ct_512,
                                                                    monkeypatch):
    import medstream.storage as st

    folder, paths = ct_512
    url = f"{bucket}/r/a.dcm"
    s3.upload(paths[0], url)
    first = ms.load_image(f"dicomfile:{url}").result(timeout=30).pixel_data.copy()
    s3.upload(paths[1], url)  # same size, other pixels
    monkeypatch.setattr(st, "INFO_TTL", 0.0)  # (the default trusts what it saw for 10 s)
    monkeypatch.setattr(st.Storage.info, "__defaults__", (None, 0.0))
    ms.purge_cache()
    second = ms.load_image(f"dicomfile:{url}").result(timeout=30).pixel_data
    ds = pydicom.dcmread(paths[1])
    want = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert np.array_equal(second, want) and not np.array_equal(first, second)


def test_scheme_aliases_keep_their_options(s3, ct_512):
    folder, paths = ct_512
    name = f"a{uuid.uuid4().hex[:12]}"
    s3.filesystem().mkdir(name)
    s3.upload(folder, f"s3://{name}/ct/")
    ms.configure_storage(f"s3a://{name}", **s3.options)  # s3a:// is s3:// to fsspec
    try:
        scan = ms.scan_folder(f"s3a://{name}/ct/")
        assert scan.series[0].image_ids[0].startswith(f"dicomfile:s3a://{name}/ct/")
        assert np.array_equal(np.asarray(ms.open_volume(f"s3a://{name}/ct/")),
                              expected_stack(paths))
    finally:
        with storage._lock:
            storage._options.pop(f"s3a://{name}", None)
        storage.clear()


def test_keys_with_url_characters_name_their_own_object(s3, bucket, ct_512):
    folder, paths = ct_512
    s3.upload(paths[0], f"{bucket}/k/a%41.dcm")
    s3.upload(paths[1], f"{bucket}/k/aA.dcm")
    s3.upload(paths[2], f"{bucket}/k/IM?1.dcm")
    scan = ms.scan_folder(f"{bucket}/k/")
    files = {pydicom.dcmread(p).SOPInstanceUID: p for p in paths[:3]}
    by_name = {}
    for image_id in scan.series[0].image_ids:
        image = ms.load_image(image_id).result(timeout=30)
        uid = ms.metadata.get("SOPInstanceUID", image_id)
        by_name[uid] = image_id
        ds = pydicom.dcmread(files[uid])  # the pixels are that instance's own
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(image.pixel_data, hu)
    assert len(by_name) == 3  # three objects, three instances (no key read as another)


def test_a_server_without_ranges_past_the_cache(ct_512, tmp_path, monkeypatch):
    """Whole-object answers keep working when the object is no longer cached."""
    small = write_series(tmp_path / "s", 6, size=64)
    server = _RangeServer(tmp_path, ranges=False)
    try:
        ids = [f"dicomfile:{server.url}/s/{p.name}" for p in small]
        ms.open_volume(ids)  # headers and the whole objects seen once
        storage._heads.clear()  # headers and locators kept, the bytes gone
        storage._whole.clear()
        ms.purge_cache()
        volume = ms.open_volume(ids)
        assert np.array_equal(np.asarray(volume), expected_stack(small))
    finally:
        server.close()
        storage.clear()


def test_cli_renders_the_asked_slice_of_a_nifti_object():
    from medstream.cli import _image_id

    assert _image_id("s3://b/seg.nii.gz", 5) == "nifti:s3://b/seg.nii.gz?slice=4"
    assert _image_id("s3://b/ct/IM1.dcm", 2) == "dicomfile:s3://b/ct/IM1.dcm?frame=2"
    assert _image_id("ftp://u:pw@h/x.dcm") == "ftp://u:pw@h/x.dcm"  # not an object store


def test_one_failing_object_does_not_cost_the_others_their_heads(s3, bucket, ct_512,
                                                                  monkeypatch):
    folder, paths = ct_512
    s3.upload(folder, f"{bucket}/f/")
    urls = storage.listing(f"{bucket}/f/")
    gone = urls[3]
    s3.filesystem().rm(gone[len("s3://"):])  # listed, then deleted: its read fails
    before = _transfer()[0]
    failed = storage.prefetch_heads(urls)
    assert list(failed) == [gone] and gone in str(failed[gone])
    assert _transfer()[0] - before == len(urls)  # one request each, none repeated
    with storage._lock:
        assert sum(1 for u in urls if (u, storage._info.get(u).version) in storage._heads) == 11


def test_staged_load_from_a_bucket_reads_leading_ranges(s3, bucket, tmp_path):
    """HTJ2K objects in stages: the first bytes of each frame by a ranged read, lossy, then the
    rest; the volume ends equal to the uncompressed originals read with pydicom."""
    from series import expected_stack, htj2k_series, write_series

    raw = write_series(tmp_path / "raw", 8, size=128)
    htj2k_series(raw, tmp_path / "h", noise=8)
    s3.upload(tmp_path / "h", f"{bucket}/h/")
    seen: list = []
    plan = [ms.Stage("quarter", decimate=4, retrieve="leading", leading_bytes=1024, fill=2),
            ms.Stage("final")]
    volume = ms.open_volume(f"{bucket}/h/", stages=plan,
                            on_progress=lambda p: seen.append((p.index, int(p.quality))))
    assert np.array_equal(volume.scalar_data, expected_stack(raw))
    assert (0, ms.SliceStatus.LOSSY) in seen and (0, ms.SliceStatus.FINAL) in seen
