"""Enhanced multi-frame objects: what each frame IS, from the functional groups.

One enhanced file may hold several volumes (magnitude and phase, echoes, diffusion directions,
time points) whose frames share positions. Top-level attributes cannot tell them apart, so each
frame's acquisition identity is read from its Per-Frame Functional Groups (then the Shared ones,
then the top level for classic objects): stack, temporal position, the non-spatial Dimension
Index Values, frame type and complex component, echo time, diffusion b-value and direction,
trigger delay and acquisition time. Volumes are grouped by these keys, never by file order.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, Union

from .values import as_float, as_int

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from .fastheader import FastHeader
    from .jsonmeta import JsonDataset

#: What the module builders read: a pydicom ``Dataset`` or one of the light readers' views.
HeaderLike = Union["Dataset", "FastHeader", "JsonDataset"]

# Dimension index pointers that index space (the slice within a stack), not an acquisition.
SPATIAL_POINTERS = frozenset({0x00209057, 0x00200032, 0x00201041})  # InStackPosition, IPP, SliceLocation

_FRAME_TYPE_SEQUENCES = (
    "MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "PETFrameTypeSequence",
    "XAXRFFrameCharacteristicsSequence", "FrameTypeSequence",
)


def functional_item(ds: HeaderLike, frame: int, group: str) -> Dataset | None:
    """The item of functional group ``group`` for ``frame`` (0-based): per-frame, then shared."""
    if not getattr(type(ds), "functional_groups", True):  # a light reader that holds none
        return None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and 0 <= frame < len(per_frame):
        inner = per_frame[frame].get(group)
        if inner:
            return inner[0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        inner = shared[0].get(group)
        if inner:
            return inner[0]
    return None


def _value(ds: HeaderLike, frame: int, group: str, keyword: str) -> Any:
    item = functional_item(ds, frame, group)
    if item is not None and keyword in item:
        return item.get(keyword)
    return ds.get(keyword)


def seconds_of(value: Any) -> float | None:
    """A DT or TM value as seconds (since the epoch for DT, since midnight for TM)."""
    if value is None or value == "":
        return None
    text = str(value).strip().split("+")[0].split("-")[0]
    if not text:
        return None
    try:
        if len(text) >= 14 and text[:8].isdigit():  # DT: YYYYMMDDHHMMSS.ffffff
            day = _dt.datetime.strptime(text[:8], "%Y%m%d").replace(tzinfo=_dt.timezone.utc)
            return day.timestamp() + _tm_seconds(text[8:])
        return _tm_seconds(text)
    except ValueError:
        return None


def _tm_seconds(tm: str) -> float:
    hh, mm, ss = int(tm[0:2] or 0), int(tm[2:4] or 0), float(tm[4:] or 0)
    return hh * 3600 + mm * 60 + ss


def _tag_int(pointer: Any) -> int | None:
    """A tag as an int, from pydicom (an int) or a light reader (text "(gggg,eeee)")."""
    if pointer is None or isinstance(pointer, int):
        return pointer
    try:
        return int(str(pointer).strip("()").replace(",", ""), 16)
    except ValueError:
        return None


def _spatial_slots(ds: HeaderLike) -> tuple[int, ...]:
    out = []
    for k, item in enumerate(ds.get("DimensionIndexSequence") or ()):
        if _tag_int(item.get("DimensionIndexPointer")) in SPATIAL_POINTERS:
            out.append(k)
    return tuple(out)


def _frame_type(ds: HeaderLike, frame: int) -> tuple[tuple[str, ...] | None, str | None]:
    for seq in _FRAME_TYPE_SEQUENCES:
        item = functional_item(ds, frame, seq)
        if item is not None:
            ft = item.get("FrameType")
            kind = item.get("ComplexImageComponent")
            return (tuple(str(x) for x in ft) if ft else None), (str(kind) if kind else None)
    return None, None


def frame_acquisition(ds: HeaderLike, frame: int = 0) -> dict[str, Any]:
    """Acquisition identity and timing of frame ``frame`` (0-based) of ``ds``.

    Works for classic objects too (every value then comes from the top level)."""
    content = functional_item(ds, frame, "FrameContentSequence")
    get = content.get if content is not None else (lambda _k, _d=None: None)
    dims = get("DimensionIndexValues")
    dimension_key: tuple[int, ...] | None = None
    if dims is not None:
        values = [int(v) for v in (dims if isinstance(dims, (list, tuple)) or
                                   type(dims).__name__ == "MultiValue" else [dims])]
        spatial = _spatial_slots(ds)
        dimension_key = tuple(v for k, v in enumerate(values) if k not in spatial)
    frame_type, component = _frame_type(ds, frame)
    echo = functional_item(ds, frame, "MREchoSequence")
    echo_time = as_float(echo.get("EffectiveEchoTime")) if echo is not None else as_float(
        ds.get("EchoTime"))
    diffusion = functional_item(ds, frame, "MRDiffusionSequence")
    if diffusion is not None:
        b_value = as_float(diffusion.get("DiffusionBValue"))
        grad = diffusion.get("DiffusionGradientDirectionSequence")
        direction = grad[0].get("DiffusionGradientOrientation") if grad else None
    else:
        b_value = as_float(ds.get("DiffusionBValue"))
        direction = ds.get("DiffusionGradientOrientation")
    cardiac = functional_item(ds, frame, "CardiacSynchronizationSequence")
    trigger = as_float(cardiac.get("NominalCardiacTriggerDelayTime")) if cardiac is not None \
        else as_float(ds.get("TriggerTime"))
    acq_time = seconds_of(get("FrameAcquisitionDateTime")) if content is not None else None
    if acq_time is None:
        acq_time = seconds_of(ds.get("AcquisitionDateTime")) or seconds_of(ds.get("AcquisitionTime"))
    return {
        "stack_id": str(get("StackID")) if get("StackID") is not None else None,
        "in_stack_position": as_int(get("InStackPositionNumber")),
        "temporal_position_index": as_int(get("TemporalPositionIndex")),
        "dimension_key": dimension_key,
        "frame_type": frame_type,
        "complex_image_component": component,
        "echo_time": echo_time,
        "diffusion_b_value": b_value,
        "diffusion_direction": tuple(round(float(x), 4) for x in direction) if direction else None,
        "trigger_time": trigger,
        "acquisition_time": acq_time,
    }
