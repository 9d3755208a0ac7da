"""``wadors:<root>/studies/S/series/Se/instances/I/frames/N`` — DICOMweb frame retrieval.

Frames are requested with ``transfer-syntax=*`` so the server sends its stored (compressed) bytes
and medstream decodes them in the worker pool. The series ``/metadata`` is fetched once per series
and feeds the metadata providers. Where the server cannot split an object into frames (Orthanc
answers 400/500 for some encapsulated objects) the whole instance is fetched instead.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from ..codecs.frame import FrameInfo
from ..core.image import Image
from ..core.runtime import runtime
from ..dicom.modules import build_modules
from ..dicom.part10 import check_frame, decode_parsed_frame, decode_to_image, frame_info
from ..dicom.store import module_store
from ..errors import HTTPStatusError, ImageLoadError, MissingPixelDataError
from ..redact import redact_url
from .http import fetch, http_config
from .multipart import MultipartError, parse_multipart_related
from .shared import SharedResults
from .wadouri import fetch_part10

SCHEME = "wadors"
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_FALLBACK_STATUSES = (400, 406, 415, 500, 501)

_ID_RE = re.compile(
    r"^(?P<root>.+?)/studies/(?P<study>[^/]+)/series/(?P<series>[^/]+)"
    r"/instances/(?P<instance>[^/]+)/frames/(?P<frame>\d+)$"
)


@dataclass(frozen=True)
class WadorsId:
    root: str
    study: str
    series: str
    instance: str
    frame: int

    @property
    def series_url(self) -> str:
        return f"{self.root}/studies/{self.study}/series/{self.series}"

    @property
    def instance_url(self) -> str:
        return f"{self.series_url}/instances/{self.instance}"

    @property
    def frame_url(self) -> str:
        return f"{self.instance_url}/frames/{self.frame}"


def parse_image_id(image_id: str) -> WadorsId:
    url = image_id[len(SCHEME) + 1 :] if image_id.startswith(SCHEME + ":") else image_id
    m = _ID_RE.match(url)
    if not m:
        raise ImageLoadError(
            image_id, "not a wadors frame ID (<root>/studies/S/series/Se/instances/I/frames/N)"
        )
    return WadorsId(m["root"], m["study"], m["series"], m["instance"], int(m["frame"]))


# -- series metadata -------------------------------------------------------------------------
series_metadata: SharedResults[dict[str, Dataset]] = SharedResults(max_items=256)


def _no_bulk(tag: str, vr: str, uri: str) -> Any:
    return None


def datasets_from_json(items: list[dict[str, Any]]) -> dict[str, Dataset]:
    out: dict[str, Dataset] = {}
    for item in items:
        ds = Dataset.from_json(item, bulk_data_uri_handler=_no_bulk)
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid:
            out[uid] = ds
    return out


def _image_ids_of(series_url: str, datasets: dict[str, Dataset]) -> list[tuple[str, Dataset, int]]:
    rows = []
    for uid, ds in datasets.items():
        try:
            n = int(ds.get("NumberOfFrames") or 1)
        except (TypeError, ValueError):
            n = 1
        for k in range(1, n + 1):
            rows.append((f"{SCHEME}:{series_url}/instances/{uid}/frames/{k}", ds, k))
    return rows


async def get_series_metadata(image_id: str, series_url: str, **http: Any) -> dict[str, Dataset]:
    async def get() -> dict[str, Dataset]:
        resp = await fetch(
            series_url + "/metadata", image_id, accept="application/dicom+json",
            config=http_config(**http),
        )
        try:
            items = resp.json()
        except ValueError as exc:
            raise ImageLoadError(image_id, f"series metadata is not JSON: {redact_url(series_url)}") from exc

        def build() -> dict[str, Dataset]:
            datasets = datasets_from_json(items)
            for frame_id, ds, k in _image_ids_of(series_url, datasets):
                module_store.put(frame_id, build_modules(ds, k - 1))
            return datasets

        return await runtime.to_thread(build)

    return await series_metadata.get(series_url, get)


async def wadors_image_ids_async(series_url: str, **http: Any) -> list[str]:
    """Frame image IDs of a DICOMweb series URL (``<root>/studies/S/series/Se``), multi-frame
    aware, in InstanceNumber order (volumes sort by position themselves)."""
    series_url = series_url.rstrip("/")
    if series_url.startswith(SCHEME + ":"):
        series_url = series_url[len(SCHEME) + 1 :]
    datasets = await get_series_metadata(f"{SCHEME}:{series_url}", series_url, **http)
    rows = _image_ids_of(series_url, datasets)

    def order(row: tuple[str, Dataset, int]) -> tuple[int, str, int]:
        try:
            inst = int(row[1].get("InstanceNumber") or 0)
        except (TypeError, ValueError):
            inst = 0
        return inst, str(row[1].get("SOPInstanceUID", "")), row[2]

    return [r[0] for r in sorted(rows, key=order)]


async def preload_wadors_metadata(image_ids: list[str], **http: Any) -> None:
    """One /metadata request per series of ``image_ids`` (shared with frame loads)."""
    import asyncio

    series: dict[str, str] = {}
    for image_id in image_ids:
        try:
            wid = parse_image_id(image_id)
        except ImageLoadError:
            continue
        series.setdefault(wid.series_url, image_id)
    await asyncio.gather(*(get_series_metadata(i, url, **http) for url, i in series.items()))


def wadors_image_ids(series_url: str, **http: Any) -> list[str]:
    """Blocking form of :func:`wadors_image_ids_async`."""
    return runtime.run_sync(wadors_image_ids_async(series_url, **http))


# -- frames ----------------------------------------------------------------------------------
def _frame_info_for(image_id: str, ds: Dataset, ts: str) -> FrameInfo:
    info = frame_info(image_id, ds, ts)
    # A frames response holds exactly one frame.
    return dataclasses.replace(info, number_of_frames=1)


async def load_wadors(image_id: str, prescale: bool = True, **http: Any) -> Image:
    wid = parse_image_id(image_id)
    datasets = await get_series_metadata(image_id, wid.series_url, **http)
    ds = datasets.get(wid.instance)
    if ds is None:
        raise ImageLoadError(image_id, f"instance {wid.instance} is not in the series metadata")
    n_frames = int(ds.get("NumberOfFrames") or 1)
    check_frame(image_id, wid.frame, n_frames)
    modules = module_store.get_modules(image_id) or build_modules(ds, wid.frame - 1)

    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        return await _load_from_instance(image_id, wid, prescale, **http)  # LUTs are bulk data

    resp = await fetch(
        wid.frame_url, image_id, accept=FRAME_ACCEPT, config=http_config(**http),
        ok_statuses=_FALLBACK_STATUSES,
    )
    if resp.status_code in _FALLBACK_STATUSES:
        try:
            return await _load_from_instance(image_id, wid, prescale, **http)
        except ImageLoadError as exc:
            raise HTTPStatusError(
                image_id, resp.status_code, redact_url(wid.frame_url),
                f"frame retrieval refused and whole-instance fallback failed: {exc.cause}",
            ) from exc
    try:
        parts = parse_multipart_related(resp.content, resp.headers.get("content-type", ""))
    except MultipartError as exc:
        raise ImageLoadError(image_id, f"{exc} from {redact_url(wid.frame_url)}") from exc
    if not parts or not parts[0].data:
        raise MissingPixelDataError(image_id, "the server returned no frame data")
    part = parts[0]
    ts = part.param("transfer-syntax") or _syntax_from_media_type(part.content_type) or EXPLICIT_LE
    info = _frame_info_for(image_id, ds, ts)
    return await runtime.to_thread(
        decode_to_image, image_id, part.data, info, modules, prescale=prescale, lut_source=ds
    )


_MEDIA_SYNTAX = {
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
}


def _syntax_from_media_type(content_type: str) -> str | None:
    return _MEDIA_SYNTAX.get(content_type.split(";")[0].strip().lower())


async def _load_from_instance(image_id: str, wid: WadorsId, prescale: bool, **http: Any) -> Image:
    parsed = await fetch_part10(image_id, wid.instance_url, INSTANCE_ACCEPT, **http)
    return await runtime.to_thread(decode_parsed_frame, image_id, parsed, wid.frame, prescale)
