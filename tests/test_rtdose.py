"""RT Dose grids as volumes: frames placed by GridFrameOffsetVector (relative or absolute), values
in Gy through DoseGridScaling. References: pydicom's pixels and SimpleITK's geometry (ITK reads
dose grids itself), on pydicom's real test files."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import medstream as ms


def _sitk_geometry(path: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...]]:
    sitk = pytest.importorskip("SimpleITK")
    img = sitk.ReadImage(path)
    return img.GetOrigin(), img.GetSpacing(), img.GetSize()


@pytest.mark.parametrize("name", ["rtdose.dcm", "rtdose_rle.dcm"])
def test_dose_grid_is_a_volume_in_gy_on_itks_grid(name):
    path = get_testdata_file(name)
    volume = ms.open_volume(path)
    ds = pydicom.dcmread(path)
    want = ds.pixel_array.astype(np.float64) * float(ds.DoseGridScaling)
    assert volume.dtype == np.float32 and volume.shape == want.shape
    np.testing.assert_allclose(np.asarray(volume), want.astype(np.float32), rtol=0, atol=0)
    origin, spacing, size = _sitk_geometry(path)
    np.testing.assert_allclose(volume.geometry.origin, origin, atol=1e-4)
    np.testing.assert_allclose(volume.spacing, spacing, atol=1e-4)
    assert volume.shape[::-1] == size


def test_absolute_offsets_give_the_same_grid(tmp_path):
    src = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(src)
    z0 = float(ds.ImagePositionPatient[2])
    ds.GridFrameOffsetVector = [z0 + float(o) for o in ds.GridFrameOffsetVector]
    ds.save_as(tmp_path / "absolute.dcm")
    relative = ms.open_volume(src)
    absolute = ms.open_volume(tmp_path / "absolute.dcm")
    np.testing.assert_allclose(absolute.affine, relative.affine, atol=1e-6)
    assert np.array_equal(np.asarray(absolute), np.asarray(relative))


def test_descending_offsets_keep_each_frame_at_its_place(tmp_path):
    """Frames stored top-down: the volume is ordered along the normal, each frame where its
    offset puts it."""
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm"))
    n = int(ds.NumberOfFrames)
    frames = ds.pixel_array[::-1].copy()
    ds.PixelData = frames.tobytes()
    ds.GridFrameOffsetVector = [0.0] + [-5.0 * k for k in range(1, n)]
    ds.save_as(tmp_path / "down.dcm")
    volume = ms.open_volume(tmp_path / "down.dcm")
    z = volume.geometry.origin[2]
    assert z == pytest.approx(float(ds.ImagePositionPatient[2]) - 5.0 * (n - 1))
    want = frames[::-1].astype(np.float64) * float(ds.DoseGridScaling)
    np.testing.assert_allclose(np.asarray(volume), want.astype(np.float32), rtol=0, atol=0)


def test_dose_resampled_onto_another_grid_equals_simpleitk():
    """``dose.resample_to(grid)``: trilinear by world coordinates, against SimpleITK's linear
    resampler on the same grids (a finer grid, shifted by a fraction of a voxel)."""
    sitk = pytest.importorskip("SimpleITK")
    path = get_testdata_file("rtdose.dcm")
    dose = ms.open_volume(path)
    assert np.array_equal(np.asarray(dose.resample_to(dose)), np.asarray(dose))  # same grid
    g = dose.geometry
    affine = np.array(g.affine, dtype=float)
    affine[:3, :3] = affine[:3, :3] / 2.0  # half the spacing
    affine[:3, 3] += [3.3, -2.1, 1.7]  # off the source voxels
    target = ms.volume_from_array(np.zeros((28, 18, 18), np.float32), affine, cache=False)
    ours = np.asarray(dose.resample_to(target))
    src = dose.to_sitk()
    ref_img = target.to_sitk()
    want = sitk.GetArrayFromImage(sitk.Resample(src, ref_img, sitk.Transform(), sitk.sitkLinear,
                                                0.0, sitk.sitkFloat32))
    inside = want != 0  # ITK's border rule differs by half a voxel at the edges
    np.testing.assert_allclose(ours[inside], want[inside], rtol=1e-5, atol=1e-6)
    assert inside.sum() > 0.5 * inside.size
