"""Pixel values on real scanner files, checked against independent decoders (pydicom, dcmtk):
unused high bits, header-derived dtypes, colour depth and big-endian palettes, retired JPEG
syntaxes, and the smaller defects of issue 11 (empty Modality LUT, missing preamble, float64
rescale, invalid NumberOfFrames). Synthetic files (written with pydicom) only where no real file
shows the case."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

import medstream as ms
from corpus import PYDICOM_DIR, find, qa
from medstream.codecs.registry import decoders
from medstream.loaders import dicomfile
from medstream.render import image_to_uint8

CT2 = PYDICOM_DIR / "dicomdirtests" / "77654033" / "CT2"


def bits12(name: str) -> Path:
    return qa("bits-12", name)


def load(path: Path, prescale: bool = True, frame: int | None = None) -> ms.Image:
    return ms.load_image(ms.dicomfile_image_id(path, frame), prescale=prescale).result(30)


def stored_high_bits(path: Path) -> int:
    """The largest raw 16-bit word in the file's pixel data (before any masking)."""
    ds = pydicom.dcmread(path)
    return int(np.frombuffer(ds.PixelData, "<u2").max())


def dcmtk(tool: str, *args: Path | str) -> None:
    assert shutil.which(tool), f"{tool} (dcmtk) is needed: .ci/run installs it"
    subprocess.run([tool, *map(str, args)], check=True, capture_output=True, timeout=120)


# -- 3. unused high bits --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["12bitUnsigned_0x0F0F.dcm", "12bitUnsigned.dcm",
                                  "12bitSigned_0x0F0F.dcm"])
def test_bits_above_bits_stored_are_ignored(name):
    path = bits12(name)
    ref = pydicom.dcmread(path).pixel_array  # pydicom masks / sign-extends from BitsStored
    for prescale in (False, True):
        px = load(path, prescale=prescale).get_pixel_data()
        assert px.dtype == ref.dtype and np.array_equal(px, ref), (name, prescale)
    if "Unsigned" in name:
        assert stored_high_bits(path) > 4095  # the file really has them set
        assert ref.max() <= 4095


def test_unused_bits_masked_on_every_decoder_path(tmp_path, monkeypatch):
    src = bits12("12bitUnsigned_0x0F0F.dcm")
    truth = pydicom.dcmread(src).pixel_array
    rle = tmp_path / "rle.dcm"
    dcmtk("dcmcrle", src, rle)  # RLE keeps all 16 bits of each word, high bits included
    assert str(pydicom.dcmread(rle).file_meta.TransferSyntaxUID) == RLELossless
    assert np.array_equal(load(rle, prescale=False).get_pixel_data(), truth)  # imagecodecs

    ms.purge_cache()
    plugins = [p for p in decoders._by_syntax[RLELossless] if p.name == "pydicom"]
    monkeypatch.setitem(decoders._by_syntax, RLELossless, plugins)
    assert np.array_equal(load(rle, prescale=False).get_pixel_data(), truth)  # pydicom fallback


def test_unused_bits_masked_on_the_multiframe_fast_path(tmp_path):
    src = pydicom.dcmread(bits12("12bitUnsigned_0x0F0F.dcm"))
    truth = src.pixel_array
    ds = src.copy()
    ds.NumberOfFrames = 2
    ds.PixelData = src.PixelData + bytes(src.PixelData)[::-1]  # frame 2: byte-reversed words
    path = tmp_path / "two_frames.dcm"
    ds.save_as(path)
    frames = pydicom.dcmread(path).pixel_array
    assert np.array_equal(frames[0], truth)
    dicomfile.read_file_header(str(path))  # records the locator the fast path reads from
    for k in (1, 2):
        image_id = ms.dicomfile_image_id(path, k)
        img = dicomfile._fast_path(image_id, str(path.resolve()), k, False)
        assert img is not None, "the fast path was not taken"
        assert np.array_equal(img.get_pixel_data(), frames[k - 1]), k


def test_masking_copies_only_when_it_must():
    path = find("emri_small.dcm")  # 12 bits stored, high bits clear
    parsed = dicomfile.parse_part10("x", path)
    raw, _ = decoders.decode("x", parsed.pixel_bytes, parsed.info, 0)
    assert np.shares_memory(raw, np.frombuffer(parsed.pixel_bytes, np.uint8))  # still a view
    dirty = dicomfile.parse_part10("y", bits12("12bitUnsigned_0x0F0F.dcm"))
    writable = bytearray(dirty.pixel_bytes)
    raw, _ = decoders.decode("y", writable, dirty.info, 0)
    assert np.shares_memory(raw, np.frombuffer(writable, np.uint8)) and raw.max() <= 4095


# -- 4. the dtype follows from the header ---------------------------------------------------------
def test_ct_slices_get_hounsfield_int16_whatever_their_values():
    files = sorted(CT2.iterdir())
    assert len(files) == 4
    for path in files:  # 16-bit signed, intercept -1024: slices 2-4 have no negative HU
        ds = pydicom.dcmread(path)
        img = load(path)
        assert img.get_pixel_data().dtype == np.int16, path.name
        assert np.array_equal(img.get_pixel_data(), apply_modality_lut(ds.pixel_array, ds))


def test_ct_series_volume_is_int16_and_exact(tmp_path):
    for f in CT2.iterdir():
        shutil.copy(f, tmp_path / f.name)
    vol = ms.open_volume(str(tmp_path), spacing="keep")
    assert vol.dtype == np.int16
    for k, image_id in enumerate(vol.geometry.image_ids):
        ds = pydicom.dcmread(dicomfile.parse_image_id(image_id)[0])
        assert np.array_equal(vol.scalar_data[k], apply_modality_lut(ds.pixel_array, ds))


def _ct_series(tmp_path: Path, stored: list[int]) -> list[Path]:
    """A 3-slice CT (16-bit unsigned, intercept -1024) from CT_small; slice k is filled with
    ``stored[k]``."""
    src = pydicom.dcmread(find("CT_small.dcm"))
    paths = []
    for k, value in enumerate(stored):
        ds = src.copy()
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = -1024
        ds.ImagePositionPatient = [0, 0, float(k)]
        ds.InstanceNumber = k + 1
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.PixelData = np.full((ds.Rows, ds.Columns), value, np.uint16).tobytes()
        paths.append(tmp_path / f"s{k}.dcm")
        ds.save_as(paths[-1])
    return paths


def test_volume_never_changes_dtype_mid_load(tmp_path):
    paths = _ct_series(tmp_path, [1000, 3000, 65535])  # 64511 HU cannot be int16
    ids = [ms.dicomfile_image_id(p) for p in paths]
    vol = ms.open_volume(ids, load=False)
    assert vol.dtype == np.int16  # from the headers, before any pixel
    early = vol.scalar_data
    with pytest.raises(ms.VolumeError) as err:
        vol.load().result(60)
    assert vol.scalar_data is early  # the reference taken before the load saw every slice
    assert "do not fit int16" in str(err.value) and "s2.dcm" in str(err.value)
    assert (early[0] == -24).all() and (early[1] == 1976).all()
    with pytest.raises(ms.PixelRangeError, match="do not fit int16"):
        ms.load_image(ids[2]).result(30)


def test_image_dtype_depends_on_the_header_only(tmp_path):
    low, high = _ct_series(tmp_path, [0, 4000, 0])[:2]
    assert load(low).get_pixel_data().dtype == load(high).get_pixel_data().dtype == np.int16
    mr = pydicom.dcmread(bits12("12bitUnsigned.dcm"))
    mr.RescaleSlope, mr.RescaleIntercept = 1, -100  # 12-bit unsigned, intercept -100 -> int16
    p = tmp_path / "mr.dcm"
    mr.save_as(p)
    img = load(p)
    assert img.get_pixel_data().dtype == np.int16
    assert np.array_equal(img.get_pixel_data(), mr.pixel_array.astype(np.int16) - 100)


# -- 5. colour ------------------------------------------------------------------------------------
def _palette_truth(path: Path, tmp_path: Path) -> np.ndarray:
    """dcmtk rewrites the file little endian (swapping OW LUT words), pydicom applies the LUT."""
    le = tmp_path / (path.stem + "_le.dcm")
    dcmtk("dcmconv", "+te", path, le)
    ds = pydicom.dcmread(le)
    return apply_color_lut(ds.pixel_array, ds)


@pytest.mark.parametrize("name", ["OBXXXX1A_expb.dcm", "OBXXXX1A_expb_2frame.dcm"])
def test_big_endian_palette_colour(name, tmp_path):
    path = find(name)
    truth = _palette_truth(path, tmp_path)
    n = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames") or 1)
    ours = np.stack([load(path, frame=k if n > 1 else None).get_pixel_data()
                     for k in range(1, n + 1)])
    assert np.array_equal(ours, truth.reshape(ours.shape)) and truth.max() > 0
    little = load(find("OBXXXX1A.dcm")).get_pixel_data()  # the little-endian copy
    assert np.array_equal(ours[0], little)


@pytest.mark.parametrize("name", ["SC_rgb_16bit.dcm", "SC_rgb_expb_16bit.dcm",
                                  "SC_rgb_32bit.dcm", "SC_rgb_expb_32bit.dcm",
                                  "SC_rgb_16bit_2frame.dcm"])
def test_deep_rgb_keeps_its_depth(name):
    path = find(name)
    ref = pydicom.dcmread(path).pixel_array
    ref = ref.astype(ref.dtype.newbyteorder("="))  # pydicom keeps big-endian files '>u2'
    n = int(pydicom.dcmread(path, stop_before_pixels=True).get("NumberOfFrames") or 1)
    ours = np.stack([load(path, frame=k if n > 1 else None).get_pixel_data()
                     for k in range(1, n + 1)])
    assert ours.dtype == ref.dtype and ours.dtype in (np.uint16, np.uint32)
    assert np.array_equal(ours, ref.reshape(ours.shape))
    assert ours.max() > 255


def test_deep_rgb_renders_from_its_full_range():
    img = load(find("SC_rgb_16bit.dcm"))
    shown = image_to_uint8(img)
    expected = (img.get_pixel_data() / 65535 * 255 + 0.5).astype(np.uint8)
    assert shown.dtype == np.uint8 and np.abs(shown.astype(int) - expected).max() <= 1


def test_16bit_rgb_volume_is_uint16(tmp_path):
    src = pydicom.dcmread(find("SC_rgb_16bit.dcm"))
    ids = []
    for k in range(3):
        ds = src.copy()
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, k], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SOPInstanceUID = [1, 1], pydicom.uid.generate_uid()
        ds.save_as(tmp_path / f"c{k}.dcm")
        ids.append(ms.dicomfile_image_id(tmp_path / f"c{k}.dcm"))
    vol = ms.open_volume(ids)
    assert vol.dtype == np.uint16 and np.array_equal(vol.scalar_data[1], src.pixel_array)


# -- 8. retired JPEG syntaxes ---------------------------------------------------------------------
@pytest.mark.parametrize("option,syntax", [("+es", "1.2.840.10008.1.2.4.53"),
                                           ("+ep", "1.2.840.10008.1.2.4.55")])
def test_retired_12bit_jpeg_matches_dcmdjpeg(option, syntax, tmp_path):
    src = bits12("12bitUnsigned_0x0F0F.dcm")
    enc, dec = tmp_path / "enc.dcm", tmp_path / "dec.dcm"
    dcmtk("dcmcjpeg", option, src, enc)
    ds = pydicom.dcmread(enc, stop_before_pixels=True)
    assert str(ds.file_meta.TransferSyntaxUID) == syntax and ds.BitsStored == 12
    dcmtk("dcmdjpeg", enc, dec)
    truth = pydicom.dcmread(dec).pixel_array
    ours = load(enc, prescale=False).get_pixel_data()
    assert ours.dtype == np.uint16 and np.array_equal(ours, truth) and truth.max() > 255


# -- 9. smaller defects ---------------------------------------------------------------------------
def test_empty_modality_lut_is_ignored_with_a_warning(tmp_path):
    ds = pydicom.dcmread(bits12("12bitUnsigned_0x0F0F.dcm"))
    ds.ModalityLUTSequence = [Dataset()]  # as in pylibjpeg-data JPEGLosslessP14SV1_1s_1f_u_16_16
    path = tmp_path / "empty_lut.dcm"
    ds.save_as(path)
    with pytest.warns(UserWarning, match="empty Modality LUT Sequence ignored"):
        img = load(path)
    assert np.array_equal(img.get_pixel_data(), ds.pixel_array)


def test_a_real_modality_lut_is_applied():
    path = find("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    px = load(path).get_pixel_data()
    assert np.array_equal(px, apply_modality_lut(ds.pixel_array, ds)) and px.dtype.kind in "ui"


def test_file_without_preamble_is_read_with_a_warning():
    path = find("OT-PAL-8-face.dcm")  # pydicom's test set: no preamble, no 'DICM', no meta
    with open(path, "rb") as f:
        assert f.read(132)[128:] != b"DICM"
    ds = pydicom.dcmread(path, force=True)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    truth = apply_color_lut(ds.pixel_array, ds)
    with pytest.warns(UserWarning, match="no DICOM preamble"):
        px = load(path).get_pixel_data()
    assert np.array_equal(px, truth)


def test_file_without_preamble_or_image_is_still_refused():
    with pytest.raises(ms.DicomParseError, match="not a DICOM Part 10 object"):
        load(find("no_meta.dcm"))  # an RT plan without the prefix: not an image


def test_non_integral_rescale_is_computed_in_float64():
    path = find("MR2_UNCR.dcm")  # RescaleSlope 3.774114, RescaleIntercept 0.000061
    ds = pydicom.dcmread(path)
    truth = apply_modality_lut(ds.pixel_array, ds)  # float64
    px = load(path).get_pixel_data()
    assert px.dtype == np.float32
    assert np.array_equal(px, truth.astype(np.float32))


def test_invalid_number_of_frames_is_an_error(tmp_path):
    ds = pydicom.dcmread(bits12("12bitUnsigned.dcm"))
    ds.add_new("NumberOfFrames", "IS", "1")
    path = tmp_path / "frames_1A.dcm"
    ds.save_as(path)
    raw = path.read_bytes().replace(b"IS\x02\x001 ", b"IS\x02\x001A")
    assert raw != path.read_bytes()
    path.write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own "Invalid value for VR IS"
        with pytest.raises(ms.DicomParseError, match="invalid NumberOfFrames '1A'"):
            load(path)
        with pytest.raises(ms.DicomParseError, match="'1A'"):
            dicomfile.read_file_header(str(path))


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("slope", [1, 2], ids=["slope1", "slope2"])
def test_volume_fast_path_fixes_high_bits_and_rescales_like_pydicom(tmp_path, signed, slope):
    """Slices written straight into the volume (no per-slice Image) must equal pydicom's
    masked or sign-extended 12-bit values with the rescale applied, high bits set or not."""
    from pydicom.pixels import apply_modality_lut

    from series import write_series

    paths = write_series(tmp_path / "s", 6, size=16)
    rng = np.random.default_rng(7)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = slope, -1024
        low = rng.integers(0, 4096, (16, 16), dtype=np.uint16)
        garbage = rng.integers(0, 16, (16, 16), dtype=np.uint16) << 12  # overlay-like bits
        ds.PixelData = (low | garbage).astype(np.uint16).tobytes()
        ds.save_as(path)
    volume = ms.open_volume(tmp_path / "s")
    dss = sorted((pydicom.dcmread(p) for p in paths),
                 key=lambda d: float(d.ImagePositionPatient[2]))
    want = np.stack([apply_modality_lut(d.pixel_array, d) for d in dss])  # pydicom masks bits
    assert np.array_equal(np.asarray(volume).astype(np.float64), want)
    single = ms.load_image(ms.dicomfile_image_id(dss[0].filename)).result(10)
    assert np.array_equal(volume.scalar_data[0], single.pixel_data)  # = the per-image path
