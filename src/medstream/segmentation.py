"""DICOM Segmentation objects (SEG) as masks and labelmaps on an image volume's grid.

``ms.open_segmentation(source, reference=volume)`` reads a SEG (BINARY, FRACTIONAL, or the 2024
LABELMAP type) from a file, an object-store URL, bytes or a pydicom ``Dataset``, and places each
frame on the reference volume's slices: by ReferencedSOPInstanceUID when the frame names its
source image and the reference knows it, else by plane position. A frame that does not lie on
the reference grid is a ``GeometryError`` (no silent resampling). Without a reference, the SEG's
own frames give its grid. Pixels are read by pydicom (1-bit BINARY unpacked), segment
descriptions from the object; ``tests/test_segmentation.py`` checks them against highdicom.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import GeometryError, MedstreamError, VolumeError
from .volumes.geometry import SliceInfo, VolumeGeometry, compute_geometry

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
POSITION_TOL_MM = 0.01  # a frame's corner must match its slice's within this (in-plane)


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG: its number in the object, label, display colour (sRGB 0-255),
    and the coded category, type and algorithm type it declares."""

    number: int
    label: str
    color: tuple[int, int, int] | None = None
    category: str | None = None
    type: str | None = None
    algorithm: str | None = None


@dataclass
class Segmentation:
    """Masks of the segments on one grid (the reference volume's, or the SEG's own)."""

    segments: list[Segment]
    masks: np.ndarray  # (n_segments, z, y, x): bool, or float32 0..1 for FRACTIONAL
    geometry: VolumeGeometry
    segmentation_type: str
    reference: Any = None
    _by_label: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_label = {s.label: i for i, s in enumerate(self.segments)}

    def mask(self, segment: str | int) -> np.ndarray:
        """One segment's mask ``(z, y, x)``, by label or by segment number."""
        if isinstance(segment, str):
            if segment not in self._by_label:
                raise KeyError(f"no segment labelled {segment!r}; labels: "
                               f"{[s.label for s in self.segments]}")
            return self.masks[self._by_label[segment]]
        for i, s in enumerate(self.segments):
            if s.number == segment:
                return self.masks[i]
        raise KeyError(f"no segment number {segment}; numbers: "
                       f"{[s.number for s in self.segments]}")

    @property
    def labelmap(self) -> Any:
        """A volume on the same grid: 0 is background, else the segment number. Overlapping
        segments cannot be one labelmap: a ``VolumeError`` names them (use ``masks``)."""
        from .interop import volume_from_array

        top = max((s.number for s in self.segments), default=0)
        dtype = np.uint8 if top < 256 else np.uint16
        labels = np.zeros(self.masks.shape[1:], dtype=dtype)
        overlapping: set[str] = set()
        for i, s in enumerate(self.segments):  # one pass per segment, no (n, z, y, x) temporary
            present = self.masks[i] if self.masks.dtype == bool else self.masks[i] > 0.5
            taken = labels[present]
            if taken.any():
                overlapping.add(s.label)
                overlapping.update(self.segments[j].label for j, t in enumerate(self.segments)
                                   if t.number in set(np.unique(taken).tolist()))
            labels[present] = s.number
        if overlapping:
            raise VolumeError(f"segments overlap ({', '.join(sorted(overlapping))}): one "
                              "labelmap cannot hold them; use .masks")
        like = self.reference if self.reference is not None else self.geometry
        return volume_from_array(labels, like, cache=False)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        labels = np.asarray(self.labelmap.scalar_data)
        return labels.astype(dtype) if dtype is not None else labels

    def label_table(self) -> dict[str, dict[str, Any]]:
        """Segment number -> label, colour and codes (what a saved labelmap's values mean)."""
        return {str(s.number): {"label": s.label, "color": list(s.color) if s.color else None,
                                "category": s.category, "type": s.type,
                                "algorithm": s.algorithm} for s in self.segments}

    def save(self, path: str | os.PathLike[str]) -> Any:
        """The labelmap as NIfTI (.nii, .nii.gz), .npy or .npz, with its label table beside it
        as JSON (``<name>.labels.json``)."""
        import json

        written = self.labelmap.save(path)
        name = os.fspath(written)
        for suffix in (".nii.gz", ".nii", ".npy", ".npz"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        with open(name + ".labels.json", "w") as fh:
            json.dump(self.label_table(), fh, indent=1)
        return written


# -- reading -------------------------------------------------------------------------------------
def _dataset(source: Any, http: dict[str, Any]) -> Any:
    import pydicom

    if isinstance(source, pydicom.Dataset):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return pydicom.dcmread(io.BytesIO(bytes(source)))
    path = os.fspath(source)
    url = path[len("wadors:"):] if path.startswith("wadors:") else path
    if url.startswith(("http://", "https://")):  # a DICOMweb instance URL: the object itself
        from .core.runtime import runtime
        from .loaders.wadors import INSTANCE_ACCEPT
        from .loaders.wadouri import fetch_part10

        parsed = runtime.run_sync(fetch_part10(f"wadors:{url}", url, INSTANCE_ACCEPT, **http))
        return parsed.dataset
    from .storage import is_remote, storage

    if is_remote(path):
        return pydicom.dcmread(io.BytesIO(storage.read_all(path, path)), force=True)
    return pydicom.dcmread(path, force=True)  # objects written without a preamble too


def _text(item: Any, keyword: str) -> str | None:
    seq = item.get(keyword) if item is not None else None
    return str(seq[0].CodeMeaning) if seq and "CodeMeaning" in seq[0] else None


def lab_to_rgb(lab: Any) -> tuple[int, int, int] | None:
    """DICOM CIELab (PS3.3 C.10.7.1.1: 16-bit scaled L*a*b*, D65) to sRGB 0-255."""
    if lab is None or len(lab) != 3:
        return None
    ell = float(lab[0]) * 100.0 / 65535.0
    a = float(lab[1]) * 255.0 / 65535.0 - 128.0
    b = float(lab[2]) * 255.0 / 65535.0 - 128.0
    fy = (ell + 16.0) / 116.0
    fx, fz = fy + a / 500.0, fy - b / 200.0

    def inv(t: float) -> float:
        return t**3 if t**3 > 0.008856 else (t - 16.0 / 116.0) / 7.787

    xyz = np.array([0.95047 * inv(fx), 1.0 * inv(fy), 1.08883 * inv(fz)])
    rgb = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415],
                    [0.0557, -0.2040, 1.0570]]) @ xyz
    rgb = np.where(rgb > 0.0031308, 1.055 * np.power(np.clip(rgb, 0, None), 1 / 2.4) - 0.055,
                   12.92 * rgb)
    r, g, bb = (int(round(float(np.clip(v, 0, 1)) * 255)) for v in rgb)
    return r, g, bb


def _segments(ds: Any) -> list[Segment]:
    out = []
    for item in ds.get("SegmentSequence") or []:
        if int(item.SegmentNumber) == 0:
            continue  # a LABELMAP's background: what is left where no segment is
        out.append(Segment(
            number=int(item.SegmentNumber), label=str(item.get("SegmentLabel") or
                                                      f"segment {item.SegmentNumber}"),
            color=lab_to_rgb(item.get("RecommendedDisplayCIELabValue")),
            category=_text(item, "SegmentedPropertyCategoryCodeSequence"),
            type=_text(item, "SegmentedPropertyTypeCodeSequence"),
            algorithm=str(item.get("SegmentAlgorithmType")) if "SegmentAlgorithmType" in item
            else None))
    return out


def _group(ds: Any, k: int, sequence: str) -> Any:
    """Functional group ``sequence`` of frame ``k``: per-frame, else shared (a value that is the
    same for every frame, such as the one segment of a single-segment SEG, is shared)."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per and k < len(per) and per[k].get(sequence):
        return per[k].get(sequence)
    shared = ds.get("SharedFunctionalGroupsSequence")
    return shared[0].get(sequence) if shared else None


def _frame_facts(ds: Any, k: int) -> tuple[int | None, str | None, np.ndarray | None]:
    """(segment number, referenced source SOPInstanceUID, ImagePositionPatient) of frame k."""
    ident = _group(ds, k, "SegmentIdentificationSequence")
    number = int(ident[0].ReferencedSegmentNumber) if ident else None
    source = None
    deriv = _group(ds, k, "DerivationImageSequence")
    if deriv and deriv[0].get("SourceImageSequence"):
        source = str(deriv[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
    pos = _group(ds, k, "PlanePositionSequence")
    ipp = np.array([float(x) for x in pos[0].ImagePositionPatient]) if pos else None
    return number, source, ipp


def _shared(ds: Any, sequence: str, keyword: str) -> Any:
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and keyword in shared[0][sequence][0]:
        return shared[0][sequence][0].get(keyword)
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per and sequence in per[0] and keyword in per[0][sequence][0]:
        return per[0][sequence][0].get(keyword)
    return None


def _frames(ds: Any) -> np.ndarray:
    arr = ds.pixel_array
    n = int(ds.get("NumberOfFrames") or 1)
    return arr.reshape(n, int(ds.Rows), int(ds.Columns))


def _reference_slices(reference: Any) -> tuple[dict[str, int], np.ndarray]:
    """(SOPInstanceUID -> slice index, slice positions) of a reference volume."""
    from .core.metadata import metadata

    seen: dict[str, list[int]] = {}
    for k, image_id in enumerate(reference.geometry.image_ids):
        sop = (metadata.get("sopCommonModule", image_id) or {}).get("sop_instance_uid")
        if sop:
            seen.setdefault(str(sop), []).append(k)
    # an instance with several slices (enhanced multi-frame) is matched by position instead
    uids = {uid: ks[0] for uid, ks in seen.items() if len(ks) == 1}
    return uids, np.asarray(reference.geometry.positions, dtype=float)


def _own_geometry(ds: Any, positions: list[np.ndarray]) -> VolumeGeometry:
    iop = _shared(ds, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = _shared(ds, "PixelMeasuresSequence", "PixelSpacing")
    if iop is None or spacing is None or not positions:
        raise GeometryError("the SEG has no plane orientation, pixel spacing or positions to "
                            "build its own grid; give reference=")
    unique: list[np.ndarray] = []
    for p in positions:
        if not any(np.allclose(p, u, atol=POSITION_TOL_MM) for u in unique):
            unique.append(p)
    slices = [SliceInfo(f"seg:{k}", int(ds.Rows), int(ds.Columns),
                        position=(float(p[0]), float(p[1]), float(p[2])),
                        orientation=tuple(float(x) for x in iop),
                        pixel_spacing=(float(spacing[0]), float(spacing[1])))
              for k, p in enumerate(unique)]
    return compute_geometry(slices, spacing="keep", warn=False)


RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def _even_odd_fill(polygon: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Pixels whose centres lie inside ``polygon`` ((n, 2) column, row), by the even-odd rule:
    every crossing of every pixel row's centre line at once, sorted, filled pairwise."""
    out = np.zeros((rows, cols), dtype=bool)
    x, y = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    lo, hi = np.minimum(y, y2), np.maximum(y, y2)
    first = np.maximum(np.ceil(lo), 0).astype(np.int64)  # rows r with lo <= r < hi
    last = np.minimum(np.ceil(hi) - 1, rows - 1).astype(np.int64)
    count = np.maximum(last - first + 1, 0)
    if not count.any():
        return out
    edge = np.repeat(np.arange(len(x)), count)
    r = first[edge] + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
    xs = x[edge] + (r - y[edge]) * (x2[edge] - x[edge]) / (y2[edge] - y[edge])
    order = np.lexsort((xs, r))
    r, xs = r[order], xs[order]
    start_of_row = np.r_[True, r[1:] != r[:-1]]
    rank = np.arange(len(r)) - np.maximum.accumulate(np.where(start_of_row, np.arange(len(r)), 0))
    begin, end = rank % 2 == 0, rank % 2 == 1
    rb, xb = r[begin], xs[begin]
    xe = xs[end]
    n = min(len(rb), len(xe))
    c0 = np.maximum(np.ceil(xb[:n]), 0).astype(np.int64)
    c1 = np.minimum(np.floor(xe[:n]), cols - 1).astype(np.int64)
    keep = c0 <= c1
    if not keep.any():
        return out
    r0, r1 = int(rb[:n][keep].min()), int(rb[:n][keep].max())  # only the rows it spans
    diff = np.zeros((r1 - r0 + 1, cols + 1), dtype=np.int32)
    np.add.at(diff, (rb[:n][keep] - r0, c0[keep]), 1)
    np.add.at(diff, (rb[:n][keep] - r0, c1[keep] + 1), -1)
    out[r0 : r1 + 1] = np.cumsum(diff[:, :cols], axis=1) > 0
    return out


def _boundary(polygon: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Pixels an edge of ``polygon`` passes through (nearest pixel centres along each edge, at
    most half a pixel apart): the contour line itself belongs to the region."""
    out = np.zeros((rows, cols), dtype=bool)
    p, q = polygon, np.roll(polygon, -1, axis=0)
    steps = np.maximum(np.ceil(np.abs(q - p).max(axis=1) * 2).astype(int), 1)
    offsets = np.repeat(np.cumsum(steps + 1) - (steps + 1), steps + 1)
    t = (np.arange(int((steps + 1).sum())) - offsets) / np.repeat(steps, steps + 1)
    start = np.repeat(p, steps + 1, axis=0)
    delta = np.repeat(q - p, steps + 1, axis=0)
    pts = np.floor(start + t[:, None] * delta + 0.5).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < cols) & (pts[:, 1] >= 0) & (pts[:, 1] < rows)
    out[pts[ok, 1], pts[ok, 0]] = True
    return out


def _rtstruct(ds: Any, reference: Any) -> Segmentation:
    """RTSTRUCT contours rasterised on the reference grid: each ROI a segment; contours of one
    ROI on one slice combine by the even-odd rule (an inner contour is a hole), and the pixels
    every contour line passes through belong to the ROI (the convention of rt-utils and of
    OpenCV's polygon filling)."""
    import warnings

    if reference is None:
        raise GeometryError("an RTSTRUCT holds contours, not a grid: give reference= (the "
                            "volume of the series it was drawn on)")
    geometry = reference.geometry
    to_index = np.linalg.inv(np.asarray(geometry.affine, dtype=float))
    nz, rows, cols = geometry.shape[:3]
    names = {int(r.ROINumber): str(r.get("ROIName") or f"ROI {r.ROINumber}")
             for r in ds.get("StructureSetROISequence") or []}
    segments: list[Segment] = []
    masks: list[np.ndarray] = []
    skipped_points = 0
    for roi in ds.get("ROIContourSequence") or []:
        number = int(roi.ReferencedROINumber)
        color = roi.get("ROIDisplayColor")
        mask = np.zeros((nz, rows, cols), dtype=bool)
        lines = np.zeros((nz, rows, cols), dtype=bool)
        for contour in roi.get("ContourSequence") or []:
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
            if kind != "CLOSED_PLANAR":
                skipped_points += 1
                continue
            pts = np.asarray([float(v) for v in contour.ContourData], dtype=float).reshape(-1, 3)
            ijk = (to_index @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]  # (column, row, slice)
            k = float(np.median(ijk[:, 2]))
            z = int(round(k))
            if abs(k - z) > 0.1 or np.ptp(ijk[:, 2]) > 0.1 or not 0 <= z < nz:
                raise GeometryError(f"ROI {names.get(number, number)}: a contour lies between "
                                    f"or outside the reference slices (slice index {k:.2f}): "
                                    "not on this grid")
            mask[z] ^= _even_odd_fill(ijk[:, :2], rows, cols)
            lines[z] |= _boundary(ijk[:, :2], rows, cols)
        mask |= lines
        rgb = (int(color[0]), int(color[1]), int(color[2])) if color and len(color) >= 3 else None
        segments.append(Segment(number, names.get(number, f"ROI {number}"), rgb))
        masks.append(mask)
    if skipped_points:
        warnings.warn(f"RTSTRUCT: {skipped_points} contour(s) that are not CLOSED_PLANAR "
                      "(points, open lines) were ignored", stacklevel=3)
    stacked = np.stack(masks) if masks else np.zeros((0, nz, rows, cols), dtype=bool)
    return Segmentation(segments, stacked, geometry, "RTSTRUCT", reference)


def referenced_series_uid(ds: Any) -> str | None:
    """The SeriesInstanceUID of the images a SEG or RTSTRUCT was made on, where it says."""
    for item in ds.get("ReferencedSeriesSequence") or []:  # SEG
        if "SeriesInstanceUID" in item:
            return str(item.SeriesInstanceUID)
    for frame in ds.get("ReferencedFrameOfReferenceSequence") or []:  # RTSTRUCT
        for study in frame.get("RTReferencedStudySequence") or []:
            for series in study.get("RTReferencedSeriesSequence") or []:
                if "SeriesInstanceUID" in series:
                    return str(series.SeriesInstanceUID)
    return None


def _find_reference(source: Any, ds: Any, http: dict[str, Any]) -> Any:
    """The referenced series beside ``source``: in the same folder (a file) or the same DICOMweb
    study (an instance URL); None where it cannot be found there."""
    from .discovery.source import open_volume

    uid = referenced_series_uid(ds)
    if uid is None or isinstance(source, (bytes, bytearray, memoryview)) or \
            not isinstance(source, (str, os.PathLike)):
        return None
    text = os.fspath(source)
    url = text[len("wadors:"):] if text.startswith("wadors:") else text
    if "/studies/" in url and url.startswith(("http://", "https://")):
        study = url.split("/series/")[0]
        return open_volume(f"{study}/series/{uid}", **http)
    folder = os.path.dirname(os.path.abspath(text))
    try:
        return open_volume(folder, series=uid)
    except MedstreamError:
        return None


def open_segmentation(source: Any, reference: Any = None, *, resample: bool = False,
                      **http: Any) -> Segmentation:
    """A SEG as masks on ``reference``'s grid (a volume of the images it segments), or on its
    own grid without one; an RTSTRUCT's contours rasterised on ``reference``'s grid. ``source``:
    a path, object-store URL, DICOMweb instance URL (``http``: its HTTP options), bytes or a
    pydicom Dataset. A SEG whose frames are not on the reference grid is a ``GeometryError``,
    or, with ``resample=True``, its own grid resampled onto the reference's (nearest for
    BINARY and LABELMAP, trilinear for FRACTIONAL)."""
    ds = _dataset(source, http)
    if resample and reference is not None and ds.get("Modality") != "RTSTRUCT":
        try:
            return open_segmentation(ds, reference)
        except GeometryError:
            return _resampled(open_segmentation(ds), reference)
    if reference is None and ds.get("Modality") == "RTSTRUCT":  # contours need a grid: the
        reference = _find_reference(source, ds, http)  # series beside it, where there is one
    sop = str(ds.get("SOPClassUID", ""))
    if sop == RTSTRUCT_SOP_CLASS or ds.get("Modality") == "RTSTRUCT":
        return _rtstruct(ds, reference)
    if sop not in (SEG_SOP_CLASS, LABELMAP_SOP_CLASS):
        modality = ds.get("Modality")
        raise MedstreamError(f"not a DICOM Segmentation (SOP class {sop}, modality {modality})")
    kind = str(ds.get("SegmentationType", "BINARY")).upper()
    labelmap_iod = sop == LABELMAP_SOP_CLASS or kind == "LABELMAP"
    segments = _segments(ds)
    frames = _frames(ds)
    facts = [_frame_facts(ds, k) for k in range(frames.shape[0])]
    if reference is not None:
        geometry = reference.geometry
        uids, positions = _reference_slices(reference)
    else:
        geometry = _own_geometry(ds, [f[2] for f in facts if f[2] is not None])
        uids, positions = {}, np.asarray(geometry.positions, dtype=float)
    shape = geometry.shape
    if frames.shape[1:] != shape[1:]:
        raise GeometryError(f"SEG frames are {frames.shape[1]}x{frames.shape[2]}, the reference "
                            f"slices {shape[1]}x{shape[2]}: not on its grid (resampling is not "
                            "done)")
    index = {s.number: i for i, s in enumerate(segments)}
    fractional = kind == "FRACTIONAL"
    masks = np.zeros((len(segments), *shape), dtype=np.float32 if fractional else bool)
    scale = float(ds.get("MaximumFractionalValue") or 255) if fractional else 1.0
    for k, (number, source_uid, ipp) in enumerate(facts):
        z = uids.get(source_uid) if source_uid else None
        if z is None:
            if ipp is None:
                raise GeometryError(f"SEG frame {k + 1} names no source image the reference has "
                                    "and no position")
            dist = np.linalg.norm(positions - ipp, axis=1)
            z = int(np.argmin(dist))
            if dist[z] > POSITION_TOL_MM:
                raise GeometryError(f"SEG frame {k + 1} at {ipp.round(3).tolist()} lies on no "
                                    f"slice of the reference grid (nearest {dist[z]:.3f} mm "
                                    "away): not resampled")
        frame = frames[k]
        if labelmap_iod:
            for number2, i in index.items():
                masks[i, z] |= frame == number2
        elif number in index:
            if fractional:
                masks[index[number], z] = frame.astype(np.float32) / scale
            else:
                np.logical_or(masks[index[number], z], frame, out=masks[index[number], z])
    return Segmentation(segments, masks, geometry, "LABELMAP" if labelmap_iod else kind,
                        reference)





def _resampled(own: Segmentation, reference: Any) -> Segmentation:
    """A segmentation on its own grid, put on ``reference``'s by world coordinates."""
    from .volumes.resample import resample_array

    fractional = own.masks.dtype.kind == "f"
    masks = np.stack([resample_array(m.astype(np.float32) if fractional else m.astype(np.uint8),
                                     own.geometry, reference.geometry, 0.0,
                                     nearest=not fractional) for m in own.masks])
    masks = masks.astype(np.float32) if fractional else masks.astype(bool)
    return Segmentation(own.segments, masks, reference.geometry, own.segmentation_type, reference)


# -- writing -------------------------------------------------------------------------------------
def _source_datasets(reference: Any) -> list[Any]:
    """The reference volume's source headers, in its slice order (what a SEG refers to)."""
    from .dicom.instance import header_of

    out = []
    for image_id in reference.geometry.image_ids:
        ds = header_of(image_id)
        if ds is None:
            raise MedstreamError(f"{image_id}: its header is not available (a SEG refers to "
                                 "each source image)")
        out.append(ds)
    return out


def write_segmentation(labels_or_masks: Any, reference: Any, path: str | os.PathLike[str],
                       segments: list[Segment | str] | None = None, *,
                       segmentation_type: str = "BINARY", series_description: str = "medstream",
                       manufacturer: str = "medstream") -> Any:
    """A standard DICOM SEG (written with highdicom) of a labelmap ``(z, y, x)`` (0 background,
    else segment numbers) or masks ``(n_segments, z, y, x)`` on ``reference``'s grid, referring
    to its source images. ``segments``: labels (or ``Segment``s) in segment-number order.
    ``segmentation_type``: BINARY (default), FRACTIONAL (masks of 0..1) or LABELMAP."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    data = np.asarray(labels_or_masks)
    shape = tuple(reference.geometry.shape[:3])
    if data.shape == shape:  # a labelmap
        numbers = [int(n) for n in np.unique(data) if n != 0]
        masks = np.stack([data == n for n in numbers], axis=-1) if numbers else \
            np.zeros((*shape, 1), dtype=bool)
        numbers = numbers or [1]
    elif data.ndim == 4 and data.shape[1:] == shape:
        masks = np.moveaxis(data, 0, -1)
        numbers = list(range(1, data.shape[0] + 1))
    else:
        raise ValueError(f"labels {data.shape} are not on the reference grid {shape}: a "
                         "labelmap (z, y, x) or masks (n_segments, z, y, x)")
    given = list(segments or [])
    descriptions = []
    for i, number in enumerate(numbers):
        item = given[i] if i < len(given) else None
        label = item.label if isinstance(item, Segment) else (str(item) if item else
                                                             f"segment {number}")
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=label,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    kind = segmentation_type.upper()
    if kind == "FRACTIONAL":
        pixels = masks.astype(np.float32)
    elif kind == "LABELMAP":
        pixels = masks.astype(bool)
    else:
        pixels = masks.astype(bool)
    seg = hd.seg.Segmentation(
        source_images=_source_datasets(reference), pixel_array=pixels, segmentation_type=kind,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=300,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=manufacturer,
        manufacturer_model_name="medstream", software_versions="medstream",
        device_serial_number="0", series_description=series_description)
    seg.save_as(os.fspath(path))
    return seg

__all__ = ["Segment", "Segmentation", "lab_to_rgb", "open_segmentation", "write_segmentation"]
