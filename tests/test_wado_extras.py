"""WADO-RS extras against a real Orthanc: server-rendered frames and thumbnails as images, and
BulkDataURI values of the metadata fetched on demand (credentials kept on the metadata's host).
A few paths Orthanc's plugin (1.7) never takes (a real /thumbnail, a 501, media type refusals,
bulk data on another host) are checked against a local scripted server."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medstream as ms
from corpus import find, with_new_uids
from hostile_server import FRAMES_TYPE, HostileServer, one_instance_series, send
from medstream.dicom.instance import json_of
from medstream.dicom.modules import build_modules
from medstream.loaders import bulkdata
from medstream.render import image_to_uint8, window_to_uint8

warnings.filterwarnings("ignore", category=UserWarning)


def _mono8(path: Path) -> Path:
    """An uncompressed 8-bit MONOCHROME2 secondary capture with a window the server may ignore."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "OT", "WADO-EXTRAS"
    rows, cols = 48, 40
    rng = np.random.default_rng(7)
    px = np.add.outer(np.arange(rows) * 3, np.arange(cols) * 2) % 200 + 20
    px = (px + rng.integers(0, 30, (rows, cols))).astype(np.uint8)
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.WindowCenter, ds.WindowWidth = 100, 120
    ds.PixelData = px.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _with_bulk(path: Path) -> Path:
    """MR_small with elements Orthanc sends as BulkDataURI: a private OB blob, an ICC profile,
    overlay data, and a VOI LUT (nested in a sequence)."""
    ds = pydicom.dcmread(with_new_uids(find("MR_small.dcm"), path))
    block = ds.private_block(0x0011, "MEDSTREAM", create=True)
    block.add_new(0x01, "OB", bytes(range(256)) * 40)
    ds.ICCProfile = bytes(range(7, 250)) * 20
    ds.add_new(0x60000010, "US", 64)
    ds.add_new(0x60000011, "US", 64)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", np.packbits(np.eye(64, dtype=np.uint8)).tobytes())
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 16]
    lut.add_new(0x00283006, "OW", (np.arange(256, dtype="<u2") * 17).tobytes())
    ds.VOILUTSequence = Sequence([lut])
    ds.save_as(path)
    return path


@pytest.fixture(scope="module")
def objs(orthanc, tmp_path_factory):
    """name -> (local path, study, series, sop, orthanc ID)."""
    tmp = tmp_path_factory.mktemp("wado-extras")
    paths = {
        "mono8": _mono8(tmp / "mono8.dcm"),
        "ct": with_new_uids(find("CT_small.dcm"), tmp / "ct.dcm"),
        "emri": with_new_uids(find("emri_small.dcm"), tmp / "emri.dcm"),
        "rgb": with_new_uids(find("SC_rgb.dcm"), tmp / "rgb.dcm"),
        "bulk": _with_bulk(tmp / "bulk.dcm"),
    }
    out = {}
    for name, path in paths.items():
        oid = orthanc.upload(path)["ID"]
        out[name] = (path, *orthanc.uids(oid), oid)
    return out


def _frame_id(orthanc, obj, k: int = 1) -> str:
    _, study, series, sop, _ = obj
    return f"wadors:{orthanc.dicomweb}/studies/{study}/series/{series}/instances/{sop}/frames/{k}"


def _png(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


def _stretched(px: np.ndarray) -> np.ndarray:
    """Orthanc's default rendering: the frame's (rescaled) min..max onto 0..255."""
    px = px.astype(np.float64)
    return (px - px.min()) / max(px.max() - px.min(), 1e-9) * 255.0


def _modality(ds: pydicom.Dataset, frame: np.ndarray) -> np.ndarray:
    return frame * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))


# -- rendered frames and thumbnails against Orthanc --------------------------------------------
@pytest.mark.parametrize("name, frame", [("mono8", 1), ("ct", 1), ("emri", 4)])
def test_rendered_frame_is_the_pydicom_frame_as_orthanc_renders_it(orthanc, objs, name, frame):
    """A rendered frame keeps the frame's shape and is pydicom's pixels with the server's
    default windowing (Orthanc: the frame's min..max, the instance's window ignored), and the
    same picture as Orthanc's own /preview (another code path of the server) within a gray
    level."""
    path, study, series, sop, oid = objs[name]
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    px = _modality(ds, arr[frame - 1] if int(ds.get("NumberOfFrames") or 1) > 1 else arr)
    rid = ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, series, sop, frame)
    assert rid == _frame_id(orthanc, objs[name], frame) + "/rendered"
    image = ms.load_image(rid).result(30)
    got = image.get_pixel_data()
    assert got.shape == (ds.Rows, ds.Columns) and got.dtype == np.uint8
    assert not image.color and image.photometric_interpretation == "MONOCHROME2"
    assert image.extra == {"format": "PNG", "resource": "rendered"}
    assert np.abs(got - _stretched(px)).max() <= 0.5 + 1e-9
    assert np.corrcoef(got.ravel(), px.ravel())[0, 1] > 0.999
    if frame == 1:
        preview = httpx.get(f"{orthanc.url}/instances/{oid}/preview", timeout=10)
        assert np.abs(got.astype(int) - _png(preview.content)).max() <= 1  # rounding


def test_rendered_with_a_window_is_medstreams_own_windowed_frame(orthanc, objs):
    """``window=`` goes to the server; its picture is what medstream's own decode + VOI window
    gives for the wadors: frame, and what pydicom's pixels give with the same window."""
    path, study, series, sop, _ = objs["ct"]
    window = (40.0, 400.0)
    rid = ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, series, sop, 1, window=window)
    assert rid.endswith("/frames/1/rendered?window=40,400,linear")
    got = ms.load_image(rid).result(30).get_pixel_data()
    own = image_to_uint8(ms.load_image(_frame_id(orthanc, objs["ct"])).result(30), window=window)
    ds = pydicom.dcmread(path)
    independent = window_to_uint8(_modality(ds, ds.pixel_array), *window)
    assert np.abs(got.astype(int) - own).max() <= 1
    assert np.abs(got.astype(int) - independent).max() <= 1
    # the instance-level resource renders its first frame
    whole = ms.load_image(ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, series, sop,
                                                        window=window)).result(30)
    assert np.array_equal(whole.get_pixel_data(), got)


def test_rendered_colour_is_rgb(orthanc, objs):
    path, study, series, sop, _ = objs["rgb"]
    image = ms.load_image(ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, series, sop,
                                                        1)).result(30)
    got = image.get_pixel_data()
    expected = pydicom.dcmread(path).pixel_array
    assert image.color and got.shape == expected.shape == (100, 100, 3)
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_viewport_and_jpeg_reach_the_server(orthanc, objs):
    _, study, series, sop, _ = objs["emri"]
    small = ms.load_image(ms.dicomweb.rendered_image_id(
        orthanc.dicomweb, study, series, sop, 2, viewport=(32, 32))).result(30)
    assert small.get_pixel_data().shape == (32, 32)
    png = ms.load_image(ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, series, sop,
                                                      2)).result(30)
    jpeg = ms.load_image(ms.dicomweb.rendered_image_id(
        orthanc.dicomweb, study, series, sop, 2, accept="image/jpeg")).result(30)
    assert jpeg.extra["format"] == "JPEG" and png.extra["format"] == "PNG"
    a, b = png.get_pixel_data().astype(float), jpeg.get_pixel_data().astype(float)
    assert a.shape == b.shape and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_thumbnails_fall_back_to_rendered_on_orthanc(orthanc, objs):
    """Orthanc's plugin has no /thumbnail (404 at every level): the series, study and instance
    thumbnails are its /rendered pictures; a search result gives them directly."""
    _, study, series, sop, _ = objs["emri"]
    base = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
    assert httpx.get(f"{base}/thumbnail", timeout=10).status_code == 404
    rendered = _png(httpx.get(f"{base}/rendered", headers={"Accept": "image/png"},
                              timeout=10).content)
    found = ms.dicomweb.search_series(orthanc.dicomweb, study)
    assert [s.series_uid for s in found] == [series]
    thumb = found[0].thumbnail()
    assert thumb.extra["resource"] == "rendered"
    assert np.array_equal(thumb.get_pixel_data(), rendered)
    assert found[0].thumbnail(viewport=(16, 16)).get_pixel_data().shape == (16, 16)
    study_thumb = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID="*")
    assert any(s.study_uid == study for s in study_thumb)
    assert next(s for s in study_thumb if s.study_uid == study).thumbnail().rows == 64
    instance = ms.dicomweb.search_instances(orthanc.dicomweb, study, series)[0]
    image = ms.load_and_cache_image(instance.thumbnail_image_id(frame=3)).result(30)
    assert image.extra["resource"] == "rendered" and image.get_pixel_data().shape == (64, 64)


def test_missing_objects_are_typed_errors(orthanc, objs):
    _, study, series, _, _ = objs["emri"]
    for rid in (ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, series, "1.2.3.4", 1),
                ms.dicomweb.thumbnail_image_id(orthanc.dicomweb, study, series, "1.2.3.4")):
        with pytest.raises(ms.HTTPStatusError) as info:
            ms.load_image(rid).result(30)
        assert info.value.status_code == 404
    with pytest.raises(ms.OptionError):
        ms.dicomweb.rendered_image_id(orthanc.dicomweb, study, None, "1.2.3.4")
    with pytest.raises(ms.OptionError):
        ms.dicomweb.thumbnail_image_id(orthanc.dicomweb, study, series, "1.2.3.4", 0)


# -- rendered: the paths Orthanc does not take -------------------------------------------------
def _png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def server():
    s = HostileServer()
    yield s
    s.close()


def test_thumbnail_negotiation_fallbacks_and_multipart(server):
    """A real /thumbnail is used; a 501 falls back to /rendered; a server refusing PNG (406)
    is asked for JPEG; a multipart rendering gives its first image."""
    root = f"{server.url}/dicom-web/studies/1"
    ramp = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (5, 1))
    server.routes["/dicom-web/studies/1/series/2/thumbnail"] = lambda h: send(
        h, _png_bytes(ramp), ctype="image/png")
    server.routes["/dicom-web/studies/1/series/2/instances/3/thumbnail"] = lambda h: send(
        h, b"not implemented", status=501, ctype="text/plain")

    def jpeg_only(h):  # noqa: ANN001
        if h.headers.get("Accept") == "image/jpeg":
            send(h, _png_bytes(ramp, "JPEG"), ctype="image/jpeg")
        else:
            send(h, b"", status=406)

    server.routes["/dicom-web/studies/1/series/2/instances/3/rendered"] = jpeg_only
    two = b"".join(b"--B0UND\r\nContent-Type: image/png\r\n\r\n" + _png_bytes(ramp + k) + b"\r\n"
                   for k in (1, 2)) + b"--B0UND--\r\n"
    server.routes["/dicom-web/studies/1/rendered"] = lambda h: send(
        h, two, ctype='multipart/related; type="image/png"; boundary=B0UND')

    thumb = ms.load_image(f"wadors:{root}/series/2/thumbnail").result(10)
    assert thumb.extra == {"format": "PNG", "resource": "thumbnail"}
    assert np.array_equal(thumb.get_pixel_data(), ramp)
    fallback = ms.load_image(f"wadors:{root}/series/2/instances/3/thumbnail?viewport=5,5"
                             ).result(10)
    assert fallback.extra == {"format": "JPEG", "resource": "rendered"}
    assert np.abs(fallback.get_pixel_data().astype(int) - ramp).max() < 12
    asked = [(p, h.get("accept")) for p, h in server.log if "/instances/3/" in p]
    assert asked == [("/dicom-web/studies/1/series/2/instances/3/thumbnail?viewport=5,5",
                      "image/png"),  # a 501 is not a refusal of PNG: no JPEG asked
                     ("/dicom-web/studies/1/series/2/instances/3/rendered?viewport=5,5",
                      "image/png"),
                     ("/dicom-web/studies/1/series/2/instances/3/rendered?viewport=5,5",
                      "image/jpeg")]
    first = ms.load_image(f"wadors:{root}/rendered").result(10)
    assert np.array_equal(first.get_pixel_data(), ramp + 1)


def test_rendered_garbage_and_oversized_pictures_are_typed_errors(server):
    server.routes["/dicom-web/studies/1/rendered"] = lambda h: send(h, b"\x89PNG junk",
                                                                    ctype="image/png")
    big = PILImage.new("L", (4000, 4000))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    server.routes["/dicom-web/studies/2/rendered"] = lambda h: send(h, buf.getvalue(),
                                                                    ctype="image/png")
    with pytest.raises(ms.DecodeError):
        ms.load_image(f"wadors:{server.url}/dicom-web/studies/1/rendered").result(10)
    before = ms.configure_limits().max_bytes
    ms.configure_limits(max_bytes=8 * 1024**2)
    try:
        with pytest.raises(ms.ResourceLimitError):
            ms.load_image(f"wadors:{server.url}/dicom-web/studies/2/rendered").result(10)
    finally:
        ms.configure_limits(max_bytes=before)


# -- bulk data against Orthanc --------------------------------------------------------------------
@pytest.fixture
def bulk_requests(monkeypatch):
    """Every bulk data fetch, counted (the metadata and frame loads must make none)."""
    seen: list[str] = []
    real = bulkdata.fetch

    async def counting(url, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        seen.append(url)
        return await real(url, *args, **kwargs)

    monkeypatch.setattr(bulkdata, "fetch", counting)
    return seen


def test_bulk_data_is_fetched_on_demand_and_matches_the_file(orthanc, objs, bulk_requests):
    path, study, series, sop, _ = objs["bulk"]
    series_url = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
    raw = httpx.get(f"{series_url}/metadata", timeout=10).json()[0]
    for tag in ("00111001", "00282000", "60003000"):  # what Orthanc leaves out of /metadata
        assert "BulkDataURI" in raw[tag]
        assert "Value" not in raw[tag] and "InlineBinary" not in raw[tag]
    ds = pydicom.dcmread(path)

    ids = ms.wadors_image_ids(series_url)
    image = ms.load_image(ids[0]).result(30)
    assert image.rows == ds.Rows
    for module in ("imagePixelModule", "overlayPlaneModule", "voiLutModule", "instance"):
        ms.metadata.get(module, ids[0])
    assert ms.metadata.get("instance", ids[0])["ICCProfile"] is None  # "instance" never fetches
    assert bulk_requests == []  # nothing fetched until asked

    assert ms.metadata.get("ICCProfile", ids[0]) == ds.ICCProfile
    assert ms.metadata.get("00111001", ids[0]) == ds[0x00111001].value
    assert ms.dicomweb.read_element(ids[0], "60003000") == ds[0x60003000].value
    assert ms.dicomweb.read_element(ids[0], "PatientID") == ds.PatientID  # inline: no fetch
    assert len(bulk_requests) == 3 and all(u.startswith(series_url) for u in bulk_requests)

    view = json_of(ids[0])
    ref = view.bulk("ICCProfile")
    assert ref.vr == "OB" and ref.uri == raw["00282000"]["BulkDataURI"]
    assert set(view.bulk_elements()) >= {"00111001", "00282000", "60003000"}
    assert view.get("ICCProfile") is None and view.bulk("PatientID") is None
    lut = view.get("VOILUTSequence")[0]
    assert lut.bulk("LUTData") is not None and lut.get("LUTData") is None
    assert lut.bulk("LUTData").value() == ds.VOILUTSequence[0][0x00283006].value
    assert len(bulk_requests) == 4  # the references fetched nothing; the LUT once


def test_bulk_data_by_instance_url_and_search_result(orthanc, objs):
    path, study, series, sop, _ = objs["bulk"]
    ds = pydicom.dcmread(path)
    ms.purge_cache()
    instance = ms.dicomweb.search_instances(orthanc.dicomweb, study, series)[0]
    assert instance.read_element("ICCProfile") == ds.ICCProfile
    assert ms.dicomweb.read_element(f"wadors:{instance.url}", "00111001") == ds[0x00111001].value
    with pytest.raises(ms.OptionError):
        ms.dicomweb.read_element(instance.url, "NotAKeyword")


def test_module_builders_never_fetch_bulk_data():
    """Module builders and the pydicom dataset of a view read a BulkDataURI as absent."""
    from medstream.dicom.jsonmeta import JsonDataset

    async def refuse(uri: str) -> bytes:
        raise AssertionError(f"fetched {uri}")

    ds = pydicom.dcmread(find("MR_small.dcm"), stop_before_pixels=True)
    item = ds.to_json_dict()
    item["00282000"] = {"vr": "OB", "BulkDataURI": "http://127.0.0.1:9/icc"}
    item["00283010"] = {"vr": "SQ", "Value": [{"00283006": {"vr": "US",
                                                            "BulkDataURI": "http://x/lut"}}]}
    view = JsonDataset(item, refuse)
    modules = build_modules(view, 0)
    assert modules["imagePixelModule"]["rows"] == ds.Rows
    assert view.dataset().ICCProfile is None and view.get("ICCProfile") is None
    assert view.get("VOILUTSequence")[0].bulk("LUTData").uri == "http://x/lut"


# -- bulk data: credentials stay on the metadata's origin ----------------------------------------
def test_bulk_credentials_go_only_to_the_metadata_origin(server):
    other = HostileServer()
    try:
        ds = pydicom.dcmread(find("CT_small.dcm"))
        meta_json, frame = one_instance_series(ds)
        meta = json.loads(meta_json)
        base = f"{server.url}/dicom-web/studies/1/series/2"
        meta[0]["00282000"] = {"vr": "OB", "BulkDataURI": f"{base}/bulk/icc"}
        meta[0]["00111001"] = {"vr": "OB", "BulkDataURI": "bulk/private"}  # relative
        meta[0]["00291010"] = {"vr": "OB", "BulkDataURI": f"{other.url}/elsewhere"}
        meta[0]["00291020"] = {"vr": "OB", "BulkDataURI": "file:///etc/passwd"}
        meta[0]["00283006"] = {"vr": "US", "BulkDataURI": f"{base}/bulk/lut"}
        meta[0]["00283002"] = {"vr": "US", "BulkDataURI": f"{base}/bulk/odd"}
        server.routes["/dicom-web/studies/1/series/2/metadata"] = lambda h: send(
            h, json.dumps(meta).encode(), ctype="application/dicom+json")
        part = b"--B0UND\r\nContent-Type: application/octet-stream\r\n\r\n%s\r\n--B0UND--\r\n"
        for path, body in (("bulk/icc", b"ICC!"), ("bulk/private", b"PRIV"),
                           ("bulk/lut", (np.arange(4, dtype="<u2") * 300).tobytes()),
                           ("bulk/odd", b"abc")):
            server.routes[f"/dicom-web/studies/1/series/2/{path}"] = (
                lambda h, body=body: send(h, part % body, ctype=FRAMES_TYPE))
        other.routes["/elsewhere"] = lambda h: send(h, b"OTHER")  # not multipart: as is

        series_url = f"{base}?access_token=q1"
        ids = ms.wadors_image_ids(series_url, token="s3cret", headers={"X-Api-Key": "k1"})
        uid = ds.SOPInstanceUID
        frame = f"wadors:{base}/instances/{uid}/frames/1?access_token=q1"
        assert ids == [frame]
        assert ms.metadata.get("ICCProfile", frame) == b"ICC!"
        assert ms.metadata.get("00111001", frame) == b"PRIV"
        assert ms.metadata.get("00291010", frame) == b"OTHER"
        assert ms.metadata.get("LUTData", frame) == [0, 300, 600, 900]  # US, as pydicom reads it
        with pytest.raises(ms.ImageLoadError, match="not http"):
            json_of(frame).bulk("00291020").read()
        with pytest.raises(ms.DecodeError, match="not a valid US"):  # 3 bytes of US
            ms.dicomweb.read_element(frame, "00283002", token="s3cret",
                                     headers={"X-Api-Key": "k1"})

        for path in ("/dicom-web/studies/1/series/2/bulk/icc",
                     "/dicom-web/studies/1/series/2/bulk/private"):
            (full, sent), = [(p, h) for p, h in server.log if p.split("?")[0] == path]
            assert full.endswith("?access_token=q1")  # the root's query, same origin only
            assert sent["authorization"] == "Bearer s3cret" and sent["x-api-key"] == "k1"
        (full, sent), = other.log
        assert full == "/elsewhere" and "authorization" not in sent and "x-api-key" not in sent
    finally:
        other.close()


def test_configured_credentials_scope_and_byte_budget_hold_for_bulk_data(server):
    ds = pydicom.dcmread(find("CT_small.dcm"))
    meta_json, _ = one_instance_series(ds)
    meta = json.loads(meta_json)
    base = f"{server.url}/dicom-web/studies/1/series/2"
    meta[0]["00282000"] = {"vr": "OB", "BulkDataURI": f"{base}/bulk/icc"}
    server.routes["/dicom-web/studies/1/series/2/metadata"] = lambda h: send(
        h, json.dumps(meta).encode(), ctype="application/dicom+json")
    server.routes["/dicom-web/studies/1/series/2/bulk/icc"] = lambda h: send(h, b"x" * 50_000)
    frame = f"wadors:{base}/instances/{ds.SOPInstanceUID}/frames/1"
    ms.configure_http(token="conf", base_url=server.url)
    try:
        assert ms.dicomweb.read_element(frame, "ICCProfile") == b"x" * 50_000
        (sent,) = server.seen("/dicom-web/studies/1/series/2/bulk/icc")
        assert sent["authorization"] == "Bearer conf"
        with pytest.raises(ms.ResourceLimitError):
            ms.dicomweb.read_element(frame, "ICCProfile", max_bytes=20_000)
    finally:
        ms.configure_http(token=None, base_url=None)
