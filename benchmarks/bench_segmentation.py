"""Segmentations to a labelmap: medstream against highdicom (SEG) and rt-utils (RTSTRUCT), same
objects, same run.

A 300 x 512x512 CT (the series bench_volume.py builds), a 10-segment BINARY SEG made with
highdicom and a 10-ROI RTSTRUCT made with rt-utils on it (ellipsoids through most slices). Timed,
best of ``--repeat`` after a warm-up:

- SEG: ``ms.open_segmentation(seg, reference=ct).labelmap`` vs highdicom's
  ``segread(seg).get_pixels_by_source_instance(..., combine_segments=True)`` (both given the CT's
  source instances; the CT volume is loaded once beforehand for medstream);
- RTSTRUCT: ``open_volume(ct)`` + ``open_segmentation(rt, reference=ct)`` + masks vs rt-utils'
  ``RTStructBuilder.create_from(series, rt)`` + ``get_roi_mask_by_name`` for each ROI (both read
  the series from disk).

The results are checked equal (SEG) and Dice >= 0.98 (RTSTRUCT) first.

    .venv/bin/python benchmarks/bench_segmentation.py [--slices 300] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
warnings.filterwarnings("ignore")

STUDY = {"StudyDate": "20260101", "StudyTime": "120000", "PatientName": "bench",
         "PatientID": "bench", "PatientBirthDate": "", "PatientSex": "",
         "ReferringPhysicianName": "", "AccessionNumber": "", "StudyID": "1",
         "SeriesNumber": 1, "Manufacturer": "bench"}


def masks_for(shape: tuple[int, int, int], n: int) -> np.ndarray:
    """(z, y, x, n) non-overlapping ellipsoids."""
    z, y, x = np.ogrid[0:shape[0], 0:shape[1], 0:shape[2]]
    out = np.zeros((*shape, n), dtype=bool)
    for i in range(n):
        cy, cx = shape[1] * (0.25 + 0.5 * (i % 2)), shape[2] * (0.1 + 0.08 * i)
        r = ((z - shape[0] / 2) / (shape[0] * 0.45)) ** 2 + ((y - cy) / (shape[1] * 0.2)) ** 2 \
            + ((x - cx) / (shape[2] * 0.035)) ** 2
        out[..., i] = r < 1
    return out


def best(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes
    from rt_utils import RTStructBuilder

    import medstream as ms
    from series import write_series

    data = ROOT / "benchmarks" / ".data" / f"seg-ct-{args.slices}"
    if not data.exists():
        write_series(data / "ct", args.slices, size=512, spacing=1.0, pixel_spacing=(0.7, 0.7),
                     extra=STUDY)
    ct_dir = data / "ct"
    ct = ms.open_volume(ct_dir)
    datasets = [pydicom.dcmread(ms.metadata.get("instance", i) and i.split(":", 1)[1],
                                stop_before_pixels=True) for i in ct.geometry.image_ids]
    for ds in datasets:
        for k, v in STUDY.items():
            if k not in ds:
                setattr(ds, k, v)
    uids = [str(d.SOPInstanceUID) for d in datasets]
    masks = masks_for(ct.shape, 10)
    seg_path, rt_path = data / "seg.dcm", data / "rt.dcm"
    if not seg_path.exists():
        for ds, path in zip(datasets, ct.geometry.image_ids):
            full = pydicom.dcmread(path.split(":", 1)[1])
            ds.PixelData, ds.BitsAllocated = full.PixelData, full.BitsAllocated
        descriptions = [hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=f"s{i + 1}",
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for i in range(10)]
        hd.seg.Segmentation(
            source_images=datasets, pixel_array=masks, segmentation_type="BINARY",
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9,
            sop_instance_uid=hd.UID(), instance_number=1, manufacturer="bench",
            manufacturer_model_name="b", software_versions="1", device_serial_number="1",
        ).save_as(seg_path)
    if not rt_path.exists():
        rt = RTStructBuilder.create_new(dicom_series_path=str(ct_dir))
        order = [str(d.SOPInstanceUID) for d in rt.series_data]  # rt-utils' own slice order
        to_rt = [uids.index(u) for u in order]
        for i in range(10):
            rt.add_roi(mask=np.moveaxis(masks[to_rt, :, :, i], 0, -1), name=f"r{i + 1}")
        rt.save(str(rt_path))

    labels = np.zeros(ct.shape, dtype=np.uint8)
    for i in range(10):
        labels[masks[..., i]] = i + 1

    def medstream_seg() -> np.ndarray:
        return np.asarray(ms.open_segmentation(seg_path, reference=ct))

    def highdicom_seg() -> np.ndarray:
        return hd.seg.segread(seg_path).get_pixels_by_source_instance(
            source_sop_instance_uids=uids, combine_segments=True, ignore_spatial_locations=True)

    assert np.array_equal(medstream_seg(), labels) and np.array_equal(highdicom_seg(), labels)

    def medstream_rt() -> np.ndarray:
        ms.purge_cache()
        volume = ms.open_volume(ct_dir)
        return ms.open_segmentation(rt_path, reference=volume).masks

    def rtutils_rt() -> list[np.ndarray]:
        rt = RTStructBuilder.create_from(dicom_series_path=str(ct_dir), rt_struct_path=str(rt_path))
        return [rt.get_roi_mask_by_name(f"r{i + 1}") for i in range(10)]

    ours, theirs = medstream_rt(), rtutils_rt()
    order = [str(d.SOPInstanceUID) for d in RTStructBuilder.create_from(
        dicom_series_path=str(ct_dir), rt_struct_path=str(rt_path)).series_data]
    back = [uids.index(u) for u in order]
    dice = []
    for i in range(10):
        t = np.zeros_like(ours[i])
        t[back] = np.moveaxis(theirs[i], -1, 0)
        dice.append(2 * (ours[i] & t).sum() / (ours[i].sum() + t.sum()))
    assert min(dice) >= 0.98, dice

    rows = {
        "seg_medstream_s": best(medstream_seg, args.repeat),
        "seg_highdicom_s": best(highdicom_seg, args.repeat),
        "rt_medstream_s": best(medstream_rt, args.repeat),
        "rt_rtutils_s": best(rtutils_rt, args.repeat),
        "rt_min_dice": round(min(dice), 4),
    }
    print(json.dumps(rows))
    print(f"\n| object | medstream | peer | peer / medstream |\n|---|---|---|---|\n"
          f"| SEG, 10 segments, {args.slices} x 512^2 | {rows['seg_medstream_s']:.2f} s | "
          f"highdicom {rows['seg_highdicom_s']:.2f} s | "
          f"{rows['seg_highdicom_s'] / rows['seg_medstream_s']:.2f}x |\n"
          f"| RTSTRUCT, 10 ROIs, with the CT read | {rows['rt_medstream_s']:.2f} s | "
          f"rt-utils {rows['rt_rtutils_s']:.2f} s | "
          f"{rows['rt_rtutils_s'] / rows['rt_medstream_s']:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
