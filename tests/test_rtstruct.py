"""RTSTRUCT contours rasterised on a reference volume, against rt-utils' masks on the same
series (made here with rt-utils on oblique series): the same voxels where the two conventions
agree (every voxel rt-utils fills, medstream fills) and Dice >= 0.98; holes by the even-odd
rule; ROI names, numbers and colours; POINT contours ignored with a warning."""

from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

import medstream as ms
from series import write_series

import rt_utils  # noqa: E402  (the test extra: rt-utils, with OpenCV)

# The attributes an RT Structure Set copies from its series (rt-utils requires them).
STUDY = {"StudyDate": "20260101", "StudyTime": "120000", "PatientName": "t", "PatientID": "t",
         "PatientBirthDate": "", "PatientSex": "", "ReferringPhysicianName": "",
         "AccessionNumber": "", "StudyID": "1", "SeriesNumber": 1, "Manufacturer": "t"}
ORIENTATIONS = {"axial": "axial", "rotated": (0.9848, 0.1736, 0, -0.1736, 0.9848, 0),
                "tilted": (1, 0, 0, 0, 0.9848, 0.1736)}


@pytest.fixture(params=list(ORIENTATIONS))
def series(request, tmp_path):
    # square pixels: rt-utils maps contours with the two PixelSpacing values swapped, so only
    # there is it an independent reference
    write_series(tmp_path / "ct", 12, size=64, orientation=ORIENTATIONS[request.param],
                 pixel_spacing=(0.7, 0.7), extra=STUDY)
    return tmp_path / "ct"


def _ring(rows: int = 64, cols: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    r2 = (yy - 30) ** 2 + (xx - 28) ** 2
    return (r2 < 15**2) & ~(r2 < 5**2)


def test_contours_match_rt_utils_masks(series, tmp_path):
    rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series))
    ring = np.zeros((64, 64, 12), dtype=bool)
    ring[:, :, 3:9] = _ring()[:, :, None]
    box = np.zeros((64, 64, 12), dtype=bool)
    box[40:56, 8:20, 5:7] = True
    rt.add_roi(mask=ring, name="ring", color=[255, 0, 0])
    rt.add_roi(mask=box, name="box", color=[0, 128, 255])
    rt.save(str(tmp_path / "rt.dcm"))
    volume = ms.open_volume(series)
    seg = ms.open_segmentation(tmp_path / "rt.dcm", reference=volume)
    assert [s.label for s in seg.segments] == ["ring", "box"]
    assert [s.color for s in seg.segments] == [(255, 0, 0), (0, 128, 255)]
    back = rt_utils.RTStructBuilder.create_from(dicom_series_path=str(series),
                                                rt_struct_path=str(tmp_path / "rt.dcm"))
    for name in ("ring", "box"):
        theirs = np.moveaxis(back.get_roi_mask_by_name(name), -1, 0)
        ours = seg.mask(name)
        assert not (theirs & ~ours).any(), name  # every voxel rt-utils fills
        dice = 2 * (ours & theirs).sum() / (ours.sum() + theirs.sum())
        assert dice >= 0.98, (name, dice)
    assert not seg.mask("ring")[5, 30, 28]  # the hole stays empty
    assert seg.mask("ring")[5, 30, 28 + 10]


def _one_roi(tmp_path, rt_path, region=(slice(10, 20), slice(10, 20), 2), name="square",
             color=None):
    """A 6 x 32x32 series (1 mm square pixels) in ``tmp_path/ct`` and an RTSTRUCT made by
    rt-utils with one ROI over ``region`` ((rows, columns, slices) of rt-utils' mask)."""
    folder = tmp_path / "ct"
    write_series(folder, 6, size=32, pixel_spacing=(1.0, 1.0), extra=STUDY)
    rt = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(folder))
    mask = np.zeros((32, 32, 6), dtype=bool)
    mask[region] = True
    rt.add_roi(mask=mask, name=name, **({"color": color} if color else {}))
    rt_path.parent.mkdir(parents=True, exist_ok=True)
    rt.save(str(rt_path))
    return folder


def test_point_contours_are_ignored_with_a_warning(tmp_path):
    folder = _one_roi(tmp_path, tmp_path / "rt.dcm")
    ds = pydicom.dcmread(tmp_path / "rt.dcm")
    contour = ds.ROIContourSequence[0].ContourSequence[0]
    point = pydicom.Dataset()
    point.ContourGeometricType = "POINT"
    point.NumberOfContourPoints = 1
    point.ContourData = list(contour.ContourData[:3])
    ds.ROIContourSequence[0].ContourSequence.append(point)
    ds.save_as(tmp_path / "points.dcm")
    volume = ms.open_volume(folder)
    with pytest.warns(UserWarning, match="not CLOSED_PLANAR"):
        seg = ms.open_segmentation(tmp_path / "points.dcm", reference=volume)
    assert seg.mask("square")[2, 15, 15] and seg.mask("square").sum() == 100


def test_contours_off_the_grid_or_without_a_reference_are_refused(tmp_path):
    folder = _one_roi(tmp_path, tmp_path / "alone" / "rt.dcm")  # no series beside it
    with pytest.raises(ms.GeometryError, match="reference"):
        ms.open_segmentation(tmp_path / "alone" / "rt.dcm")
    ds = pydicom.dcmread(tmp_path / "alone" / "rt.dcm")
    data = [float(v) for v in ds.ROIContourSequence[0].ContourSequence[0].ContourData]
    for i in range(2, len(data), 3):
        data[i] += 1.2  # half way between two slices (2.5 mm apart)
    ds.ROIContourSequence[0].ContourSequence[0].ContourData = data
    ds.save_as(tmp_path / "off.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = ms.open_volume(folder)
    with pytest.raises(ms.GeometryError, match="between or outside"):
        ms.open_segmentation(tmp_path / "off.dcm", reference=volume)


def test_reference_found_in_the_same_folder_and_labelmap_saved_with_its_table(tmp_path):
    folder = _one_roi(tmp_path, tmp_path / "ct" / "rt.dcm",  # beside its series
                      region=(slice(10, 20), slice(10, 20), slice(2, 4)), color=[10, 20, 30])
    seg = ms.open_segmentation(folder / "rt.dcm")
    assert seg.reference is not None and seg.mask("square").sum() == 200
    written = seg.save(tmp_path / "labels.nii.gz")
    import json

    import nibabel as nib

    table = json.loads((tmp_path / "labels.labels.json").read_text())
    assert table["1"]["label"] == "square" and table["1"]["color"] == [10, 20, 30]
    assert int(np.asarray(nib.load(written).dataobj).sum()) == 200


def test_cli_lists_rois_and_writes_a_labelmap_on_the_reference(tmp_path):
    import json
    import subprocess
    import sys

    import nibabel as nib

    folder = _one_roi(tmp_path, tmp_path / "rt.dcm", region=(slice(4, 12), slice(4, 12),
                                                              slice(1, 3)),
                      name="gtv", color=[200, 0, 0])
    cli = [sys.executable, "-m", "medstream"]
    info = subprocess.run([*cli, "info", str(tmp_path / "rt.dcm"), "--json"], capture_output=True,
                          text=True, timeout=120)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["segments"][0][:2] == [1, "gtv"]
    out = tmp_path / "labels.nii.gz"
    run = subprocess.run([*cli, "volume", str(tmp_path / "rt.dcm"), "--reference", str(folder),
                          "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert int(np.asarray(nib.load(out).dataobj).sum()) == 8 * 8 * 2
    assert json.loads((tmp_path / "labels.labels.json").read_text())["1"]["label"] == "gtv"
