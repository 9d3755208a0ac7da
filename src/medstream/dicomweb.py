"""QIDO-RS search: find studies, series and instances on a DICOMweb server before loading them.

>>> import medstream as ms
>>> studies = ms.dicomweb.search_studies(root, PatientID="P1", StudyDate="20240101-20241231")
>>> series = ms.dicomweb.search_series(root, studies[0].study_uid, Modality="CT")
>>> volume = series[0].open_volume()
>>> picture = series[0].thumbnail(viewport=(128, 128))  # WADO-RS /thumbnail, else /rendered
>>> icc = ms.dicomweb.read_element(frame_id, "ICCProfile")  # a BulkDataURI, fetched now

Queries go through the shared HTTP layer, so per-request deadlines, retries, byte budgets and
credential scoping apply as for loads. Results are small frozen dataclasses read straight from
the DICOM JSON (no pydicom ``Dataset`` per match): a search over thousands of studies stays cheap.

Paging: pages of ``page_size`` are requested with ``limit``/``offset`` until a page comes back
short, ``limit`` results are in, or ``max_results`` (a hard cap against a server that ignores
``offset``) is reached. A page that repeats UIDs already seen ends the search too.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from pydicom.datadict import tag_for_keyword

from .core.image import Image
from .core.runtime import runtime
from .dicom.jsonmeta import JsonDataset
from .loaders.http import fetch, http_config
from .loaders.wadors import url_join
from .options import HTTP_OPTIONS, OptionError, check_options
from .discovery.source import is_root_url
from .redact import redact_url

log = logging.getLogger("medstream.dicomweb")

PAGE_SIZE = 100
MAX_RESULTS = 10_000
#: Sent as they are, not percent-encoded: wildcards, PN's ``^``, ranges, lists. Orthanc's plugin
#: (1.10) does not decode query values, so ``%2A`` would match a literal "%2A", never "*".
_LITERAL = "*?^,:/@"
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
_STUDY_FIELDS = ("StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                 "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyTime")
_SERIES_FIELDS = ("SeriesDescription", "SeriesNumber", "SeriesDate", "Modality",
                  "NumberOfSeriesRelatedInstances", "PatientID", "PatientName", "StudyDate")
_INSTANCE_FIELDS = ("SOPClassUID", "InstanceNumber", "NumberOfFrames", "Rows", "Columns")


def _text(ds: JsonDataset, keyword: str) -> str:
    value = ds.get(keyword)
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


def _int(ds: JsonDataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _tuple(ds: JsonDataset, keyword: str) -> tuple[str, ...]:
    value = ds.get(keyword)
    if value is None:
        return ()
    return tuple(str(v) for v in (value if isinstance(value, list) else [value]))


class _Pictures:
    """The server-rendered pictures of a study, series or instance result."""

    root: str

    def _uids(self) -> tuple[str, str | None, str | None]:
        """(study, series, instance) UIDs; None below the result's own level."""
        raise NotImplementedError

    def rendered_image_id(self, **params: Any) -> str:
        """:func:`rendered_image_id` of this result (``viewport=``, ``window=``...)."""
        return rendered_image_id(self.root, *self._uids(), **params)

    def thumbnail_image_id(self, **params: Any) -> str:
        return thumbnail_image_id(self.root, *self._uids(), **params)

    def thumbnail(self, viewport: tuple[int, int] | None = None, **options: Any) -> Image:
        """The thumbnail as an :class:`~medstream.Image` (blocking; ``options`` as for
        ``ms.load_image``: ``token=``, ``timeout=``...). A server without ``/thumbnail``
        renders the object instead."""
        return _load(self.thumbnail_image_id(viewport=viewport), options)


@dataclass(frozen=True)
class StudyResult(_Pictures):
    """One study matched by :func:`search_studies`."""

    root: str
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_time: str = ""
    description: str = ""
    accession_number: str = ""
    modalities: tuple[str, ...] = ()
    n_series: int | None = None
    n_instances: int | None = None

    @property
    def url(self) -> str:
        """The study's DICOMweb URL (what ``ms.open_volume(url, series=...)`` takes)."""
        return url_join(self.root, f"/studies/{self.study_uid}")

    @classmethod
    def from_json(cls, root: str, ds: JsonDataset) -> StudyResult:
        return cls(root, _text(ds, "StudyInstanceUID"), _text(ds, "PatientID"),
                   _text(ds, "PatientName"), _text(ds, "StudyDate"), _text(ds, "StudyTime"),
                   _text(ds, "StudyDescription"), _text(ds, "AccessionNumber"),
                   _tuple(ds, "ModalitiesInStudy"), _int(ds, "NumberOfStudyRelatedSeries"),
                   _int(ds, "NumberOfStudyRelatedInstances"))

    def search_series(self, **query: Any) -> list[SeriesResult]:
        """The series of this study (same query and HTTP options as :func:`search_series`)."""
        return search_series(self.root, self.study_uid, **query)

    def _uids(self) -> tuple[str, str | None, str | None]:
        return (self.study_uid, None, None)


@dataclass(frozen=True)
class SeriesResult(_Pictures):
    """One series matched by :func:`search_series`."""

    root: str
    study_uid: str
    series_uid: str
    modality: str = ""
    description: str = ""
    series_number: int | None = None
    n_instances: int | None = None
    series_date: str = ""
    study_date: str = ""
    patient_id: str = ""
    patient_name: str = ""

    @property
    def url(self) -> str:
        """The series' DICOMweb URL, as ``ms.open_volume`` and ``medstream volume`` take it."""
        return url_join(self.root, f"/studies/{self.study_uid}/series/{self.series_uid}")

    @classmethod
    def from_json(cls, root: str, ds: JsonDataset, study_uid: str | None = None) -> SeriesResult:
        return cls(root, _text(ds, "StudyInstanceUID") or study_uid or "",
                   _text(ds, "SeriesInstanceUID"), _text(ds, "Modality"),
                   _text(ds, "SeriesDescription"), _int(ds, "SeriesNumber"),
                   _int(ds, "NumberOfSeriesRelatedInstances"), _text(ds, "SeriesDate"),
                   _text(ds, "StudyDate"), _text(ds, "PatientID"), _text(ds, "PatientName"))

    def open_volume(self, **kwargs: Any) -> Any:
        """``ms.open_volume(self.url, **kwargs)``: pass the same ``token=``/``headers=`` as
        for the search (they are not remembered)."""
        from .discovery.source import open_volume

        return open_volume(self.url, **kwargs)

    async def open_volume_async(self, **kwargs: Any) -> Any:
        from .discovery.source import open_volume_async

        return await open_volume_async(self.url, **kwargs)

    def _uids(self) -> tuple[str, str | None, str | None]:
        return (self.study_uid, self.series_uid, None)


@dataclass(frozen=True)
class InstanceResult(_Pictures):
    """One instance matched by :func:`search_instances`."""

    root: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""
    instance_number: int | None = None
    n_frames: int | None = None
    rows: int | None = None
    columns: int | None = None

    @property
    def url(self) -> str:
        return url_join(self.root, f"/studies/{self.study_uid}/series/{self.series_uid}"
                                   f"/instances/{self.sop_instance_uid}")

    @property
    def image_ids(self) -> list[str]:
        """``wadors:`` frame IDs (frame 1 when the server did not say how many frames)."""
        return [f"wadors:{url_join(self.url, f'/frames/{k}')}"
                for k in range(1, (self.n_frames or 1) + 1)]

    def _uids(self) -> tuple[str, str | None, str | None]:
        return (self.study_uid, self.series_uid, self.sop_instance_uid)

    def rendered_image_id(self, frame: int | None = None, **params: Any) -> str:
        """:func:`rendered_image_id` of this instance, or of one of its frames."""
        return super().rendered_image_id(frame=frame, **params)

    def thumbnail_image_id(self, frame: int | None = None, **params: Any) -> str:
        return super().thumbnail_image_id(frame=frame, **params)

    def read_element(self, keyword: str, **http: Any) -> Any:
        """:func:`read_element` of this instance (bulk data fetched)."""
        return read_element(self.url, keyword, **http)

    @classmethod
    def from_json(cls, root: str, ds: JsonDataset, study_uid: str | None = None,
                  series_uid: str | None = None) -> InstanceResult:
        return cls(root, _text(ds, "StudyInstanceUID") or study_uid or "",
                   _text(ds, "SeriesInstanceUID") or series_uid or "",
                   _text(ds, "SOPInstanceUID"), _text(ds, "SOPClassUID"),
                   _int(ds, "InstanceNumber"), _int(ds, "NumberOfFrames"), _int(ds, "Rows"),
                   _int(ds, "Columns"))


# -- query building ------------------------------------------------------------------------------
def _query_value(value: Any) -> str:
    """A QIDO match value: dates as YYYYMMDD, a (start, end) pair as a range, lists as
    ``a,b`` (a list of UIDs or values to match)."""
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.strftime("%Y%m%d")
    if isinstance(value, tuple) and len(value) == 2:
        return "-".join("" if v is None else _query_value(v) for v in value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(_query_value(v) for v in value)
    return str(value)


def _split(where: str, kwargs: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """(QIDO match parameters by DICOM keyword or tag, HTTP options); anything else raises
    :class:`OptionError` (a misspelt ``PatientId=`` would otherwise match everything)."""
    query: dict[str, str] = {}
    http: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in HTTP_OPTIONS:
            http[name] = value
        elif tag_for_keyword(name) is not None or _TAG_RE.match(name):
            if value is not None:
                query[name] = _query_value(value)
        else:
            close = difflib.get_close_matches(name, ["PatientID", "PatientName", "StudyDate",
                                                     "ModalitiesInStudy", "Modality",
                                                     "StudyDescription", "AccessionNumber",
                                                     "SeriesDescription", *sorted(HTTP_OPTIONS)],
                                              n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptionError(f"{where}() got {name!r}{hint}: not a DICOM keyword or tag to "
                              f"match, nor an HTTP option ({', '.join(sorted(HTTP_OPTIONS))})")
    check_options(where, http, "http")
    return query, http


T = TypeVar("T")


async def _search(where: str, url: str, fields: Sequence[str], parse: Callable[[JsonDataset], T],
                  uid_of: Callable[[T], str], kwargs: dict[str, Any], *, limit: int | None,
                  offset: int, fuzzy: bool, page_size: int, max_results: int) -> list[T]:
    query, http = _split(where, kwargs)
    if limit is not None and limit < 0 or offset < 0 or page_size < 1:
        raise OptionError(f"{where}(): limit and offset must be >= 0, page_size >= 1")
    cap = max_results if limit is None else min(limit, max_results)
    params: list[tuple[str, str]] = list(query.items())
    params += [("includefield", f) for f in fields]
    if fuzzy:
        params.append(("fuzzymatching", "true"))
    config = http_config(**http)
    out: list[T] = []
    seen: set[str] = set()
    while len(out) < cap:
        ask = min(page_size, cap - len(out))
        page_params = params + [("limit", str(ask)), ("offset", str(offset))]
        sep = "&" if "?" in url else "?"
        page_url = url + sep + urlencode(page_params, quote_via=quote, safe=_LITERAL)
        resp = await fetch(page_url, f"qido:{url}", accept="application/dicom+json",
                           config=config, ok_statuses=(204,))
        try:
            items = resp.json() if resp.content.strip() else []
        except ValueError as exc:
            raise ValueError(f"{where}(): the answer of {redact_url(url)} is not DICOM JSON "
                             f"({resp.headers.get('content-type', 'no content type')})") from exc
        if not isinstance(items, list):
            raise ValueError(f"{where}(): the server answered {type(items).__name__}, "
                             "not a list of DICOM JSON objects")
        new = 0
        for item in items:
            if not isinstance(item, dict):
                continue
            result = parse(JsonDataset(item))
            uid = uid_of(result)
            if uid in seen:
                continue
            seen.add(uid)
            out.append(result)
            new += 1
            if len(out) >= cap:
                break
        if len(items) < ask or new == 0:  # a short page is the last; a repeat means no paging
            break
        offset += len(items)
    if limit is None and len(out) >= max_results:
        log.warning("%s: stopped at max_results=%d matches; narrow the query or page with "
                    "offset=", where, max_results)
    return out


def _root(root: str) -> str:
    root = root[len("wadors:"):] if root.startswith("wadors:") else root
    return url_join(root, "")


# -- public API ----------------------------------------------------------------------------------
async def search_studies_async(root: str, *, limit: int | None = None, offset: int = 0,
                               fuzzy: bool = False, page_size: int = PAGE_SIZE,
                               max_results: int = MAX_RESULTS, **kwargs: Any) -> list[StudyResult]:
    """Studies on the DICOMweb server at ``root`` matching the keyword filters
    (``PatientID="P1"``, ``StudyDate="20240101-20241231"`` or a (start, end) pair of dates,
    ``ModalitiesInStudy="CT"``, ``PatientName="DOE^*"``); HTTP options (``token``,
    ``headers``, ``timeout``...) as for loads. ``limit``: at most this many results."""
    root = _root(root)
    return await _search("search_studies", url_join(root, "/studies"), _STUDY_FIELDS,
                         lambda ds: StudyResult.from_json(root, ds), lambda r: r.study_uid,
                         kwargs, limit=limit, offset=offset, fuzzy=fuzzy, page_size=page_size,
                         max_results=max_results)


async def search_series_async(root: str, study_uid: str | None = None, *,
                              limit: int | None = None, offset: int = 0, fuzzy: bool = False,
                              page_size: int = PAGE_SIZE, max_results: int = MAX_RESULTS,
                              **kwargs: Any) -> list[SeriesResult]:
    """Series of one study (``study_uid``) or of the whole server, matching the filters
    (``Modality="CT"``, ``SeriesDescription="*AX*"``...)."""
    root = _root(root)
    url = url_join(root, f"/studies/{study_uid}/series" if study_uid else "/series")
    return await _search("search_series", url, _SERIES_FIELDS,
                         lambda ds: SeriesResult.from_json(root, ds, study_uid),
                         lambda r: r.series_uid, kwargs, limit=limit, offset=offset,
                         fuzzy=fuzzy, page_size=page_size, max_results=max_results)


async def search_instances_async(root: str, study_uid: str | None = None,
                                 series_uid: str | None = None, *, limit: int | None = None,
                                 offset: int = 0, fuzzy: bool = False,
                                 page_size: int = PAGE_SIZE, max_results: int = MAX_RESULTS,
                                 **kwargs: Any) -> list[InstanceResult]:
    """Instances of a series (or study, or server) matching the filters."""
    root = _root(root)
    if series_uid and not study_uid:
        raise OptionError("search_instances(): series_uid needs study_uid")
    path = "/instances"
    if study_uid:
        path = f"/studies/{study_uid}" + (f"/series/{series_uid}" if series_uid else "") + path
    return await _search("search_instances", url_join(root, path), _INSTANCE_FIELDS,
                         lambda ds: InstanceResult.from_json(root, ds, study_uid, series_uid),
                         lambda r: r.sop_instance_uid, kwargs, limit=limit, offset=offset,
                         fuzzy=fuzzy, page_size=page_size, max_results=max_results)


def search_studies(root: str, **kwargs: Any) -> list[StudyResult]:
    """Blocking :func:`search_studies_async`."""
    return runtime.run_sync(search_studies_async(root, **kwargs))


def search_series(root: str, study_uid: str | None = None, **kwargs: Any) -> list[SeriesResult]:
    """Blocking :func:`search_series_async`."""
    return runtime.run_sync(search_series_async(root, study_uid, **kwargs))


def search_instances(root: str, study_uid: str | None = None, series_uid: str | None = None,
                     **kwargs: Any) -> list[InstanceResult]:
    """Blocking :func:`search_instances_async`."""
    return runtime.run_sync(search_instances_async(root, study_uid, series_uid, **kwargs))


# -- rendered pictures and thumbnails ----------------------------------------------------------
def _rendered(resource: str, root: str, study_uid: str, series_uid: str | None,
              sop_instance_uid: str | None, frame: int | None,
              params: list[tuple[str, str]]) -> str:
    if (sop_instance_uid and not series_uid) or (frame is not None and not sop_instance_uid):
        raise OptionError(f"{resource}_image_id(): an instance needs its series, a frame its "
                          "instance")
    if frame is not None and (not isinstance(frame, int) or frame < 1):
        raise OptionError(f"{resource}_image_id(): frame is 1-based, got {frame!r}")
    path = f"/studies/{study_uid}"
    path += f"/series/{series_uid}" if series_uid else ""
    path += f"/instances/{sop_instance_uid}" if sop_instance_uid else ""
    path += f"/frames/{frame}" if frame is not None else ""
    url = url_join(_root(root), f"{path}/{resource}")
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params, quote_via=quote, safe=",/")
    return f"wadors:{url}"


def _num(x: float) -> str:
    """A window value as plain decimals (no exponent: ``1e+06`` is not a DICOM number)."""
    return f"{float(x):f}".rstrip("0").rstrip(".")


def _viewport(viewport: tuple[int, int] | None) -> list[tuple[str, str]]:
    if viewport is None:
        return []
    w, h = viewport
    if int(w) < 1 or int(h) < 1:
        raise OptionError(f"viewport must be (width, height) >= 1, got {viewport!r}")
    return [("viewport", f"{int(w)},{int(h)}")]


def rendered_image_id(root: str, study_uid: str, series_uid: str | None = None,
                      sop_instance_uid: str | None = None, frame: int | None = None, *,
                      viewport: tuple[int, int] | None = None,
                      window: tuple[float, float] | tuple[float, float, str] | None = None,
                      quality: int | None = None, accept: str | None = None) -> str:
    """The ``wadors:`` ID of a server-rendered picture (WADO-RS ``/rendered``) of a frame,
    instance, series or study, for ``ms.load_image``: grayscale comes back ``(rows, columns)``
    uint8, colour RGB. ``window=(center, width)`` (function ``linear`` unless given third),
    ``viewport=(width, height)`` and ``quality`` go to the server; ``accept="image/jpeg"``
    picks the format (PNG first, then JPEG, by default)."""
    params = _viewport(viewport)
    if window is not None:
        center, width, *function = window
        params.append(("window", f"{_num(center)},{_num(width)},{(function or ['linear'])[0]}"))
    if quality is not None:
        params.append(("quality", str(int(quality))))
    if accept:
        params.append(("accept", accept))
    return _rendered("rendered", root, study_uid, series_uid, sop_instance_uid, frame, params)


def thumbnail_image_id(root: str, study_uid: str, series_uid: str | None = None,
                       sop_instance_uid: str | None = None, frame: int | None = None, *,
                       viewport: tuple[int, int] | None = None, accept: str | None = None) -> str:
    """The ``wadors:`` ID of a thumbnail (WADO-RS ``/thumbnail``) of a frame, instance, series
    or study. Where the server has no ``/thumbnail`` (404, 406 or 501), the loader asks for
    ``/rendered`` at the same level with the same ``viewport``: a picture of the object is what
    a thumbnail strip needs, and ``/rendered`` is far more widely served."""
    params = _viewport(viewport) + ([("accept", accept)] if accept else [])
    return _rendered("thumbnail", root, study_uid, series_uid, sop_instance_uid, frame, params)


def _load(image_id: str, options: dict[str, Any]) -> Image:
    from .core.loading import load_image

    image: Image = load_image(image_id, **options).result()
    return image


# -- elements, bulk data included ----------------------------------------------------------------
async def read_element_async(image_id: str, keyword: str, **http: Any) -> Any:
    """One element of the instance of a ``wadors:`` frame ID (or an instance URL), by keyword
    or tag (``"00111001"`` for a private one). A value the server left out of the metadata as
    a BulkDataURI is fetched now (credentials only to the metadata's origin) and converted as
    pydicom reads it from a file: bytes for OB/OW/UN, numbers for US/SS... Other values come
    from the series metadata (fetched once if no load has). None if there is no such element.

    Unlike ``ms.metadata.get(keyword, image_id)``, which fetches the same bulk data but logs a
    failure and answers None, this raises the typed error (``HTTPStatusError``...)."""
    from .dicom.instance import plain_value
    from .dicom.jsonmeta import convert_bulk, json_key
    from .errors import ImageLoadError
    from .loaders.bulkdata import bulk_fetcher
    from .loaders.wadors import get_series_metadata, parse_instance_id

    check_options("read_element", http, "http")
    key = json_key(keyword)
    if key is None:
        raise OptionError(f"read_element(): {keyword!r} is not a DICOM keyword nor a tag "
                          "(8 hex digits)")
    series_url, instance = parse_instance_id(image_id)
    datasets = await get_series_metadata(image_id, series_url, **http)
    ds = datasets.get(instance)
    if ds is None:
        raise ImageLoadError(image_id, f"instance {instance} is not in the series metadata")
    bulk = ds.bulk(keyword)
    if bulk is not None:  # fetched with this call's options (its byte budget, its timeout)
        fetch_bulk = bulk_fetcher(url_join(series_url, "/metadata"), http_config(**http))
        return convert_bulk(bulk.tag, bulk.vr, await fetch_bulk(bulk.uri), image_id)
    dataset = await runtime.to_thread(ds.dataset)
    tag = int(key, 16)
    return plain_value(dataset[tag].value) if tag in dataset else None


def read_element(image_id: str, keyword: str, **http: Any) -> Any:
    """Blocking :func:`read_element_async`."""
    return runtime.run_sync(read_element_async(image_id, keyword, **http))


# -- STOW-RS -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreResult:
    """What a STOW-RS server answered: the instances it stored and those it refused (with
    the reason code it gave, PS3.18 Table 10.5.3-1)."""

    stored: list[str]
    failed: dict[str, str]
    status_code: int


def _part10(item: Any) -> bytes:
    import io
    import os

    import pydicom

    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, pydicom.Dataset):
        buf = io.BytesIO()
        item.save_as(buf, enforce_file_format=True)
        return buf.getvalue()
    with open(os.fspath(item), "rb") as fh:
        return fh.read()


def _uids_of(data: dict[str, Any], sequence: str) -> dict[str, str]:
    """SOPInstanceUID -> failure reason (or "") of one sequence of a STOW-RS JSON answer."""
    out: dict[str, str] = {}
    for item in (data.get(sequence) or {}).get("Value") or []:
        uid = ((item.get("00081155") or {}).get("Value") or [""])[0]
        reason = ((item.get("00081197") or {}).get("Value") or [""])[0]
        out[str(uid)] = str(reason)
    return out


async def store_async(root: str, items: Sequence[Any], **http: Any) -> StoreResult:
    """STOW-RS: POST Part 10 objects (paths, bytes or pydicom Datasets) to ``<root>/studies``
    as one multipart/related request, with the HTTP stack's credentials, budgets and deadlines.
    Per-instance failures come back in the result; a refused request is an ``HTTPStatusError``."""
    import json as _json
    import uuid

    from .errors import HTTPStatusError
    from .loaders.http import post

    check_options("store", http, "http")
    boundary = uuid.uuid4().hex
    parts = []
    for item in items:
        data = await runtime.to_thread(_part10, item)
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n"
                     + data + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    url = url_join(root, "/studies")
    ctype = f'multipart/related; type="application/dicom"; boundary={boundary}'
    resp = await post(url, f"stow:{root}", body, ctype, accept="application/dicom+json",
                      config=http_config(**http))
    answer: dict[str, Any] = {}
    if resp.content:
        try:
            answer = _json.loads(resp.content)
        except ValueError:
            answer = {}
    stored = list(_uids_of(answer, "00081199"))
    failed = _uids_of(answer, "00081198")
    if resp.status_code >= 400 and not stored:
        raise HTTPStatusError(f"stow:{root}", resp.status_code, redact_url(url),
                              f"{len(failed) or len(items)} instance(s) refused")
    return StoreResult(stored, failed, resp.status_code)


def store(root: str, items: Sequence[Any], **http: Any) -> StoreResult:
    """Blocking form of :func:`store_async`."""
    return runtime.run_sync(store_async(root, items, **http))


__all__ = [
    "StoreResult", "store", "store_async",
    "InstanceResult", "SeriesResult", "StudyResult", "is_root_url", "read_element",
    "read_element_async", "rendered_image_id", "thumbnail_image_id", "search_instances",
    "search_instances_async", "search_series", "search_series_async", "search_studies",
    "search_studies_async",
]

