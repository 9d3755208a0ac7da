"""DICOM SEG read onto an image volume's grid, checked against highdicom's own reading of the
same objects (made here with highdicom on a CT series): BINARY, FRACTIONAL and LABELMAP, sparse
frames in any order, several segments, matched by source instance or by position."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

import medstream as ms
from series import write_series

import highdicom as hd  # noqa: E402  (the test extra)


def _description(number: int, label: str, lab: tuple[int, int, int] = (43000, 45000, 30000)):
    from pydicom.sr.codedict import codes

    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        display_color=hd.color.CIELabColor(*(v * 100 / 65535 if i == 0 else v * 255 / 65535 - 128
                                             for i, v in enumerate(lab))))


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seg") / "ct"
    paths = write_series(folder, 8, size=32)
    datasets = sorted((pydicom.dcmread(p) for p in paths),
                      key=lambda d: float(d.ImagePositionPatient[2]))
    for ds in datasets:  # the patient and study attributes a SEG copies from its sources
        for keyword, value in (("PatientBirthDate", ""), ("PatientSex", ""), ("PatientName", "t"),
                               ("PatientID", "t"), ("StudyDate", "20260101"),
                               ("StudyTime", "120000"), ("ReferringPhysicianName", ""),
                               ("AccessionNumber", ""), ("StudyID", "1")):
            if keyword not in ds:
                setattr(ds, keyword, value)
    return ms.open_volume(folder), datasets


def _make_seg(datasets, masks: np.ndarray, kind: str, labels: list[str], path) -> pydicom.Dataset:
    """masks: (z, y, x, n_segments) on the series' slices, written by highdicom."""
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=masks,
        segmentation_type=kind,
        segment_descriptions=[_description(i + 1, lab) for i, lab in enumerate(labels)],
        series_instance_uid=hd.UID(), series_number=99, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medstream tests", manufacturer_model_name="t",
        software_versions="1", device_serial_number="1",
        max_fractional_value=255 if kind == "FRACTIONAL" else 255)
    seg.save_as(path)
    return seg


def _highdicom_masks(path, datasets) -> np.ndarray:
    """highdicom's reading: (z, y, x, n_segments) on the source slices."""
    seg = hd.seg.segread(path)
    uids = [d.SOPInstanceUID for d in datasets]
    return seg.get_pixels_by_source_instance(source_sop_instance_uids=uids,
                                             combine_segments=False, ignore_spatial_locations=True)


def test_binary_sparse_two_segments_equal_highdicom(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 2), dtype=bool)
    masks[2:5, 5:15, 5:15, 0] = True  # liver on slices 2-4 only (sparse frames)
    masks[5:7, 20:30, 18:28, 1] = True
    _make_seg(datasets, masks, "BINARY", ["liver", "spleen"], tmp_path / "seg.dcm")
    seg = ms.open_segmentation(tmp_path / "seg.dcm", reference=volume)
    assert [s.label for s in seg.segments] == ["liver", "spleen"]
    assert [s.number for s in seg.segments] == [1, 2]
    want = _highdicom_masks(tmp_path / "seg.dcm", datasets)
    assert seg.masks.shape == (2, 8, 32, 32) and seg.masks.dtype == bool
    assert np.array_equal(seg.masks, np.moveaxis(want, -1, 0).astype(bool))
    assert np.array_equal(seg.mask("spleen"), masks[..., 1])
    labels = np.asarray(seg)
    assert labels[3, 10, 10] == 1 and labels[6, 25, 20] == 2 and labels[0, 0, 0] == 0
    np.testing.assert_allclose(seg.labelmap.affine, volume.affine)
    assert seg.segments[0].category == "Tissue" and seg.segments[0].algorithm == "MANUAL"
    assert seg.segments[0].color is not None


def test_frames_matched_by_position_when_no_source_is_named(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 1), dtype=bool)
    masks[1, 3:9, 4:12, 0] = True
    masks[6, 10:20, 10:12, 0] = True
    _make_seg(datasets, masks, "BINARY", ["lesion"], tmp_path / "seg.dcm")
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    for item in ds.PerFrameFunctionalGroupsSequence:  # as SEGs made by other tools may be
        if "DerivationImageSequence" in item:
            del item.DerivationImageSequence
    order = list(range(len(ds.PerFrameFunctionalGroupsSequence)))[::-1]  # frames shuffled
    frames = ds.pixel_array.reshape(len(order), 32, 32) if len(order) > 1 else ds.pixel_array[None]
    ds.PerFrameFunctionalGroupsSequence = pydicom.Sequence(
        [ds.PerFrameFunctionalGroupsSequence[i] for i in order])
    from pydicom.pixels import pack_bits

    ds.PixelData = pack_bits(frames[order].astype(np.uint8))
    ds.save_as(tmp_path / "shuffled.dcm")
    seg = ms.open_segmentation(tmp_path / "shuffled.dcm", reference=volume)
    assert np.array_equal(seg.mask("lesion"), masks[..., 0])


def test_fractional_equals_highdicom(ct, tmp_path):
    volume, datasets = ct
    prob = np.zeros((8, 32, 32, 1), dtype=np.float32)
    prob[3, 8:16, 8:16, 0] = np.linspace(0.1, 1.0, 64, dtype=np.float32).reshape(8, 8)
    _make_seg(datasets, prob, "FRACTIONAL", ["tumour"], tmp_path / "frac.dcm")
    seg = ms.open_segmentation(tmp_path / "frac.dcm", reference=volume)
    assert seg.segmentation_type == "FRACTIONAL" and seg.masks.dtype == np.float32
    want = hd.seg.segread(tmp_path / "frac.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in datasets], combine_segments=False,
        ignore_spatial_locations=True, rescale_fractional=True)
    np.testing.assert_allclose(seg.masks[0], want[..., 0], atol=1e-6)


def test_labelmap_iod_equals_highdicom(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 3), dtype=bool)
    masks[1:3, 2:10, 2:10, 0] = True
    masks[4, 12:20, 12:20, 1] = True
    masks[6:8, 22:30, 2:6, 2] = True
    _make_seg(datasets, masks, "LABELMAP", ["a", "b", "c"], tmp_path / "lab.dcm")
    seg = ms.open_segmentation(tmp_path / "lab.dcm", reference=volume)
    assert seg.segmentation_type == "LABELMAP"
    want = _highdicom_masks(tmp_path / "lab.dcm", datasets)
    assert np.array_equal(seg.masks, np.moveaxis(want, -1, 0).astype(bool))
    assert np.array_equal(seg.masks, np.moveaxis(masks, -1, 0))


def test_overlapping_segments_have_no_labelmap(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 2), dtype=bool)
    masks[3, 5:15, 5:15, 0] = True
    masks[3, 10:20, 10:20, 1] = True
    _make_seg(datasets, masks, "BINARY", ["one", "two"], tmp_path / "overlap.dcm")
    seg = ms.open_segmentation(tmp_path / "overlap.dcm", reference=volume)
    with pytest.raises(ms.VolumeError, match="one, two"):
        seg.labelmap
    assert seg.masks[:, 3, 12, 12].all()


def test_without_reference_the_seg_gives_its_own_grid(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 1), dtype=bool)
    masks[2:6, 4:8, 4:8, 0] = True
    _make_seg(datasets, masks, "BINARY", ["x"], tmp_path / "own.dcm")
    seg = ms.open_segmentation(tmp_path / "own.dcm")
    assert seg.masks.shape == (1, 4, 32, 32)  # the frames with content
    assert seg.masks.all(axis=(0,))[:, 4:8, 4:8].all()
    np.testing.assert_allclose(seg.geometry.origin, volume.geometry.positions[2], atol=1e-4)


def test_a_frame_off_the_reference_grid_is_refused(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 1), dtype=bool)
    masks[3, 4:8, 4:8, 0] = True
    _make_seg(datasets, masks, "BINARY", ["x"], tmp_path / "off.dcm")
    ds = pydicom.dcmread(tmp_path / "off.dcm")
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
        item.PlanePositionSequence[0].ImagePositionPatient[2] += 1.0  # between slices
    ds.save_as(tmp_path / "off2.dcm")
    with pytest.raises(ms.GeometryError, match="no slice of the reference grid"):
        ms.open_segmentation(tmp_path / "off2.dcm", reference=volume)


def test_written_seg_reads_back_identically_in_highdicom(tmp_path):
    """write_segmentation -> highdicom's reading: the same masks on the same source images."""
    folder = tmp_path / "ct"
    write_series(folder, 6, size=32, extra={
        "PatientBirthDate": "", "PatientSex": "", "PatientName": "t", "PatientID": "t",
        "StudyDate": "20260101", "StudyTime": "120000", "ReferringPhysicianName": "",
        "AccessionNumber": "", "StudyID": "1"})
    volume = ms.open_volume(folder)
    labels = np.zeros((6, 32, 32), dtype=np.uint8)
    labels[1:3, 4:12, 4:12] = 1
    labels[4, 20:28, 2:9] = 2
    ms.write_segmentation(labels, volume, tmp_path / "out.dcm", segments=["liver", "kidney"])
    uids = [ms.metadata.get("sopCommonModule", i)["sop_instance_uid"]
            for i in volume.geometry.image_ids]
    seg = hd.seg.segread(tmp_path / "out.dcm")
    got = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                            ignore_spatial_locations=True)
    assert np.array_equal(got, labels)
    assert [str(s.SegmentLabel) for s in seg.SegmentSequence] == ["liver", "kidney"]
    back = ms.open_segmentation(tmp_path / "out.dcm", reference=volume)
    assert np.array_equal(np.asarray(back), labels)


def test_seg_stored_with_stow_rs_and_read_back_over_dicomweb(orthanc, tmp_path):
    """write_segmentation -> ms.dicomweb.store (STOW-RS to a real Orthanc) -> open_segmentation
    of the instance URL, on the reference volume loaded over DICOMweb too."""
    folder = tmp_path / "ct"
    paths = write_series(folder, 5, size=32, extra={
        "PatientBirthDate": "", "PatientSex": "", "PatientName": "t", "PatientID": "t",
        "StudyDate": "20260101", "StudyTime": "120000", "ReferringPhysicianName": "",
        "AccessionNumber": "", "StudyID": "1"})
    result = ms.dicomweb.store(orthanc.dicomweb, paths)
    assert len(result.stored) == 5 and not result.failed
    study = pydicom.dcmread(paths[0], stop_before_pixels=True)
    series_url = (f"{orthanc.dicomweb}/studies/{study.StudyInstanceUID}/series/"
                  f"{study.SeriesInstanceUID}")
    ct = ms.open_volume(series_url)
    labels = np.zeros((5, 32, 32), dtype=np.uint8)
    labels[1:4, 8:20, 6:14] = 1
    seg_ds = ms.write_segmentation(labels, ct, tmp_path / "seg.dcm", segments=["lesion"])
    stored = ms.dicomweb.store(orthanc.dicomweb, [tmp_path / "seg.dcm"])
    assert stored.stored == [str(seg_ds.SOPInstanceUID)]
    url = (f"{orthanc.dicomweb}/studies/{seg_ds.StudyInstanceUID}/series/"
           f"{seg_ds.SeriesInstanceUID}/instances/{seg_ds.SOPInstanceUID}")
    back = ms.open_segmentation(url, reference=ct)
    assert [s.label for s in back.segments] == ["lesion"]
    assert np.array_equal(np.asarray(back), labels)


def test_seg_of_an_enhanced_multiframe_reference_is_placed_by_position(tmp_path):
    """A SEG made on a real enhanced multi-frame MR (Philips, 2 stacks of 32 frames): its frames
    all name the one instance, so they are placed by their positions."""
    from corpus import qa

    path = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    source = pydicom.dcmread(path)
    for keyword in ("PatientBirthDate", "PatientSex", "ReferringPhysicianName",
                    "AccessionNumber", "StudyID"):
        if keyword not in source:
            setattr(source, keyword, "")
    rows, cols = int(source.Rows), int(source.Columns)
    scan = ms.scan_folder(path.parent)
    volume = ms.open_volume(path.parent, series=scan.series[0].key)
    frames = [int(i.rsplit("=", 1)[1]) for i in volume.image_ids]  # this stack's frames, in order
    # the source as highdicom takes it: this stack's frames only (the other stack repeats the
    # positions), the same SOPInstanceUID
    pixels = source.pixel_array
    source.PerFrameFunctionalGroupsSequence = pydicom.Sequence(
        [source.PerFrameFunctionalGroupsSequence[f - 1] for f in frames])
    source.NumberOfFrames = len(frames)
    source.PixelData = np.ascontiguousarray(pixels[[f - 1 for f in frames]]).tobytes()
    masks = np.zeros((len(frames), rows, cols, 1), dtype=bool)
    masks[10:14, 20:40, 16:30, 0] = True
    groups = source.PerFrameFunctionalGroupsSequence  # Philips keeps even spacing per frame;
    shared = source.SharedFunctionalGroupsSequence[0]  # highdicom reads the shared groups
    for name in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if name not in shared:
            setattr(shared, name, getattr(groups[0], name))
    measures = groups[0].PixelMeasuresSequence[0]
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=masks, segmentation_type="BINARY",
        segment_descriptions=[_description(1, "spot")], series_instance_uid=hd.UID(),
        series_number=9, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="t",
        manufacturer_model_name="t", software_versions="1", device_serial_number="1",
        pixel_measures=hd.PixelMeasuresSequence(measures.PixelSpacing, measures.SliceThickness),
        plane_orientation=hd.PlaneOrientationSequence(
            "PATIENT", groups[0].PlaneOrientationSequence[0].ImageOrientationPatient),
        plane_positions=[hd.PlanePositionSequence("PATIENT",
                                                  g.PlanePositionSequence[0].ImagePositionPatient)
                         for g in groups])
    seg.save_as(tmp_path / "seg.dcm")
    ours = ms.open_segmentation(tmp_path / "seg.dcm", reference=volume).mask("spot")
    want = np.zeros((len(frames), rows, cols), dtype=bool)
    want[10:14, 20:40, 16:30] = True
    assert np.array_equal(ours, want)


def test_off_grid_seg_is_resampled_only_when_asked(ct, tmp_path):
    volume, datasets = ct
    masks = np.zeros((8, 32, 32, 1), dtype=bool)
    masks[2:5, 4:12, 6:14, 0] = True
    _make_seg(datasets, masks, "BINARY", ["x"], tmp_path / "seg.dcm")
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
        item.PlanePositionSequence[0].ImagePositionPatient[2] += 0.5  # off the slices
    ds.save_as(tmp_path / "off.dcm")
    with pytest.raises(ms.GeometryError):
        ms.open_segmentation(tmp_path / "off.dcm", reference=volume)
    seg = ms.open_segmentation(tmp_path / "off.dcm", reference=volume, resample=True)
    assert seg.masks.shape == (1, 8, 32, 32)  # nearest: each slice takes the frame 0.5 mm away
    assert np.array_equal(seg.mask("x"), masks[..., 0])


def test_pydicoms_rtstruct_lists_its_rois_and_needs_its_series(tmp_path):
    """pydicom's own rtstruct.dcm: its ROIs are listed from the header; its series is not in
    pydicom's test files, so contours cannot be placed: a typed error naming the reference."""
    import shutil

    from pydicom.data import get_testdata_file

    src = tmp_path / "rtstruct.dcm"
    shutil.copy(get_testdata_file("rtstruct.dcm"), src)
    ds = pydicom.dcmread(src, force=True)  # written without a preamble
    from medstream.cli import _segment_rows

    rows = _segment_rows(str(src))
    assert [r[1] for r in rows] == [str(r.ROIName) for r in ds.StructureSetROISequence]
    with pytest.raises(ms.GeometryError, match="reference"):
        ms.open_segmentation(src)
