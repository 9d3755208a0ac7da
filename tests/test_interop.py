"""Round trips with the Python imaging stack: numpy, SimpleITK (against its own DICOM reader),
nibabel in memory, arrays with an affine; MONAI / TorchIO / torch when installed."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

import medstream as ms
from medstream.interop import geometry_from_affine, monai_meta, ras_array
from series import expected_stack, oblique, rotation, write_series

sitk = pytest.importorskip("SimpleITK")


def _series(tmp_path, name="ct", **kw):
    kw.setdefault("size", 32)
    paths = write_series(tmp_path / name, 10, orientation=kw.pop("orientation", oblique(20, 12)),
                         spacing=2.5, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.GeometryWarning)
        vol = ms.open_volume(tmp_path / name)
    return paths, vol


def _sitk_read(folder) -> "sitk.Image":
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _voxel_to_lps(img, index) -> np.ndarray:
    return np.array(img.TransformContinuousIndexToPhysicalPoint([float(i) for i in index]))


def test_array_protocol(tmp_path):
    paths, vol = _series(tmp_path)
    arr = np.asarray(vol)
    assert arr is vol.scalar_data and arr.shape == (10, 32, 32)
    np.testing.assert_array_equal(arr, expected_stack(paths))
    assert np.asarray(vol, dtype=np.float32).dtype == np.float32
    assert np.array(vol, copy=True) is not vol.scalar_data
    image = ms.load_image(ms.dicomfile_image_id(paths[0])).result(30)
    assert np.asarray(image) is image.pixel_data
    assert float(np.mean(image)) == float(image.pixel_data.mean())  # any numpy function works


def test_to_sitk_matches_simpleitk_reading_the_dicom_series(tmp_path):
    _, vol = _series(tmp_path)
    ours, ref = vol.to_sitk(), _sitk_read(tmp_path / "ct")
    assert ours.GetSize() == ref.GetSize() == (32, 32, 10)
    np.testing.assert_allclose(ours.GetOrigin(), ref.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(ours.GetSpacing(), ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(ours.GetDirection(), ref.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours),
                                  sitk.GetArrayFromImage(ref).astype(vol.dtype))
    for index in [(0, 0, 0), (31, 5, 9), (7, 30, 4)]:  # same voxel, same place in mm
        np.testing.assert_allclose(_voxel_to_lps(ours, index), _voxel_to_lps(ref, index),
                                   atol=1e-6)
        np.testing.assert_allclose(vol.affine @ [*index, 1], [*_voxel_to_lps(ref, index), 1],
                                   atol=1e-6)


def test_from_sitk_round_trip_and_cache(tmp_path):
    _, vol = _series(tmp_path)
    back = ms.StreamingImageVolume.from_sitk(_sitk_read(tmp_path / "ct"), volume_id="from-itk")
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back), vol.scalar_data)
    assert back.status.loaded and ms.cache.get_volume("from-itk") is back
    assert back.load().result(5) is back  # already complete: nothing to fetch
    again = ms.Volume.from_sitk(back.to_sitk(), cache=False)
    np.testing.assert_allclose(again.affine, vol.affine, atol=1e-6)


def test_tilted_series_to_sitk_keeps_the_shear(tmp_path):
    r = rotation("x", 15.0)
    iop = tuple(np.concatenate([r[:, 0], r[:, 1]]))
    _, vol = _series(tmp_path, "tilt", orientation=iop, stack_direction=(0, 0, 1))
    assert vol.geometry.sheared
    img = vol.to_sitk()
    for k in range(vol.shape[0]):
        np.testing.assert_allclose(_voxel_to_lps(img, (3, 4, k)), (vol.affine @ [3, 4, k, 1])[:3],
                                   atol=1e-6)
    back = ms.volume_from_sitk(img, cache=False)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    assert back.geometry.sheared


def test_nifti_in_memory_round_trip(tmp_path):
    _, vol = _series(tmp_path)
    img = vol.to_nifti()
    back = ms.StreamingImageVolume.from_nifti(img, volume_id="nii-mem")
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(back), vol.scalar_data)
    # scaled on-disk data comes back with scl_slope / scl_inter applied, exactly
    scaled = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.int16), img.affine)
    scaled.header.set_slope_inter(2.0, -10.0)
    path = tmp_path / "scaled.nii"
    nib.save(scaled, path)
    again = ms.volume_from_nifti(nib.load(path), cache=False)
    np.testing.assert_array_equal(np.asarray(again), vol.scalar_data.astype(np.int32) * 2 - 10)
    # and the file loaded by medstream agrees with the in-memory conversion
    from_file = ms.open_volume(path)
    np.testing.assert_allclose(from_file.affine, again.affine, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(from_file), np.asarray(again))


def test_4d_nifti_in_memory_is_a_dynamic_volume():
    data = np.arange(4 * 5 * 6 * 3, dtype=np.int16).reshape(4, 5, 6, 3)
    affine = np.diag([-2.0, 1.5, 3.0, 1.0])
    dyn = ms.volume_from_nifti(nib.Nifti1Image(data, affine), cache=False)
    assert isinstance(dyn, ms.DynamicVolume) and dyn.shape == (3, 6, 5, 4)
    np.testing.assert_array_equal(np.asarray(dyn)[2], data[..., 2].T)
    np.testing.assert_allclose(dyn.geometry.affine_ras, affine, atol=1e-9)


def test_from_array_with_an_affine_a_geometry_or_a_volume(tmp_path):
    _, vol = _series(tmp_path)
    mask = (vol.scalar_data > 0).astype(np.uint8)
    derived = ms.volume_from_array(mask, vol, volume_id="mask")  # same grid as vol
    np.testing.assert_allclose(derived.affine, vol.affine, atol=1e-12)
    assert ms.cache.get_volume("mask") is derived and np.asarray(derived) is mask
    same = ms.Volume.from_array(mask, vol.geometry, cache=False)
    np.testing.assert_allclose(same.affine, vol.affine, atol=1e-12)
    ras = ms.volume_from_array(mask, vol.geometry.affine_ras, ras=True, cache=False)
    np.testing.assert_allclose(ras.affine, vol.affine, atol=1e-12)
    derived.save(tmp_path / "mask.nii.gz")
    saved = nib.load(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(saved.affine, vol.geometry.affine_ras, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(saved.dataobj), mask.transpose(2, 1, 0))
    with pytest.raises(ms.GeometryError, match="does not match"):
        ms.volume_from_array(mask[1:], vol.geometry, cache=False)
    with pytest.raises(ValueError, match="z, y, x"):
        ms.volume_from_array(np.zeros((4, 4)), cache=False)
    skew = np.eye(4)
    skew[0, 1] = 0.5
    with pytest.raises(ms.GeometryError, match="perpendicular"):
        geometry_from_affine(skew, (2, 3, 4))


def test_ras_layout_for_monai_and_torchio_matches_the_affine(tmp_path):
    """What MONAI / TorchIO receive: (x, y, z) array whose RAS affine puts each voxel where
    the DICOM file says its pixel is. Checked without torch, so it always runs."""
    paths, vol = _series(tmp_path)
    arr, meta = monai_meta(vol)
    assert arr.shape == (32, 32, 10) and tuple(meta["spatial_shape"]) == (32, 32, 10)
    assert meta["space"] == "RAS" and np.isnan(meta["original_channel_dim"])
    import pydicom

    ds = pydicom.dcmread(paths[3])
    k = vol.image_ids.index(ms.dicomfile_image_id(paths[3]))
    ras_ipp = np.array([-1, -1, 1]) * np.array(ds.ImagePositionPatient, dtype=float)
    np.testing.assert_allclose((meta["affine"] @ [0, 0, k, 1])[:3], ras_ipp, atol=1e-6)
    hu = ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(arr[:, :, k], hu.T)  # arr[x, y, z] = pixel (row y, column x)
    assert np.shares_memory(ras_array(vol), vol.scalar_data)


def test_to_metatensor_and_torchio(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("monai")
    _, vol = _series(tmp_path)
    mt = vol.to_metatensor()
    assert tuple(mt.shape) == (1, 32, 32, 10)
    np.testing.assert_allclose(np.asarray(mt.affine), vol.geometry.affine_ras, atol=1e-6)
    assert torch.equal(mt[0], torch.as_tensor(vol.scalar_data.transpose(2, 1, 0).copy()))
    tio = pytest.importorskip("torchio")
    image = vol.to_torchio()
    assert isinstance(image, tio.ScalarImage) and tuple(image.shape) == (1, 32, 32, 10)
    np.testing.assert_allclose(image.affine, vol.geometry.affine_ras, atol=1e-6)


def test_monai_reader_loads_folders_and_nifti(tmp_path):
    pytest.importorskip("torch")
    monai = pytest.importorskip("monai")
    from monai.transforms import LoadImage

    from medstream.monai import MedstreamReader

    _, vol = _series(tmp_path)
    loader = LoadImage(reader=MedstreamReader(), image_only=True, ensure_channel_first=True)
    img = loader(str(tmp_path / "ct"))
    assert tuple(img.shape) == (1, 32, 32, 10)
    np.testing.assert_allclose(np.asarray(img.affine), vol.geometry.affine_ras, atol=1e-6)
    vol.save(tmp_path / "ct.nii.gz")
    again = loader(str(tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(np.asarray(again.affine), vol.geometry.affine_ras, atol=1e-5)
    assert monai is not None


# -- plain paths and option checking ------------------------------------------------------------
def test_plain_paths_are_image_ids_and_missing_ones_say_so(tmp_path):
    paths, vol = _series(tmp_path)
    image = ms.load_image(str(paths[0])).result(30)
    assert image.image_id == ms.dicomfile_image_id(paths[0])
    assert ms.load_and_cache_image(paths[1]).result(30).image_id == ms.dicomfile_image_id(paths[1])
    listed = ms.open_volume([str(p) for p in paths])
    np.testing.assert_array_equal(np.asarray(listed), vol.scalar_data)
    for missing in (str(tmp_path / "nope.dcm"), "nope.dcm", tmp_path / "nope.dcm"):
        with pytest.raises(ms.ImageLoadError, match="no such file") as err:
            ms.load_image(missing)
        assert "scheme" not in str(err.value)
    with pytest.raises(ms.ImageLoadError, match="no such file"):
        ms.open_volume([str(paths[0]), str(tmp_path / "gone.dcm")])
    with pytest.raises(ms.UnknownSchemeError):
        ms.load_image("custom9://x/y")


def test_unknown_options_and_bad_values_name_the_option(tmp_path):
    paths, _ = _series(tmp_path)
    with pytest.raises(TypeError, match="'toekn'.*did you mean 'token'"):
        ms.open_volume(tmp_path / "ct", toekn="x")
    with pytest.raises(TypeError, match="'prescal'.*did you mean 'prescale'"):
        ms.load_image(str(paths[0]), prescal=False)
    with pytest.raises(ValueError, match="spacing='kep'.*did you mean spacing='keep'"):
        ms.open_volume(tmp_path / "ct", spacing="kep")
    with pytest.raises(ms.OptionError, match="order="):
        ms.open_volume(tmp_path / "ct", order="random")
    with pytest.raises(TypeError, match="'tilted'"):
        ms.create_and_cache_volume("v", image_ids=[ms.dicomfile_image_id(paths[0])], tilted="x")

    def custom(image_id, *, gain=1):  # a custom loader's own options are accepted
        return ms.Image.from_array(image_id, np.full((2, 2), gain, np.uint8))

    ms.register_image_loader("gainy", custom)
    assert ms.load_image("gainy:1", gain=3).result(10).pixel_data[0, 0] == 3
    with pytest.raises(TypeError, match="'gian'"):
        ms.load_image("gainy:1", gian=3)


def test_result_options_are_part_of_the_volume_cache_key(tmp_path):
    _series(tmp_path)
    hu = ms.open_volume(tmp_path / "ct")
    stored = ms.open_volume(tmp_path / "ct", prescale=False)
    assert stored is not hu and stored.volume_id != hu.volume_id
    assert int(hu.scalar_data.min()) == int(stored.scalar_data.min()) - 1024
    assert ms.open_volume(tmp_path / "ct") is hu
    assert ms.open_volume(tmp_path / "ct", prescale=True, spacing="raise") is hu


# -- metadata by keyword and the extra Cornerstone modules -------------------------------------
def test_any_header_element_by_keyword_and_pet_modules(tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    paths = write_series(tmp_path / "pet", 3, size=16, extra={
        "KVP": "120", "Units": "BQML", "DecayCorrection": "START",
        "CorrectedImage": ["DECY", "ATTN"], "PatientWeight": "72.5", "PatientSex": "F",
        "PatientAge": "054Y", "FrameReferenceTime": "1234.5", "ActualFrameDuration": 180000,
        "FrameTime": "33.3",
    })
    import pydicom

    for p in paths:  # a radiopharmaceutical sequence and an overlay plane
        ds = pydicom.dcmread(p)
        item = Dataset()
        item.RadionuclideTotalDose = "370000000"
        item.RadionuclideHalfLife = "6586.2"
        item.RadiopharmaceuticalStartTime = "101500"
        ds.RadiopharmaceuticalInformationSequence = Sequence([item])
        ov = np.zeros((16, 16), np.uint8)
        ov[2, 5] = 1
        ds.add_new((0x6000, 0x0010), "US", 16)
        ds.add_new((0x6000, 0x0011), "US", 16)
        ds.add_new((0x6000, 0x0040), "CS", "G")
        ds.add_new((0x6000, 0x0050), "SS", [1, 1])
        ds.add_new((0x6000, 0x0100), "US", 1)
        ds.add_new((0x6000, 0x3000), "OW", np.packbits(ov.ravel(), bitorder="little").tobytes())
        ds.save_as(p)
    image_id = ms.dicomfile_image_id(paths[0])
    ms.load_image(image_id).result(30)
    assert ms.metadata.get("KVP", image_id) == 120.0
    instance = ms.metadata.get("instance", image_id)
    assert instance["KVP"] == 120.0 and instance["PatientSex"] == "F"
    assert instance["Modality"] == "CT" and "PixelData" not in instance
    assert instance["RadiopharmaceuticalInformationSequence"][0]["RadionuclideHalfLife"] == 6586.2
    iso = ms.metadata.get("petIsotopeModule", image_id)["radiopharmaceutical_info"]
    assert iso["radionuclide_total_dose"] == 370000000.0 and iso["radiopharmaceutical_start_time"] == "101500"
    assert ms.metadata.get("petSeriesModule", image_id) == {
        "corrected_image": ["DECY", "ATTN"], "units": "BQML", "decay_correction": "START",
        "series_type": None}
    assert ms.metadata.get("petImageModule", image_id)["frame_reference_time"] == 1234.5
    assert ms.metadata.get("patientStudyModule", image_id)["patient_weight"] == 72.5
    assert ms.metadata.get("patient_study_module", image_id)["patient_age"] == "054Y"
    assert ms.metadata.get("cineModule", image_id)["frame_time"] == 33.3
    overlay = ms.metadata.get("overlayPlaneModule", image_id)["overlays"][0]
    assert overlay["pixel_data"].shape == (16, 16) and overlay["pixel_data"][2, 5] == 1
    assert int(overlay["pixel_data"].sum()) == 1
    assert ms.metadata.get("calibrationModule", image_id)["sequence_of_ultrasound_regions"] is None
    assert ms.metadata.get("NotAKeyword", image_id) is None
    assert ms.metadata.get("KVP", "dicomfile:/nope.dcm") is None


def test_monai_reader_logic_with_a_stand_in_image_reader(tmp_path, monkeypatch):
    """MedstreamReader's own logic (suffixes, URLs folded by pathlib, lists, channel stacking)
    with a stand-in for MONAI's abstract ImageReader, so it runs where MONAI is not installed."""
    import abc
    import importlib
    import sys
    import types

    if importlib.util.find_spec("monai") is None:
        fake = types.ModuleType("monai")
        data = types.ModuleType("monai.data")

        class ImageReader(abc.ABC):  # the three abstract methods MONAI's LoadImage calls
            @abc.abstractmethod
            def verify_suffix(self, filename): ...

            @abc.abstractmethod
            def read(self, data, **kwargs): ...

            @abc.abstractmethod
            def get_data(self, img): ...

        data.ImageReader = ImageReader
        fake.data = data
        monkeypatch.setitem(sys.modules, "monai", fake)
        monkeypatch.setitem(sys.modules, "monai.data", data)
        monkeypatch.delitem(sys.modules, "medstream.monai", raising=False)
    from medstream.monai import MedstreamReader, _source

    paths, vol = _series(tmp_path)
    reader = MedstreamReader()
    assert reader.verify_suffix(str(tmp_path / "ct")) and reader.verify_suffix([str(paths[0])])
    assert not reader.verify_suffix("notes.txt")
    assert _source("https:/pacs/dicom-web/studies/1") == "https://pacs/dicom-web/studies/1"
    assert _source("wadors:https:/pacs/x") == "wadors:https://pacs/x"
    arr, meta = reader.get_data(reader.read(str(tmp_path / "ct")))
    assert arr.shape == (32, 32, 10) and np.isnan(meta["original_channel_dim"])
    np.testing.assert_allclose(meta["affine"], vol.geometry.affine_ras, atol=1e-6)
    listed, _ = reader.get_data(reader.read([str(p) for p in paths]))  # files: one volume
    np.testing.assert_array_equal(listed, arr)
    vol.save(tmp_path / "a.nii.gz")
    vol.save(tmp_path / "b.nii.gz")
    both, meta2 = reader.get_data(reader.read([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"]))
    assert both.shape == (2, 32, 32, 10) and meta2["original_channel_dim"] == 0
    with pytest.raises(TypeError, match="spacng"):
        MedstreamReader(spacng="keep")
    # A SEG read onto its series gives its labelmap on that grid (made by highdicom here).
    from test_segmentation import _make_seg

    datasets = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: int(d.InstanceNumber))
    for ds in datasets:
        for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                        "AccessionNumber", "StudyID", "PatientName", "PatientID"):
            if keyword not in ds:
                setattr(ds, keyword, "")
        ds.StudyDate, ds.StudyTime = ds.get("StudyDate") or "20260101", "120000"
    by_uid = {str(d.SOPInstanceUID): d for d in datasets}
    uids = [ms.metadata.get("sopCommonModule", i)["sop_instance_uid"] for i in vol.image_ids]
    ordered = [by_uid[u] for u in uids]  # the volume's slice order
    masks = np.zeros((10, 32, 32, 1), dtype=bool)
    masks[3:6, 8:20, 4:12, 0] = True
    _make_seg(ordered, masks, "BINARY", ["lesion"], tmp_path / "seg.dcm")
    seg_reader = MedstreamReader(reference=str(tmp_path / "ct"))
    labels, meta3 = seg_reader.get_data(seg_reader.read(str(tmp_path / "seg.dcm")))
    assert np.array_equal(labels, masks[..., 0].astype(np.uint8).transpose(2, 1, 0))
    np.testing.assert_allclose(meta3["affine"], vol.geometry.affine_ras, atol=1e-6)


@pytest.mark.orthanc
def test_keyword_metadata_and_sitk_from_dicomweb(orthanc, tmp_path):
    paths = write_series(tmp_path / "web", 4, size=16, extra={"KVP": "100", "PatientWeight": "80"})
    for p in paths:
        info = orthanc.upload(p)
    study, series, _ = orthanc.uids(info["ID"])
    url = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
    ids = ms.wadors_image_ids(url)
    assert ms.metadata.get("KVP", ids[0]) == 100.0
    assert ms.metadata.get("patientStudyModule", ids[0])["patient_weight"] == 80.0
    assert ms.metadata.get("instance", ids[0])["SeriesInstanceUID"] == series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ms.GeometryWarning)
        web, local = ms.open_volume(url), ms.open_volume(tmp_path / "web")
    np.testing.assert_allclose(web.affine, local.affine, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(web.to_sitk()), np.asarray(local))


def test_to_torch_and_metatensor_dtype(tmp_path):
    """uint16, which torch stores but cannot compute on, becomes float32 unless asked."""
    torch = pytest.importorskip("torch")
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    volume = ms.volume_from_array(data, np.eye(4), cache=False)
    t = volume.to_torch()
    assert t.dtype == torch.float32 and t.shape == (2, 3, 4)
    assert np.array_equal(t.numpy(), data.astype(np.float32))
    assert volume.to_torch(dtype=torch.int32).dtype == torch.int32
    shared = ms.volume_from_array(data.astype(np.int16), np.eye(4), cache=False).to_torch()
    assert shared.dtype == torch.int16  # kept, and shares memory
    pytest.importorskip("monai")
    assert volume.to_metatensor().dtype == torch.float32
    assert volume.to_metatensor(dtype="float64").dtype == torch.float64
