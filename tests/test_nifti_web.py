"""NIfTI (files and URLs, NIfTI-1/2, scaling, 4D) and web PNG/JPEG images over a real HTTP
server (Python's http.server on 127.0.0.1). Expected values are the arrays the tests wrote (and
nibabel's or pydicom's reading of the files), never medstream's own reading of another copy."""

from __future__ import annotations

import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

import medstream as ms
from reference import LPS_FROM_RAS, expected_affine
from series import expected_stack, oblique, write_series


class _Handler(SimpleHTTPRequestHandler):
    stalled: list[float] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/stall"):
            _Handler.stalled.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            try:
                for _ in range(200):
                    time.sleep(0.05)
                    self.wfile.write(b"\0" * 10)
                    self.wfile.flush()
            except OSError:
                _Handler.stalled.append(time.monotonic())  # the client went away
            return
        super().do_GET()


@pytest.fixture()
def web(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_Handler, directory=str(root)))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _nifti(path: Path, data: np.ndarray, affine: np.ndarray, cls=nib.Nifti1Image,
           slope: float | None = None, inter: float | None = None) -> Path:
    img = cls(data, affine)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    nib.save(img, str(path))
    return path


AFFINE = np.array([[-0.9, 0.1, 0, 90.0], [0.05, 0.8, 0.2, -120.0], [0, -0.15, 2.5, 33.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("cls,suffix", [(nib.Nifti1Image, ".nii.gz"), (nib.Nifti2Image, ".nii")])
def test_nifti_volume_ras_to_lps_and_scaling(tmp_path, cls, suffix):
    raw = np.arange(20 * 16 * 7, dtype=np.int16).reshape(20, 16, 7) - 500
    path = _nifti(tmp_path / f"v{suffix}", raw, AFFINE, cls, slope=2.0, inter=-10.0)
    vol = ms.open_volume(path)
    assert isinstance(vol, ms.NiftiVolume) and vol.status.loaded
    assert vol.shape == (7, 16, 20)
    expected = (raw.astype(np.int32) * 2 - 10).transpose(2, 1, 0)
    assert np.array_equal(vol.scalar_data, expected) and vol.dtype == np.int16
    np.testing.assert_allclose(vol.affine, np.diag([-1, -1, 1, 1]) @ AFFINE, atol=1e-5)
    # Round trip: the volume written back gives the same world mapping and values.
    back = nib.load(str(vol.save(tmp_path / "back.nii.gz")))
    np.testing.assert_allclose(back.affine, AFFINE, atol=1e-5)
    assert np.array_equal(np.asarray(back.dataobj), raw.astype(np.int32) * 2 - 10)


def test_nifti_non_integral_scaling_gives_float32(tmp_path):
    raw = np.arange(4 * 4 * 3, dtype=np.int16).reshape(4, 4, 3)
    vol = ms.open_volume(_nifti(tmp_path / "f.nii", raw, np.eye(4), slope=0.5, inter=0.25))
    assert vol.dtype == np.float32
    np.testing.assert_allclose(vol.scalar_data, (raw * 0.5 + 0.25).transpose(2, 1, 0))


def test_nifti_slices_as_images_and_as_a_streaming_volume(tmp_path):
    raw = np.random.default_rng(1).integers(-1000, 1000, (12, 10, 6)).astype(np.int16)
    affine = np.array([[0.9, 0, 0, -90.0], [0, 0.8, 0, 120.0], [0, 0, 2.5, 33.0], [0, 0, 0, 1]])
    path = _nifti(tmp_path / "s.nii.gz", raw, affine)
    ids = [f"nifti:{path}?slice={k}" for k in range(6)]
    image = ms.load_image(ids[2]).result(10)
    assert np.array_equal(image.get_pixel_data(), raw[:, :, 2].T)
    plane = ms.metadata.get("imagePlaneModule", ids[2])
    np.testing.assert_allclose(plane["image_position_patient"],
                               (np.diag([-1, -1, 1, 1]) @ affine @ [0, 0, 2, 1])[:3], atol=1e-5)
    # The slice IDs form the volume the file holds through the generic streaming path.
    vol = ms.create_and_cache_volume("from-slices", image_ids=ids[::-1]).result(10)
    vol.load().result(10)
    assert vol.dtype == np.int16
    assert np.array_equal(vol.scalar_data, raw.transpose(2, 1, 0))
    np.testing.assert_allclose(vol.affine, LPS_FROM_RAS @ affine, atol=1e-4)


def test_nifti_4d_picks_volume_and_bad_files(tmp_path):
    data = np.stack([np.full((4, 5, 3), t, np.int16) for t in range(3)], axis=-1)
    path = _nifti(tmp_path / "4d.nii.gz", data, np.eye(4))
    vol = ms.open_volume(f"nifti:{path}?volume=2")
    assert vol.shape == (3, 5, 4) and np.all(vol.scalar_data == 2)
    first = ms.open_volume(path)
    assert np.all(first.scalar_data == 0) and "4D NIfTI with 3 volumes" in first.geometry.warnings[0]
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8bnot really")
    with pytest.raises(ms.MedstreamError, match="bad.nii.gz"):
        ms.open_volume(bad)
    with pytest.raises(ms.ImageLoadError, match="no such file or folder"):
        ms.load_image(f"nifti:{tmp_path}/none.nii?slice=0").result(10)


def test_nibabel_example4d():
    from nibabel.testing import data_path

    vol = ms.open_volume(f"{data_path}/example4d.nii.gz")
    ref = nib.load(f"{data_path}/example4d.nii.gz")
    assert vol.shape == tuple(reversed(ref.shape[:3]))
    np.testing.assert_allclose(vol.scalar_data, np.asarray(ref.dataobj)[..., 0].transpose(2, 1, 0))


def test_nifti_over_http_matches_the_file(tmp_path, web):
    root, base = web
    raw = np.random.default_rng(2).integers(0, 4000, (8, 9, 5)).astype(np.uint16)
    _nifti(root / "ct.nii.gz", raw, AFFINE)
    remote = ms.open_volume(f"nifti:{base}/ct.nii.gz")
    assert remote.dtype == np.uint16 and remote.shape == (5, 9, 8)
    assert np.array_equal(remote.scalar_data, raw.transpose(2, 1, 0))  # what was written
    np.testing.assert_allclose(remote.affine, LPS_FROM_RAS @ AFFINE, atol=1e-5)
    with pytest.raises(ms.HTTPStatusError, match="404"):
        ms.open_volume(f"nifti:{base}/missing.nii.gz")


def test_dicom_series_to_nifti_and_back(tmp_path):
    paths = write_series(tmp_path / "d", 9, orientation=oblique(), size=24)
    want, affine = expected_stack(paths), expected_affine(paths)  # pydicom, from the files
    vol = ms.open_volume(tmp_path / "d")
    saved = vol.save(tmp_path / "d.nii.gz")
    written = nib.load(str(saved))  # nibabel's reading of what was written
    assert np.array_equal(np.asarray(written.dataobj), want.transpose(2, 1, 0))
    np.testing.assert_allclose(written.affine, LPS_FROM_RAS @ affine, atol=1e-4)
    again = ms.open_volume(saved)
    assert np.array_equal(again.scalar_data, want)
    np.testing.assert_allclose(again.affine, affine, atol=1e-4)
    assert len(paths) == 9


def _png_jpeg(root: Path) -> np.ndarray:
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = np.arange(40, dtype=np.uint8)[None, :] * 6
    rgb[..., 1] = np.arange(30, dtype=np.uint8)[:, None] * 8
    rgb[5:10, 5:20, 2] = 255
    PILImage.fromarray(rgb).save(root / "a.png")
    PILImage.fromarray(rgb).save(root / "a.jpg", quality=95)
    PILImage.fromarray(rgb[..., 0]).save(root / "gray.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png at all")
    return rgb


def test_web_images_png_jpeg(web):
    root, base = web
    rgb = _png_jpeg(root)
    png = ms.load_image(f"{base}/a.png").result(10)
    assert png.color and png.get_pixel_data().dtype == np.uint8
    assert np.array_equal(png.get_pixel_data(), rgb)
    jpg = ms.load_and_cache_image(f"web:{base}/a.jpg").result(10)
    assert jpg.shape == (30, 40, 3)
    import imagecodecs  # an independent JPEG decoder (libjpeg-turbo build of its own)

    ref = imagecodecs.jpeg8_decode((root / "a.jpg").read_bytes())
    assert np.abs(jpg.get_pixel_data().astype(int) - ref).max() <= 1
    gray = ms.load_image(f"{base}/gray.png").result(10)
    assert gray.shape == (30, 40, 3) and np.array_equal(gray.get_pixel_data()[..., 1], rgb[..., 0])
    with pytest.raises(ms.DecodeError, match="broken.png"):
        ms.load_image(f"{base}/broken.png").result(10)
    with pytest.raises(ms.HTTPStatusError, match="404"):
        ms.load_image(f"{base}/none.png").result(10)


def test_web_image_cancel_aborts_the_request(web):
    _, base = web
    _Handler.stalled.clear()
    obj = ms.load_image(f"{base}/stall.png", timeout=60)
    deadline = time.monotonic() + 30
    while not _Handler.stalled and time.monotonic() < deadline:
        time.sleep(0.01)
    t0 = time.monotonic()
    obj.cancel()
    with pytest.raises(Exception) as err:
        obj.result(30)
    # A cancel takes milliseconds; the stalled body would take 10 s and the timeout 60 s. The
    # bound guards a cancel that waits for either, not speed.
    assert "Cancelled" in type(err.value).__name__ and time.monotonic() - t0 < 8
    deadline = time.monotonic() + 30
    while len(_Handler.stalled) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(_Handler.stalled) == 2, "the server did not see the connection close"

