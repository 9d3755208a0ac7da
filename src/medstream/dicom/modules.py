"""Cornerstone-style metadata modules from a pydicom Dataset (a Part 10 file or DICOMweb JSON).

Enhanced multi-frame objects keep per-frame attributes in functional groups; ``frame`` picks the
per-frame item, then the shared one, then the top level, so each frame gets its own position,
rescale and window.
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, Any

from .enhanced import HeaderLike, frame_acquisition, functional_item
from .ge import pepolar_warning
from .keywords import dictionary_vr, tag_for_keyword
from .rtdose import dose_frame_position, dose_scaling
from .values import as_finite_float as _geo1
from .values import as_finite_floats as _geo
from .values import as_float as _num
from .values import as_floats as _nums
from .values import as_int as _int
from .values import as_str as _str
from .values import as_strs as _strs
from .values import KeywordAttributes

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

MODULES = (
    "imagePlaneModule",
    "imagePixelModule",
    "generalSeriesModule",
    "generalStudyModule",
    "patientModule",
    "modalityLutModule",
    "voiLutModule",
    "multiframeModule",
    "sopCommonModule",
    "transferSyntax",
    "generalImageModule",
)


_NUMERIC_TEXT = frozenset({"DS", "IS"})
_TEXT = frozenset({"UI", "CS", "DA", "TM", "DT", "AS"})  # no character set applies
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


@functools.lru_cache(maxsize=None)
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag, dictionary_vr(tag)


def fast_get(ds: HeaderLike, keyword: str) -> Any:
    """``ds.get(keyword)`` without pydicom's per-element conversion for plain numbers and codes.

    A folder scan reads dozens of attributes from every file; pydicom's conversion is most of
    that cost. Raw little-endian values of the VRs above are decoded here (multi-values as
    lists); anything else (sequences, person names, text with a character set) goes to pydicom.
    """
    if isinstance(ds, KeywordAttributes):  # the light readers convert their own raw values
        return ds.get(keyword)
    from pydicom.dataelem import RawDataElement  # anything else comes from pydicom
    from pydicom.dataset import Dataset

    if not isinstance(ds, Dataset):
        return ds.get(keyword)
    tag, dict_vr = _tag_vr(keyword)
    raw = ds.get_item(tag, keep_deferred=True)
    if raw is None:
        return None
    if not isinstance(raw, RawDataElement) or not raw.is_little_endian or raw.value is None:
        return ds.get(keyword)
    vr = raw.VR or dict_vr
    value: bytes = raw.value
    if vr in _NUMERIC_TEXT or vr in _TEXT:
        text = value.decode("latin-1").strip(" \x00")
        if not text:
            return None
        items = [t.strip(" \x00") for t in text.split("\\")]
        return items if len(items) > 1 else items[0]
    code = _BINARY.get(vr)
    if code is None or len(value) % struct.calcsize(code):
        return ds.get(keyword)
    items = list(struct.unpack(f"<{len(value) // struct.calcsize(code)}{code}", value))
    return None if not items else items if len(items) > 1 else items[0]


def _lookup(ds: HeaderLike, frame: int, group_item: str, keyword: str) -> Any:
    item = functional_item(ds, frame, group_item)
    if item is not None and keyword in item:
        return item.get(keyword)
    return fast_get(ds, keyword)


def build_modules(ds: HeaderLike, frame: int = 0,
                  transfer_syntax_uid: str | None = None) -> dict[str, Any]:
    """All metadata modules for frame ``frame`` (0-based) of ``ds``."""

    g: Any = ds.get if isinstance(ds, KeywordAttributes) else (lambda kw: fast_get(ds, kw))
    rows, cols = _int(g("Rows")), _int(g("Columns"))
    iop = _geo(_lookup(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient"))
    ipp = _geo(_lookup(ds, frame, "PlanePositionSequence", "ImagePositionPatient"))
    spacing = _geo(_lookup(ds, frame, "PixelMeasuresSequence", "PixelSpacing"))
    if spacing is None:
        spacing = _geo(g("ImagerPixelSpacing"))
    thickness = _geo1(_lookup(ds, frame, "PixelMeasuresSequence", "SliceThickness"))
    between = _geo1(_lookup(ds, frame, "PixelMeasuresSequence", "SpacingBetweenSlices"))
    if g("GridFrameOffsetVector") is not None:  # an RT Dose grid: frames along the normal
        ipp = dose_frame_position(ds, frame, ipp, iop) or ipp
    slope = _num(_lookup(ds, frame, "PixelValueTransformationSequence", "RescaleSlope"))
    if slope is None:
        slope = dose_scaling(ds)  # RT Dose: stored values x DoseGridScaling = Gy
    intercept = _num(_lookup(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept"))
    rescale_type = _str(_lookup(ds, frame, "PixelValueTransformationSequence", "RescaleType"))
    wc = _nums(_lookup(ds, frame, "FrameVOILUTSequence", "WindowCenter"))
    ww = _nums(_lookup(ds, frame, "FrameVOILUTSequence", "WindowWidth"))
    voi_fn = _str(_lookup(ds, frame, "FrameVOILUTSequence", "VOILUTFunction"))
    ts = transfer_syntax_uid
    if ts is None:
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "TransferSyntaxUID" in meta:
            ts = str(meta.TransferSyntaxUID)
        elif "TransferSyntaxUID" in ds:  # DICOMweb JSON may carry (0002,0010) in the dataset
            ts = str(ds.TransferSyntaxUID)
    n_frames = _int(g("NumberOfFrames")) or 1
    return {
        "imagePlaneModule": {
            "frame_of_reference_uid": _str(g("FrameOfReferenceUID")),
            "rows": rows,
            "columns": cols,
            "image_orientation_patient": iop,
            "row_cosines": iop[:3] if iop and len(iop) == 6 else None,
            "column_cosines": iop[3:] if iop and len(iop) == 6 else None,
            "image_position_patient": ipp,
            "slice_thickness": thickness,
            "slice_location": _num(g("SliceLocation")),
            "spacing_between_slices": between,
            "pixel_spacing": spacing,
            # DICOM PixelSpacing is [row spacing (between rows), column spacing (between columns)]
            "row_pixel_spacing": spacing[0] if spacing else None,
            "column_pixel_spacing": spacing[1] if spacing and len(spacing) > 1 else None,
        },
        "imagePixelModule": {
            "samples_per_pixel": _int(g("SamplesPerPixel")) or 1,
            "photometric_interpretation": _str(g("PhotometricInterpretation")) or "MONOCHROME2",
            "rows": rows,
            "columns": cols,
            "bits_allocated": _int(g("BitsAllocated")),
            "bits_stored": _int(g("BitsStored")),
            "high_bit": _int(g("HighBit")),
            "pixel_representation": _int(g("PixelRepresentation")) or 0,
            "planar_configuration": _int(g("PlanarConfiguration")),
            "pixel_aspect_ratio": _nums(g("PixelAspectRatio")),
            "smallest_pixel_value": _int(g("SmallestImagePixelValue")),
            "largest_pixel_value": _int(g("LargestImagePixelValue")),
            "red_palette_color_lookup_table_descriptor": _nums(g("RedPaletteColorLookupTableDescriptor")),
        },
        "generalSeriesModule": {
            "modality": _str(g("Modality")),
            "series_instance_uid": _str(g("SeriesInstanceUID")),
            "series_number": _int(g("SeriesNumber")),
            "series_description": _str(g("SeriesDescription")),
            "series_date": _str(g("SeriesDate")),
            "series_time": _str(g("SeriesTime")),
            "study_instance_uid": _str(g("StudyInstanceUID")),
        },
        "generalStudyModule": {
            "study_instance_uid": _str(g("StudyInstanceUID")),
            "study_date": _str(g("StudyDate")),
            "study_time": _str(g("StudyTime")),
            "study_description": _str(g("StudyDescription")),
            "accession_number": _str(g("AccessionNumber")),
        },
        "patientModule": {
            "patient_name": _str(g("PatientName")),
            "patient_id": _str(g("PatientID")),
        },
        "generalImageModule": {
            "instance_number": _int(g("InstanceNumber")),
            "image_type": _strs(g("ImageType")),
            "vendor_warning": pepolar_warning(ds),
            "acquisition_number": _int(g("AcquisitionNumber")),
            "echo_number": _int(g("EchoNumbers")),
            "temporal_position": _int(g("TemporalPositionIdentifier")),
            **frame_acquisition(ds, frame),
        },
        "modalityLutModule": {
            "rescale_slope": slope if slope is not None else None,
            "rescale_intercept": intercept if intercept is not None else None,
            "rescale_type": rescale_type,
            "has_modality_lut_sequence": "ModalityLUTSequence" in ds,
        },
        "voiLutModule": {
            "window_center": wc,
            "window_width": ww,
            "voi_lut_function": voi_fn or "LINEAR",
        },
        "multiframeModule": {
            "number_of_frames": n_frames,
            "frame_number": frame + 1,
            "frame_time": _num(g("FrameTime")),
            "frame_increment_pointer": _str(g("FrameIncrementPointer")),
            "enhanced": "PerFrameFunctionalGroupsSequence" in ds,
        },
        "sopCommonModule": {
            "sop_class_uid": _str(g("SOPClassUID")),
            "sop_instance_uid": _str(g("SOPInstanceUID")),
        },
        "transferSyntax": {"transfer_syntax_uid": ts},
    }


# -- modules read on demand (medstream.dicom.instance): not on the header-scan hot path ----------
EXTRA_MODULES = ("petIsotopeModule", "petSeriesModule", "petImageModule", "patientStudyModule",
                 "overlayPlaneModule", "cineModule", "calibrationModule")


def _item_values(item: Dataset, keys: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    return {name: conv(item.get(kw)) for name, (kw, conv) in keys.items()}


def _overlays(ds: Dataset) -> list[dict[str, Any]]:
    """Overlay planes (groups 6000-601E): placement and the bit plane unpacked to 0/1 uint8."""
    import numpy as np

    out = []
    for group in range(0x6000, 0x6020, 2):
        data = ds.get((group, 0x3000))
        rows, cols = ds.get((group, 0x0010)), ds.get((group, 0x0011))
        if data is None or rows is None or cols is None:
            continue
        rows_n, cols_n = int(rows.value), int(cols.value)
        bits = np.unpackbits(np.frombuffer(data.value, np.uint8), bitorder="little")
        origin = ds.get((group, 0x0050))
        row, column = (int(v) for v in origin.value) if origin is not None else (1, 1)
        kind = ds.get((group, 0x0040))
        label, description = ds.get((group, 0x1500)), ds.get((group, 0x0022))
        out.append({
            "rows": rows_n, "columns": cols_n, "type": _str(kind.value) if kind else "G",
            "x": column, "y": row,  # 1-based, as (60xx,0050) gives them (row then column)
            "pixel_data": bits[: rows_n * cols_n].reshape(rows_n, cols_n),
            "label": _str(label.value) if label else None,
            "description": _str(description.value) if description else None,
        })
    return out


def extra_modules(ds: Dataset) -> dict[str, Any]:
    """Cornerstone's PET (SUV inputs), patient-study, overlay, cine and calibration modules."""
    radio = (ds.get("RadiopharmaceuticalInformationSequence") or [None])[0]
    radio_info = None if radio is None else _item_values(radio, {
        "radiopharmaceutical_start_time": ("RadiopharmaceuticalStartTime", _str),
        "radiopharmaceutical_start_date_time": ("RadiopharmaceuticalStartDateTime", _str),
        "radionuclide_total_dose": ("RadionuclideTotalDose", _num),
        "radionuclide_half_life": ("RadionuclideHalfLife", _num),
        "radiopharmaceutical": ("Radiopharmaceutical", _str),
    })
    regions = [_item_values(r, {
        "region_spatial_format": ("RegionSpatialFormat", _int),
        "region_data_type": ("RegionDataType", _int),
        "region_flags": ("RegionFlags", _int),
        "region_location_min_x0": ("RegionLocationMinX0", _int),
        "region_location_min_y0": ("RegionLocationMinY0", _int),
        "region_location_max_x1": ("RegionLocationMaxX1", _int),
        "region_location_max_y1": ("RegionLocationMaxY1", _int),
        "reference_pixel_x0": ("ReferencePixelX0", _int),
        "reference_pixel_y0": ("ReferencePixelY0", _int),
        "physical_units_x_direction": ("PhysicalUnitsXDirection", _int),
        "physical_units_y_direction": ("PhysicalUnitsYDirection", _int),
        "physical_delta_x": ("PhysicalDeltaX", _num),
        "physical_delta_y": ("PhysicalDeltaY", _num),
    }) for r in ds.get("SequenceOfUltrasoundRegions") or []]
    return {
        "petIsotopeModule": {"radiopharmaceutical_info": radio_info},
        "petSeriesModule": _item_values(ds, {
            "corrected_image": ("CorrectedImage", _strs),
            "units": ("Units", _str),
            "decay_correction": ("DecayCorrection", _str),
            "series_type": ("SeriesType", _strs),
        }),
        "petImageModule": _item_values(ds, {
            "frame_reference_time": ("FrameReferenceTime", _num),
            "actual_frame_duration": ("ActualFrameDuration", _num),
            "decay_factor": ("DecayFactor", _num),
            "acquisition_date": ("AcquisitionDate", _str),
            "acquisition_time": ("AcquisitionTime", _str),
        }),
        "patientStudyModule": _item_values(ds, {
            "patient_age": ("PatientAge", _str),
            "patient_size": ("PatientSize", _num),
            "patient_weight": ("PatientWeight", _num),
            "patient_sex": ("PatientSex", _str),
        }),
        "overlayPlaneModule": {"overlays": _overlays(ds)},
        "cineModule": _item_values(ds, {
            "frame_time": ("FrameTime", _num),
            "cine_rate": ("CineRate", _num),
            "recommended_display_frame_rate": ("RecommendedDisplayFrameRate", _num),
            "number_of_frames": ("NumberOfFrames", _int),
        }),
        "calibrationModule": {"sequence_of_ultrasound_regions": regions or None, **_item_values(ds, {
            "pixel_spacing_calibration_type": ("PixelSpacingCalibrationType", _str),
            "pixel_spacing_calibration_description": ("PixelSpacingCalibrationDescription", _str),
            "imager_pixel_spacing": ("ImagerPixelSpacing", _nums),
            "estimated_radiographic_magnification_factor": (
                "EstimatedRadiographicMagnificationFactor", _num),
        })},
    }
