"""Every transfer syntax and photometric interpretation, checked against independent decoders:
pydicom's own plugins, dcmtk, and the uncompressed originals of files transcoded here."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medstream as ms
from corpus import dcmtk_decompress, find, local_files, make_transcoded, psnr
from needs import IN_CI, require

warnings.filterwarnings("ignore", category=UserWarning)

ALL_SYNTAXES = {
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.53", "1.2.840.10008.1.2.4.55",
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
}


@pytest.fixture(scope="session")
def transcoded(tmp_path_factory):
    return make_transcoded(tmp_path_factory.mktemp("transcoded"))


def n_frames(ds) -> int:
    try:
        return int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1


def load_all(path: Path, prescale: bool = False) -> np.ndarray:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    n = n_frames(ds)
    ids = [ms.dicomfile_image_id(path, k if n > 1 else None) for k in range(1, n + 1)]
    objs = [ms.load_image(i, prescale=prescale) for i in ids]
    return np.stack([o.result(60).get_pixel_data() for o in objs])


def resaved(ds: pydicom.Dataset, dst: Path) -> Path:
    """The same elements and codestream rewritten explicit VR by pydicom (for dcmtk)."""
    for _ in ds:  # turn raw elements into typed ones (VR from the dictionary)
        pass
    ds.save_as(dst, implicit_vr=False, little_endian=True)
    return dst


def reference(path: Path, tmp: Path) -> np.ndarray | None:
    """Stored values (colour as RGB at its stored depth) from an independent decoder."""
    ds = pydicom.dcmread(path)
    ts = str(ds.file_meta.TransferSyntaxUID)
    source = ds
    if ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.53",
              "1.2.840.10008.1.2.4.55", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
              "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"):
        out = dcmtk_decompress(path, tmp / (path.stem + "_dcmtk.dcm"))
        if out is None:  # dcmtk cannot parse the container (SC_rgb_jpeg.dcm: an implicit VR
            out = dcmtk_decompress(resaved(ds, tmp / "resaved.dcm"), tmp / "dcmtk.dcm")  # body)
        if out is None:
            return None
        source = pydicom.dcmread(out)
    arr = source.pixel_array
    if n_frames(ds) == 1:
        arr = arr[None]
    pi = source.PhotometricInterpretation
    if pi == "PALETTE COLOR":
        if ts == "1.2.840.10008.1.2.2":  # pydicom reads big-endian LUT data byte-swapped
            subprocess.run(["dcmconv", "+te", str(path), str(tmp / "le.dcm")], check=True)
            source = pydicom.dcmread(tmp / "le.dcm")
        arr = pydicom.pixels.apply_color_lut(arr, source)
    elif arr.ndim == 4 and pi.startswith("YBR") and source is not ds:
        arr = pydicom.pixels.convert_color_space(arr, "YBR_FULL", "RGB")
    return arr


LOCAL = local_files()


@pytest.mark.parametrize("path", LOCAL, ids=[p.name for p in LOCAL])
def test_local_file_matches_independent_decoder(path, tmp_path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ts = str(ds.file_meta.TransferSyntaxUID)
    ours = load_all(path)
    ref = reference(path, tmp_path)
    if ref is None:
        require(False, f"no independent decoder for {ts} here")
    assert ours.shape == ref.shape
    lossy = ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
                   "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203")
    diff = np.abs(ours.astype(np.int64) - ref.astype(np.int64)).max()
    if lossy and ds.get("SamplesPerPixel", 1) == 3:
        # libjpeg-turbo and dcmtk's IJG code round the YCbCr->RGB upsampling differently.
        assert psnr(ours, ref, 255) > 35, f"{path.name}: max diff {diff}"
    else:
        assert diff == 0, f"{path.name} ({ts}): max diff {diff}"


def test_every_syntax_is_covered(transcoded):
    covered = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
               for p in LOCAL} | {t.syntax for t in transcoded}
    if IN_CI or shutil.which("dcmcjpeg"):
        assert ALL_SYNTAXES <= covered, sorted(ALL_SYNTAXES - covered)


def test_transcoded_against_source(transcoded, tmp_path):
    assert transcoded, "no transcoding tool found (install dcmtk and libgdcm-tools)"
    for t in transcoded:
        ours = load_all(t.path)
        src = load_all(t.source)
        assert ours.shape == src.shape, t
        if t.lossless:
            assert np.array_equal(ours, src), f"{t.path.name}: lossless decode differs from source"
        else:
            ds = pydicom.dcmread(t.source, stop_before_pixels=True)
            peak = 255 if ours.dtype == np.uint8 else 2 ** int(ds.BitsStored) - 1
            value = psnr(ours, src, peak)
            assert value > 30, f"{t.path.name}: PSNR {value:.1f} dB"
        ref = reference(t.path, tmp_path)
        if ref is not None and t.lossless:
            assert np.array_equal(ours, ref), f"{t.path.name}: differs from {t.tool}'s decoder"
        elif ref is not None:
            peak = 255 if ours.dtype == np.uint8 else float(ref.max() - ref.min())
            assert psnr(ours, ref, peak) > 40, f"{t.path.name}: far from dcmtk's decode"


def test_prescale_gives_hounsfield_units_in_int16():
    path = find("693_UNCI.dcm")
    img = ms.load_image(ms.dicomfile_image_id(path)).result(10)
    ds = pydicom.dcmread(path)
    hu = pydicom.pixels.apply_modality_lut(ds.pixel_array, ds)
    assert img.get_pixel_data().dtype == np.int16
    assert np.array_equal(img.get_pixel_data(), hu)
    assert img.slope == float(ds.RescaleSlope) and img.intercept == float(ds.RescaleIntercept)
    assert img.window_center is not None and img.window_width is not None
    raw = ms.load_image(ms.dicomfile_image_id(path), prescale=False).result(10)
    assert np.array_equal(raw.get_pixel_data(), ds.pixel_array)
    assert img.row_pixel_spacing == float(ds.PixelSpacing[0])
    assert img.transfer_syntax_uid == "1.2.840.10008.1.2.1"


def test_non_integral_rescale_gives_float32(tmp_path):
    ds = pydicom.dcmread(find("CT_small.dcm"))
    ds.RescaleSlope = 0.5
    ds.RescaleIntercept = -10.25
    p = tmp_path / "ct_float.dcm"
    ds.save_as(p)
    img = ms.load_image(ms.dicomfile_image_id(p)).result(10)
    assert img.get_pixel_data().dtype == np.float32
    np.testing.assert_allclose(img.get_pixel_data(), ds.pixel_array * 0.5 - 10.25, rtol=1e-6)


def test_monochrome1_invert_and_voi_defaults():
    img = ms.load_image(ms.dicomfile_image_id(find("RG1_UNCR.dcm"))).result(20)
    assert img.invert and img.photometric_interpretation == "MONOCHROME1"
    mr = ms.load_image(ms.dicomfile_image_id(find("MR_small.dcm"))).result(10)
    assert not mr.invert
    assert mr.window_width > 0
    assert mr.min_pixel_value == float(mr.get_pixel_data().min())


def test_color_variants_are_rgb_at_stored_depth():
    for name in ("color-pl.dcm", "color-px.dcm", "SC_ybr_full_422_uncompressed.dcm",
                 "SC_ybr_full_uncompressed.dcm", "OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm",
                 "US1_J2KR.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_rle_16bit.dcm"):
        img = ms.load_image(ms.dicomfile_image_id(find(name))).result(20)
        px = img.get_pixel_data()
        ds = pydicom.dcmread(find(name), stop_before_pixels=True)
        lut = ds.get("RedPaletteColorLookupTableDescriptor")
        depth = int(lut[2]) if lut else int(ds.BitsAllocated)  # palette entries, or samples
        want = np.uint8 if depth == 8 else np.uint16
        assert img.color and px.dtype == want and px.shape == (img.rows, img.columns, 3), name
        assert img.photometric_interpretation == "RGB"
    pl = ms.load_image(ms.dicomfile_image_id(find("color-pl.dcm"))).result(10).get_pixel_data()
    px = ms.load_image(ms.dicomfile_image_id(find("color-px.dcm"))).result(10).get_pixel_data()
    assert np.array_equal(pl, px)  # planar and interleaved copies of one image


def test_float_pixel_data(tmp_path):
    ds = pydicom.dcmread(find("CT_small.dcm"))
    arr = (np.arange(128 * 128, dtype=np.float32).reshape(128, 128) / 7).astype(np.float32)
    del ds.PixelData
    ds.FloatPixelData = arr.tobytes()
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    for k in ("RescaleSlope", "RescaleIntercept"):
        if k in ds:
            delattr(ds, k)
    p = tmp_path / "float.dcm"
    ds.save_as(p)
    img = ms.load_image(ms.dicomfile_image_id(p)).result(10)
    assert img.get_pixel_data().dtype == np.float32
    assert np.array_equal(img.get_pixel_data(), arr)


def test_multiframe_frames_and_range():
    path = find("emri_small.dcm")
    ds = pydicom.dcmread(path)
    ref = ds.pixel_array
    for k in (1, 5, 10):
        img = ms.load_image(ms.dicomfile_image_id(path, k), prescale=False).result(10)
        assert np.array_equal(img.get_pixel_data(), ref[k - 1])
    with pytest.raises(ms.ImageLoadError, match="frame 11 out of range 1..10"):
        ms.load_image(ms.dicomfile_image_id(path, 11)).result(10)


def test_enhanced_ct_per_frame_metadata():
    path = find("eCT_Supplemental.dcm")
    ids = [ms.dicomfile_image_id(path, k) for k in (1, 2)]
    for i in ids:
        ms.load_image(i).result(10)
    p1 = ms.metadata.get("imagePlaneModule", ids[0])
    p2 = ms.metadata.get("imagePlaneModule", ids[1])
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    exp = [float(x) for x in ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient]
    assert p2["image_position_patient"] == exp
    assert p1["image_position_patient"] != p2["image_position_patient"]
    assert p1["image_orientation_patient"] is not None and p1["pixel_spacing"] is not None
    assert ms.metadata.get("multiframe_module", ids[1])["number_of_frames"] == 2


def test_metadata_modules_recorded():
    path = find("CT_small.dcm")
    iid = ms.dicomfile_image_id(path)
    ms.load_image(iid).result(10)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for module in ("imagePlaneModule", "imagePixelModule", "generalSeriesModule",
                   "generalStudyModule", "patientModule", "modalityLutModule", "voiLutModule",
                   "multiframeModule", "sopCommonModule", "transferSyntax"):
        assert ms.metadata.get(module, iid) is not None, module
    plane = ms.metadata.get("imagePlaneModule", iid)
    assert plane["image_position_patient"] == [float(x) for x in ds.ImagePositionPatient]
    assert plane["slice_thickness"] == float(ds.SliceThickness)
    assert ms.metadata.get("generalSeriesModule", iid)["modality"] == "CT"
    assert ms.metadata.get("transferSyntax", iid)["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"
    assert ms.metadata.get("patientModule", iid)["patient_id"] == str(ds.PatientID)


def test_errors_are_typed_and_name_the_image(tmp_path):
    ct = find("CT_small.dcm")
    data = ct.read_bytes()
    cases = {}
    (tmp_path / "random.dcm").write_bytes(os.urandom(4000))
    cases["random.dcm"] = ms.DicomParseError
    (tmp_path / "trunc_header.dcm").write_bytes(data[:300])
    cases["trunc_header.dcm"] = (ms.DicomParseError, ms.MissingPixelDataError)
    (tmp_path / "trunc_pixels.dcm").write_bytes(data[: len(data) - 5000])
    cases["trunc_pixels.dcm"] = (ms.DecodeError, ms.DicomParseError, ms.MissingPixelDataError)
    ds = pydicom.dcmread(ct)
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    cases["nopixels.dcm"] = ms.MissingPixelDataError
    ds = pydicom.dcmread(ct)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    ds.save_as(tmp_path / "weird_syntax.dcm")
    cases["weird_syntax.dcm"] = (ms.UnsupportedTransferSyntaxError, ms.DicomParseError)
    ds = pydicom.dcmread(find("MR_small_jp2klossless.dcm"))
    from pydicom.encaps import encapsulate
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + os.urandom(200)])
    ds.save_as(tmp_path / "corrupt_j2k.dcm")
    cases["corrupt_j2k.dcm"] = ms.DecodeError
    ds = pydicom.dcmread(ct)
    ds.Rows = 0
    ds.save_as(tmp_path / "zero_rows.dcm")
    cases["zero_rows.dcm"] = ms.MissingPixelDataError
    cases["missing.dcm"] = ms.ImageLoadError
    for name, exc in cases.items():
        iid = ms.dicomfile_image_id(tmp_path / name)
        with pytest.raises(exc) as ei:
            ms.load_image(iid).result(10)
        assert iid in str(ei.value), (name, str(ei.value))
        assert isinstance(ei.value, ms.ImageLoadError)


def test_unsupported_syntax_names_uid(tmp_path):
    ds = pydicom.dcmread(find("MR_small_jp2klossless.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no image decoder
    p = tmp_path / "mpeg.dcm"
    ds.save_as(p)
    with pytest.raises(ms.UnsupportedTransferSyntaxError) as ei:
        ms.load_image(ms.dicomfile_image_id(p)).result(10)
    assert "1.2.840.10008.1.2.4.100" in str(ei.value)


def test_decoder_registry_fallback_plugin():
    uid = "1.2.840.10008.1.2.5"
    assert ms.decoders.plugins(uid)[0] == "imagecodecs"

    def broken(data, info):
        raise RuntimeError("disabled")

    ms.decoders.register(uid, "imagecodecs-broken", broken, priority=0)
    try:
        img = ms.load_image(ms.dicomfile_image_id(find("MR_small_RLE.dcm")), prescale=False).result(10)
        ref = pydicom.dcmread(find("MR_small.dcm")).pixel_array
        assert np.array_equal(img.get_pixel_data(), ref)
    finally:
        ms.decoders.unregister(uid, "imagecodecs-broken")


def test_fast_header_values_equal_pydicom_conversion(monkeypatch):
    """The raw-value fast path of the header scan gives the same modules as pydicom's own
    conversion, on every bundled file (implicit/explicit/big endian, enhanced, multi-frame)."""
    from medstream.dicom import modules as mod

    checked = 0
    for path in local_files():
        fast_ds = pydicom.dcmread(path, defer_size=2048)
        slow_ds = pydicom.dcmread(path, defer_size=2048)
        n = int(fast_ds.get("NumberOfFrames") or 1)
        for frame in {0, n - 1}:
            fast = mod.build_modules(fast_ds, frame)
            with monkeypatch.context() as m:
                m.setattr(mod, "fast_get", lambda ds, kw: ds.get(kw))
                slow = mod.build_modules(slow_ds, frame)
            assert fast == slow, path.name
            checked += 1
    assert checked > 100


def test_decoder_plugins_registered_before_any_thread_sees_them(monkeypatch):
    """Many worker threads asking at once must all see the built-in plugins (a race here once
    made the first frames of a parallel load fail as 'unsupported transfer syntax')."""
    import concurrent.futures

    from medstream.codecs import registry

    monkeypatch.setattr(registry, "_builtin_loaded", False)
    monkeypatch.setattr(registry.decoders, "_by_syntax", {})
    barrier = threading.Barrier(8)

    def ask(_):
        barrier.wait()
        return registry.decoders.can_decode("1.2.840.10008.1.2.4.80")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(ask, range(8)))


def test_frames_after_a_header_scan_equal_a_full_parse():
    """After a scan, frames are read from the located bytes (one frame's bytes for native
    multi-frame files); every frame must equal the full-parse path."""
    from medstream.dicom.part10 import decode_parsed_frame, parse_part10
    from medstream.loaders.dicomfile import load_sync, read_file_header

    checked = 0
    for name in ("emri_small.dcm", "emri_small_big_endian.dcm", "emri_small_jpeg_2k_lossless.dcm",
                 "SC_rgb_2frame.dcm", "CT_small.dcm", "693_J2KR.dcm"):
        path = find(name)
        ids, _ = read_file_header(str(path))
        parsed = parse_part10(ids[0], str(path))
        for k, image_id in enumerate(ids, start=1):
            fast = load_sync(image_id).get_pixel_data()
            full = decode_parsed_frame(image_id, parsed, k, True).get_pixel_data()
            assert np.array_equal(fast, full), image_id
            checked += 1
    assert checked >= 20
