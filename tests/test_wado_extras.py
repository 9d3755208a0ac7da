"""WADO-RS extras against a real Orthanc: server-rendered frames and thumbnails as images.
A few paths Orthanc's plugin (1.7) never takes (a real /thumbnail, a 501, media type refusals)
are checked against a local scripted server."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medstream as ms
from corpus import find, with_new_uids
from hostile_server import HostileServer, send
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


@pytest.fixture(scope="module")
def objs(orthanc, tmp_path_factory):
    """name -> (local path, study, series, sop, orthanc ID)."""
    tmp = tmp_path_factory.mktemp("wado-extras")
    paths = {
        "mono8": _mono8(tmp / "mono8.dcm"),
        "ct": with_new_uids(find("CT_small.dcm"), tmp / "ct.dcm"),
        "emri": with_new_uids(find("emri_small.dcm"), tmp / "emri.dcm"),
        "rgb": with_new_uids(find("SC_rgb.dcm"), tmp / "rgb.dcm"),
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
