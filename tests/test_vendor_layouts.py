"""Real scanner layouts against dcm2niix: enhanced multi-frame holding several volumes, 4D
enhanced series, Siemens MOSAIC in every orientation and codec, UIH VFRAME mosaics; plus
synthetic cases for the rules behind them (numeric frame order, 4D numbering, slice step,
unknown position). References come from dcm2niix and pydicom, never from medstream."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import medstream as ms
from corpus import qa
from needs import need_tool
from series import write_series



def dcm2niix(folder: Path, out: Path) -> list[nib.Nifti1Image]:
    """dcm2niix's volumes (as closest-canonical images), in its own file-name order."""
    need_tool("dcm2niix", "dcm2niix")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcm2niix", "-b", "n", "-z", "n", "-f", "%s_%e_%z", "-o", str(out),
                    str(folder)], check=True, capture_output=True, timeout=120)
    return [nib.as_closest_canonical(nib.load(str(p))) for p in sorted(out.glob("*.nii"))]


def canonical(volume) -> nib.Nifti1Image:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nib.as_closest_canonical(volume.to_nifti())


def assert_same_volume(ours: nib.Nifti1Image, ref: nib.Nifti1Image, scaled: float = 0.0) -> None:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)  # the goal: 1e-3 mm
    if scaled:  # dcm2niix stores raw values + scl_slope; compare real-world values
        np.testing.assert_allclose(np.asarray(ours.dataobj, dtype=np.float64), ref.get_fdata(),
                                   rtol=0, atol=scaled)
    else:
        assert np.array_equal(np.asarray(ours.dataobj), np.asarray(ref.dataobj))


MOSAICS = [("ax", "axasc35"), ("ax", "axdesc36"), ("ax", "axint35"), ("cor", "corasc36"),
           ("cor", "cordesc35"), ("sag", "sagasc35"), ("sag", "sagint36"),
           ("axmb", "AxAsc36mb2a"),  # JPEG lossless mosaics
           ("axmb", "AxInt36mb")]     # JPEG 2000 mosaics


@pytest.mark.parametrize("where", MOSAICS, ids=["/".join(m) for m in MOSAICS])
def test_siemens_mosaic_is_split_into_true_slices(tmp_path, where):
    folder = qa("siemens-mosaic", *where)
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    assert ref.ndim == 4
    scan = ms.scan_folder(folder)
    assert len(scan) == ref.shape[3] and len({s.n_images for s in scan}) == 1  # a stack a mosaic
    for t in range(ref.shape[3]):
        vol = ms.open_volume(folder, series=t)
        frame = nib.Nifti1Image(np.asarray(ref.dataobj)[..., t], ref.affine)
        assert_same_volume(canonical(vol), frame)
    dyn = ms.open_volume(folder, dynamic=True)
    assert dyn.shape[0] == ref.shape[3]
    assert_same_volume(canonical(dyn), ref)


def test_uih_vframe_mosaics_make_a_4d_dti_series(tmp_path):
    folder = qa("uih-vframe", "dti_tra_dir16_AP_SaveBySlc__140028")
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    dyn = ms.open_volume(folder, dynamic=True)
    assert dyn.shape == (17, 20, 64, 64)
    assert_same_volume(canonical(dyn), ref)
    # Each tile's position comes from the vendor's per-slice sequence, not the missing IPP.
    first = ms.scan_folder(folder).series[0]
    assert first.geometry is not None and first.geometry.regular


def test_philips_enhanced_magnitude_and_field_map_are_not_mixed(tmp_path):
    path = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    refs = dcm2niix(path.parent, tmp_path / "ref")  # magnitude, then the field map
    assert len(refs) == 2
    scan = ms.scan_folder(path.parent)
    assert [s.n_images for s in scan] == [32, 32]
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    for part, ref in zip(scan, refs):
        frames = [int(i.rsplit("=", 1)[1]) for i in part.image_ids]
        groups = [ds.PerFrameFunctionalGroupsSequence[f - 1] for f in frames]
        assert len({g.MRImageFrameTypeSequence[0].FrameType[3] for g in groups}) == 1
        vol = ms.open_volume(path.parent, series=part.key)
        # Pixels: pydicom's stored values with each frame's own rescale (per-frame group).
        expected = np.stack([stored[f - 1] * float(g.PixelValueTransformationSequence[0].RescaleSlope)
                             + float(g.PixelValueTransformationSequence[0].RescaleIntercept)
                             for f, g in zip(frames, groups)])
        np.testing.assert_allclose(vol.scalar_data, expected, rtol=1e-6, atol=1e-4)
        # Geometry: dcm2niix (its magnitude uses Philips' private scaling, so voxels differ).
        ours = canonical(vol)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    # dcm2niix's field map: the same values, up to its slope rounded to float32 in the header.
    assert_same_volume(canonical(ms.open_volume(path.parent, series=1)), refs[1], scaled=0.01)
    # Asking for one volume of all 64 frames is refused with the keys that differ.
    with pytest.raises(ms.GeometryError, match="2 different acquisitions"):
        ms.open_volume([ms.dicomfile_image_id(path, k) for k in range(1, 65)])


def test_siemens_enhanced_4d_in_temporal_order(tmp_path):
    folder = qa("enhanced-4d", "Siemens", "XA10")
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    dyn = ms.open_volume(folder, dynamic=True)
    assert dyn.shape == (4, 6, 64, 64)
    assert_same_volume(canonical(dyn), ref)
    dyn.save(tmp_path / "dyn.nii.gz")
    assert nib.load(tmp_path / "dyn.nii.gz").shape == (64, 64, 6, 4)


def test_frames_are_ranked_as_numbers_not_strings():
    """Two stacks at the same 6 positions, told apart by nothing but frame order: frame 10 must
    follow frame 9 (as text "?frame=10" sorts before "?frame=4")."""
    slices = [ms.SliceInfo(f"dicomfile:/x.dcm?frame={f}", 4, 4, position=(0, 0, float((f - 1) % 6)),
                           frame_number=f) for f in range(1, 13)]
    stacks = ms.split_series(slices)
    assert [[s.frame_number for s in st] for st in stacks] == [list(range(1, 7)), list(range(7, 13))]


def test_4d_classic_series_are_numbered_in_acquisition_order(tmp_path):
    uid = "1.2.3.44"
    times = (1, 2, 3, 10, 11, 12)  # acquisition numbers whose text order differs
    for t in times:
        write_series(tmp_path / "fmri", 4, size=8, series_uid=uid, study_uid="1.2.3.45", name_prefix=f"T{t:02d}_",
                     frame_of_reference="1.2.3.9", extra={"AcquisitionNumber": t})
    scan = ms.scan_folder(tmp_path / "fmri")
    assert [s.key.rsplit("#", 1)[1] for s in scan] == ["1", "2", "3", "4", "5", "6"]
    prefixes = [{Path(i.split(":", 1)[1]).name[:4] for i in s.image_ids} for s in scan]
    assert prefixes == [{f"T{t:02d}_"} for t in times]
    dyn = ms.open_volume(tmp_path / "fmri", dynamic=True)
    assert dyn.shape == (6, 4, 8, 8)
    for t, part in enumerate(scan):
        np.testing.assert_array_equal(dyn.scalar_data[t], ms.open_volume(part.image_ids).scalar_data)


def test_volumes_are_not_ordered_by_a_key_that_varies_inside_a_volume(tmp_path):
    """Philips DTI: AcquisitionNumber differs between the slices of one volume, so the volume
    whose lowest-numbered slice happened to have the smallest number came first (the b=0 volume
    came 16th). Volumes follow InstanceNumber there, as dcm2niix's volumes and bvals do."""
    acquisition = {0: [3, 4, 5, 6], 1: [1, 2, 7, 8], 2: [2, 3, 9, 10]}  # per volume, per slice
    b_values = {0: 0, 1: 1000, 2: 500}
    uid = "1.2.3.77"
    for v in range(3):
        paths = write_series(tmp_path / "dti", 4, size=8, series_uid=uid, study_uid="1.2.3.78",
                             name_prefix=f"V{v}_", frame_of_reference="1.2.3.9")
        for k, path in enumerate(paths):
            ds = pydicom.dcmread(path)
            ds.InstanceNumber = v * 4 + k + 1
            ds.AcquisitionNumber = acquisition[v][k]
            ds.DiffusionBValue = b_values[v]
            ds.save_as(path)
    dyn = ms.open_volume(tmp_path / "dti", dynamic=True)
    assert dyn.shape == (3, 4, 8, 8)
    firsts = [pydicom.dcmread(str(vol.image_ids[0]).split(":", 1)[1]) for vol in dyn.time_points]
    assert [int(ds.DiffusionBValue) for ds in firsts] == [0, 1000, 500]


def test_slice_step_is_first_to_last_not_rounded_neighbours(tmp_path):
    """Headers round positions (here to 3 decimals); the step from first to last over n-1 keeps
    every slice within 1e-3 mm of its header, the median of rounded neighbour steps does not."""
    step = 3.0 + 1 / 3
    paths = write_series(tmp_path / "s", 40, size=8, offsets=[round(k * step, 3) for k in range(40)])
    vol = ms.open_volume(tmp_path / "s")
    g = vol.geometry
    assert g.regular
    for k, image_id in enumerate(vol.image_ids):
        ipp = ms.metadata.get("imagePlaneModule", image_id)["image_position_patient"]
        np.testing.assert_allclose((g.affine @ [0, 0, k, 1])[:3], ipp, atol=1e-3)
    assert abs(g.spacing[2] - step) < 1e-4
    assert len(paths) == 40


def test_image_without_position_warns_and_writes_unknown_space(tmp_path):
    (path,) = write_series(tmp_path / "np", 1, size=8)
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path)
    with pytest.warns(ms.GeometryWarning, match="no ImagePositionPatient"):
        vol = ms.open_volume(str(path))
    assert vol.geometry.position_known is False
    img = vol.to_nifti()
    assert int(img.header["sform_code"]) == 0 and int(img.header["qform_code"]) == 0


def test_irregular_volume_is_not_saved_as_one_nifti(tmp_path):
    write_series(tmp_path / "gap", offsets=[0, 2, 4, 8, 10], size=8)
    with pytest.raises(ms.GeometryError, match="spacing='resample'"):
        ms.open_volume(tmp_path / "gap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = ms.open_volume(tmp_path / "gap", spacing="keep")
    with pytest.raises(ms.GeometryError, match="cannot be written as one NIfTI"):
        kept.save(tmp_path / "kept.nii.gz")
    kept.save(tmp_path / "kept.npz")  # true positions travel with the array
    np.testing.assert_allclose(np.load(tmp_path / "kept.npz")["positions"][:, 2], [40, 42, 44, 48, 50])


def _enhanced_mr(path: Path, frames: list[tuple[int, float, int]]) -> np.ndarray:
    """An Enhanced MR file, written with pydicom: one frame per (stack slice, echo time, value),
    in the given (interleaved) order, with per-frame positions and MR echo items only."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4.1", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.FrameOfReferenceUID, ds.Modality = generate_uid(), "MR"
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.NumberOfFrames = len(frames)
    shared = Dataset()
    orient, measures = Dataset(), Dataset()
    orient.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing, measures.SliceThickness = [1, 1], 2
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orient], [measures]
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for z, te, _ in frames:
        item, pos, echo = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [0, 0, 2.0 * z]
        echo.EffectiveEchoTime = te
        item.PlanePositionSequence, item.MREchoSequence = [pos], [echo]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    pixels = np.stack([np.full((4, 4), v, np.uint16) for *_, v in frames])
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pixels


def test_synthetic_enhanced_echoes_interleaved_are_split_by_echo_time(tmp_path):
    # 12 frames: 6 slices x 2 echoes, echoes alternating; the value says (echo, slice).
    frames = [(z, te, int(te) * 100 + z) for z in range(6) for te in (10.0, 30.0)]
    _enhanced_mr(tmp_path / "echo.dcm", frames)
    scan = ms.scan_folder(tmp_path)
    assert [s.n_images for s in scan] == [6, 6]
    for part, te in zip(scan, (10, 30)):  # echo order, each echo alone
        vol = ms.open_volume(tmp_path, series=part.key)
        assert [int(vol.scalar_data[z, 0, 0]) for z in range(6)] == [te * 100 + z for z in range(6)]
    dyn = ms.open_volume(tmp_path / "echo.dcm", dynamic=True)
    assert dyn.shape == (2, 6, 4, 4) and int(dyn.scalar_data[1, 5, 0, 0]) == 3005


def test_cli_writes_a_4d_nifti_from_mosaics(tmp_path):
    import sys

    folder = qa("siemens-mosaic", "ax", "axasc35")
    out = tmp_path / "run.nii.gz"
    proc = subprocess.run([sys.executable, "-m", "medstream.cli", "volume", str(folder), "-o",
                           str(out), "--dynamic"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert nib.load(out).shape == (64, 64, 35, 2)


def test_dynamic_over_different_kinds_of_images_warns():
    path = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    with pytest.warns(ms.GeometryWarning, match="kinds of images"):
        dyn = ms.open_volume(path, dynamic=True)
    assert dyn.shape == (2, 32, 64, 64)


def test_ge_reversed_polarity_epi_is_never_passed_off_as_a_normal_volume(tmp_path):
    """GE epi_pepolar stores reversed-polarity volumes with their rows reversed and says so only
    in private elements (0019,109C) and (0019,10B3): the volume carries a warning naming them."""
    paths = write_series(tmp_path / "pepolar", 4, size=8, extra={"Manufacturer": "GE MEDICAL SYSTEMS"})
    for path in paths:
        ds = pydicom.dcmread(path)
        block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
        block.add_new(0x9C, "LO", "research/ABCD/epi_pepolar")
        block.add_new(0xB3, "DS", "1")
        ds.save_as(path)
    with pytest.warns(ms.GeometryWarning, match=r"\(0019,10B3\) = 1.*every volume"):
        vol = ms.open_volume(tmp_path / "pepolar")
    assert any("epi_pepolar" in w for w in vol.geometry.warnings)
    plain = write_series(tmp_path / "plain", 4, size=8, extra={"Manufacturer": "GE MEDICAL SYSTEMS"})
    assert not ms.open_volume(plain[0].parent).geometry.warnings


def test_colour_images_without_geometry_save_as_4d_nifti(tmp_path):
    """Derived colour images (no position or orientation) over time: (t, 1, y, x, 3), written as
    NIfTI (x, y, z, t, rgb); once a bare ValueError."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series, rng = generate_uid(), np.random.default_rng(3)
    for k in range(4):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = series, "1.2.3", "MR"
        ds.InstanceNumber, ds.ImageType = k + 1, ["DERIVED", "SECONDARY"]
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 6, 8, 3, "RGB"
        ds.PlanarConfiguration, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 0, 8, 8, 7
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8).tobytes()
        ds.save_as(tmp_path / f"c{k}.dcm", enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dyn = ms.open_volume(tmp_path, dynamic=True)
        assert dyn.shape == (4, 1, 6, 8, 3)
        dyn.save(tmp_path / "out.nii.gz")
    data = np.asarray(nib.load(tmp_path / "out.nii.gz").dataobj)
    assert data.shape == (8, 6, 1, 4, 3)
    for k in range(4):
        ref = pydicom.dcmread(tmp_path / f"c{k}.dcm").pixel_array
        assert np.array_equal(data[:, :, 0, k, :].transpose(1, 0, 2), ref)
