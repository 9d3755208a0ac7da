"""Vendor mosaics from every source: over DICOMweb (WADO-RS) from a real Orthanc, WADO-URI IDs,
lists of files and in-memory bytes, Siemens MOSAIC and UIH VFRAME images are split into slices at
their true positions, as from folders: checked against dcm2niix on the same files. A mosaic whose
tiles cannot be placed is a typed error, never a volume of the wrong shape (over DICOMweb it once
gave (2, 1, 384, 384) for a (2, 35, 64, 64) run, and (17, 1, 256, 320) for a UIH DTI)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import medstream as ms
from corpus import qa
from test_vendor_layouts import assert_same_volume, canonical, dcm2niix

MOSAICS = [("siemens-mosaic", "ax", "axasc35"),
           ("siemens-mosaic", "axmb", "AxAsc36mb2a"),  # JPEG lossless
           ("siemens-mosaic", "axmb", "AxInt36mb"),  # JPEG 2000
           ("uih-vframe", "dti_tra_dir16_AP_SaveBySlc__140028")]


@pytest.fixture(scope="module", params=MOSAICS, ids=lambda p: p[-1])
def served(request, orthanc):
    folder = qa(*request.param)
    files = sorted(p for p in folder.iterdir() if p.suffix != ".nii" and p.is_file())
    uploaded = [orthanc.upload(p) for p in files]
    study, series, _ = orthanc.uids(uploaded[0]["ID"])
    sops = [orthanc.uids(u["ID"])[2] for u in uploaded]
    return orthanc, study, series, sops, folder


def _series_url(orthanc, study: str, series: str) -> str:
    return f"{orthanc.dicomweb}/studies/{study}/series/{series}"


def test_dicomweb_mosaic_run_equals_dcm2niix(served, tmp_path):
    orthanc, study, series, _, folder = served
    (ref,) = dcm2niix(folder, tmp_path / "ref")  # one 4D NIfTI: the whole run
    dyn = ms.open_volume(_series_url(orthanc, study, series), dynamic=True)
    assert dyn.shape[0] == ref.shape[3]
    assert_same_volume(canonical(dyn), ref)


def test_dicomweb_mosaic_equals_the_same_files_from_disk(served):
    orthanc, study, series, _, folder = served
    web = ms.open_volume(_series_url(orthanc, study, series), dynamic=True)
    disk = ms.open_volume(folder, dynamic=True)
    assert web.shape == disk.shape and web.dtype == disk.dtype
    assert np.array_equal(np.asarray(web), np.asarray(disk))
    np.testing.assert_allclose(web.affine, disk.affine, atol=1e-6)


def test_dicomweb_mosaic_run_as_one_3d_volume_is_a_typed_error(served):
    orthanc, study, series, _, _ = served
    with pytest.raises(ms.GeometryError, match="duplicate slice positions"):
        ms.open_volume(_series_url(orthanc, study, series))  # several volumes in one series


def test_wadouri_mosaic_ids_equal_dcm2niix(served, tmp_path):
    """WADO-URI IDs of whole mosaics: each object fetched once, split into its tiles."""
    orthanc, study, series, sops, folder = served
    ids = [f"wadouri:{orthanc.url}/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
           f"&objectUID={sop}&contentType=application/dicom" for sop in sops]
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    dyn = ms.open_volume(ids, dynamic=True)
    assert_same_volume(canonical(dyn), ref)


def test_a_list_of_mosaic_files_equals_dcm2niix(served, tmp_path):
    """Files given one by one (not a folder scan) are split too."""
    *_, folder = served
    files = sorted(p for p in folder.iterdir() if p.suffix != ".nii" and p.is_file())
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    assert_same_volume(canonical(ms.open_volume(files, dynamic=True)), ref)


def test_in_memory_mosaics_equal_dcm2niix(served, tmp_path):
    *_, folder = served
    files = sorted(p for p in folder.iterdir() if p.suffix != ".nii" and p.is_file())
    ids = [ms.register_bytes(p.read_bytes()) for p in files]
    try:
        (ref,) = dcm2niix(folder, tmp_path / "ref")
        assert_same_volume(canonical(ms.open_volume(ids, dynamic=True)), ref)
    finally:
        for image_id in ids:
            ms.unregister(image_id)


def test_a_mosaic_whose_tiles_cannot_be_placed_is_refused(tmp_path):
    """No CSA header: the whole image is never passed off as a slice (from files, bytes)."""
    path = next(qa("siemens-mosaic", "ax", "axasc35").glob("MR.*"))
    ds = pydicom.dcmread(path)
    del ds[0x00291010]
    ds.save_as(tmp_path / "nocsa.dcm")
    image_id = ms.register_bytes((tmp_path / "nocsa.dcm").read_bytes())
    try:
        with pytest.raises(ms.GeometryError, match="not split into slices"):
            ms.open_volume([image_id])
    finally:
        ms.unregister(image_id)


def test_enhanced_4d_over_dicomweb_one_request_per_volume(orthanc, tmp_path):
    """Each acquisition of an enhanced multi-frame object comes with one frames request
    (``frames/1,3,5...``), not one per frame; pixels equal pydicom's with each frame's own
    rescale, geometry equals dcm2niix's."""
    path = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    study, series, _ = orthanc.uids(orthanc.upload(path)["ID"])
    dyn = ms.open_volume(_series_url(orthanc, study, series), dynamic=True)
    assert dyn.shape == (2, 32, 64, 64)
    assert [v.status.bulk_frames for v in dyn.time_points] == [32, 32]
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    refs = dcm2niix(path.parent, tmp_path / "ref")  # magnitude, then the field map
    for volume, ref in zip(dyn.time_points, refs):
        frames = [int(i.split("/frames/")[1]) for i in volume.image_ids]
        groups = [ds.PerFrameFunctionalGroupsSequence[f - 1] for f in frames]
        want = np.stack([stored[f - 1] * float(g.PixelValueTransformationSequence[0].RescaleSlope)
                         + float(g.PixelValueTransformationSequence[0].RescaleIntercept)
                         for f, g in zip(frames, groups)])
        np.testing.assert_allclose(volume.scalar_data, want, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(canonical(volume).affine, ref.affine, atol=1e-3)


def test_enhanced_4d_over_files_equals_dcm2niix_over_dicomweb_and_wadouri(orthanc, tmp_path):
    """Siemens XA enhanced: one volume per file, 4D over files, in temporal order."""
    folder = qa("enhanced-4d", "Siemens", "XA10")
    files = sorted(folder.glob("*.dcm"))
    uploaded = [orthanc.upload(p) for p in files]
    study, series, _ = orthanc.uids(uploaded[0]["ID"])
    (ref,) = dcm2niix(folder, tmp_path / "ref")
    web = ms.open_volume(_series_url(orthanc, study, series), dynamic=True)
    assert web.shape == (4, 6, 64, 64)
    assert_same_volume(canonical(web), ref)
    sops = [orthanc.uids(u["ID"])[2] for u in uploaded]
    n = int(pydicom.dcmread(files[0], stop_before_pixels=True).NumberOfFrames)
    ids = [f"wadouri:{orthanc.url}/wado?requestType=WADO&studyUID={study}&seriesUID={series}"
           f"&objectUID={sop}&contentType=application/dicom&frame={k}"
           for sop in sops for k in range(1, n + 1)]
    uri = ms.open_volume(ids, dynamic=True)
    assert_same_volume(canonical(uri), ref)


def test_12_bit_mosaics_with_high_bits_set_over_dicomweb_equal_pydicom(orthanc, tmp_path):
    """dcm_qa_12bit: mosaics whose unused high bits are set; each slice equals pydicom's tile
    (pydicom masks or sign-extends the unused bits), the slices in order along the normal. The
    three files share one SOPInstanceUID: each gets its own before the upload."""
    from pydicom.pixels import apply_modality_lut

    from corpus import with_new_uids

    for source in sorted(qa("bits-12").glob("*.dcm")):
        path = with_new_uids(source, tmp_path / source.name)
        study, series, _ = orthanc.uids(orthanc.upload(path)["ID"])
        volume = np.asarray(ms.open_volume(_series_url(orthanc, study, series)))
        ds = pydicom.dcmread(path)
        whole = apply_modality_lut(ds.pixel_array, ds)
        n, (rows, cols) = volume.shape[0], volume.shape[1:]
        grid = whole.shape[1] // cols
        tiles = [whole[(k // grid) * rows:(k // grid + 1) * rows, (k % grid) * cols:(k % grid + 1) * cols]
                 for k in range(n)]
        got = volume.astype(np.float64)
        assert (all(np.array_equal(got[k], tiles[k]) for k in range(n))
                or all(np.array_equal(got[k], tiles[n - 1 - k]) for k in range(n))), path.name
