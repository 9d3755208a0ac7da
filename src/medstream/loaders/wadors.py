"""``wadors:<root>/studies/S/series/Se/instances/I/frames/N`` — DICOMweb frame retrieval
(``.../rendered`` and ``.../thumbnail`` IDs are server-rendered pictures: see ``rendered.py``).

Frames are requested with ``transfer-syntax=*`` so the server sends its stored (compressed) bytes
and medstream decodes them in the worker pool. The series ``/metadata`` is fetched once per series
and feeds the metadata providers. Where the server cannot split an object into frames (Orthanc
answers 400/500 for some encapsulated objects) the whole instance is fetched instead.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.frame import FrameInfo
from ..codecs.pixels import decode_native_into, frame_to_image
from ..codecs.registry import decode_frame
from ..core.image import Image
from ..core.kept import KeptMap
from ..core.runtime import runtime
from ..dicom.fastheader import read_fast_header
from ..dicom.frames import number_of_frames
from ..dicom.instance import header_sources, json_sources
from ..dicom.jsonmeta import BulkFetcher, JsonDataset
from ..dicom.modules import build_modules
from ..dicom.mosaic import (
    MosaicError,
    MosaicLayout,
    cut_tile,
    is_mosaic,
    mosaic_layout,
    tile_modules,
)
from ..dicom.part10 import (
    check_frame,
    decode_parsed_frame,
    decode_to_image,
    frame_info,
    frame_payload,
    parse_part10,
)
from ..dicom.store import module_store
from ..errors import HTTPStatusError, ImageLoadError, MissingPixelDataError
from ..limits import check_frames
from ..redact import redact_url
from .bulkdata import bulk_fetcher
from . import early as early_responses
from .http import fetch, http_config, stream_chunks
from .multipart import MultipartError, MultipartReader, parse_multipart_related
from .rendered import is_rendered_id, load_rendered
from .shared import SharedResults
from .wadouri import fetch_part10

log = logging.getLogger("medstream.wadors")

SCHEME = "wadors"
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_FALLBACK_STATUSES = (400, 406, 415, 500, 501)

_ID_RE = re.compile(
    r"^(?P<root>.+?)/studies/(?P<study>[^/]+)/series/(?P<series>[^/]+)"
    r"/instances/(?P<instance>[^/]+)/frames/(?P<frame>\d+)$"
)


def url_join(url: str, suffix: str) -> str:
    """``suffix`` appended to the path of ``url``, before its query: a pre-signed or
    token-in-query URL keeps its query on every URL derived from it."""
    base, sep, query = url.partition("?")
    return base.rstrip("/") + suffix + sep + query


@dataclass(frozen=True)
class WadorsId:
    root: str
    study: str
    series: str
    instance: str
    frame: int
    query: str = ""  # kept on every URL (access_token=..., signatures)
    tile: int | None = None  # a mosaic's tile (``#tile=K``, never sent: it is medstream's)

    @property
    def series_url(self) -> str:
        return f"{self.root}/studies/{self.study}/series/{self.series}" + (
            f"?{self.query}" if self.query else "")

    @property
    def instance_url(self) -> str:
        return url_join(self.series_url, f"/instances/{self.instance}")

    @property
    def frame_url(self) -> str:
        return url_join(self.instance_url, f"/frames/{self.frame}")


TILE_MARK = "#tile="


def tile_id(frame_id: str, tile: int) -> str:
    """The ID of tile ``tile`` (1-based) of a mosaic frame."""
    return f"{frame_id}{TILE_MARK}{tile}"


def parse_image_id(image_id: str) -> WadorsId:
    url = image_id[len(SCHEME) + 1 :] if image_id.startswith(SCHEME + ":") else image_id
    url, mark, tile_text = url.partition(TILE_MARK)
    tile = int(tile_text) if mark and tile_text.isdigit() else None
    if mark and tile is None:
        raise ImageLoadError(image_id, f"bad tile number {tile_text!r}")
    path, _, query = url.partition("?")
    m = _ID_RE.match(path)
    if not m:
        raise ImageLoadError(
            image_id, "not a wadors frame ID (<root>/studies/S/series/Se/instances/I/frames/N)"
        )
    return WadorsId(m["root"], m["study"], m["series"], m["instance"], int(m["frame"]), query,
                    tile)


_INSTANCE_RE = re.compile(
    r"^(?P<series>.+?/studies/[^/]+/series/[^/]+)/instances/(?P<instance>[^/]+)"
    r"(?:/frames/\d+)?$"
)


def frame_rendered_id(image_id: str, query: str) -> str | None:
    """The ``/rendered`` ID of a DICOMweb frame ID (None for other IDs: mosaic tiles, pictures,
    IDs with a query of their own)."""
    if is_rendered_id(image_id):
        return None
    try:
        wid = parse_image_id(image_id)
    except ImageLoadError:
        return None
    if wid.tile is not None or wid.query:
        return None
    return f"{image_id}/rendered?{query}"


def parse_instance_id(image_id: str) -> tuple[str, str]:
    """(series URL with the query, SOPInstanceUID) of a frame ID or an instance URL."""
    url = image_id[len(SCHEME) + 1 :] if image_id.startswith(SCHEME + ":") else image_id
    path, _, query = url.partition("?")
    m = _INSTANCE_RE.match(path.rstrip("/"))
    if not m:
        raise ImageLoadError(image_id, "not a DICOMweb instance or frame ID "
                                       "(<root>/studies/S/series/Se/instances/I[/frames/N])")
    return m["series"] + (f"?{query}" if query else ""), m["instance"]


# -- series metadata -------------------------------------------------------------------------
series_metadata: SharedResults[dict[str, JsonDataset]] = SharedResults("series metadata", max_items=256)


def datasets_from_json(items: list[dict[str, Any]],
                       bulk: BulkFetcher | None = None) -> dict[str, JsonDataset]:
    """Instances by SOPInstanceUID, each a light view of its JSON (no per-element parsing);
    ``bulk`` fetches their BulkDataURIs when one is read."""
    out: dict[str, JsonDataset] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        ds = JsonDataset(item, bulk)
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid:
            out[uid] = ds
    return out


def _frame_counts(series_url: str, datasets: dict[str, JsonDataset]) -> dict[str, int]:
    """NumberOfFrames per instance, checked (each, and their sum) against ``max_frames``
    before any per-frame ID or module is built."""
    counts = {uid: number_of_frames(f"{SCHEME}:{url_join(series_url, f'/instances/{uid}')}", ds)
              for uid, ds in datasets.items()}
    check_frames(f"{SCHEME}:{series_url}", "frames in the series metadata", sum(counts.values()))
    return counts


@dataclass(frozen=True)
class _Row:
    image_id: str
    ds: JsonDataset
    frame: int
    layout: MosaicLayout | None = None
    tile: int | None = None


def _image_ids_of(series_url: str, datasets: dict[str, JsonDataset]) -> list[_Row]:
    """Every image of the series: a frame, or each tile of a mosaic (Siemens MOSAIC, UIH
    VFRAME, split at their true positions as from files)."""
    rows: list[_Row] = []
    counts = _frame_counts(series_url, datasets)
    for uid, ds in datasets.items():
        n = counts[uid]
        first = f"{SCHEME}:{url_join(series_url, f'/instances/{uid}/frames/1')}"
        layout = _mosaic_layout(first, ds) if n == 1 and is_mosaic(ds) else None
        if layout is not None:
            rows.extend(_Row(tile_id(first, t), ds, 1, layout, t)
                        for t in range(1, layout.tiles + 1))
            continue
        for k in range(1, n + 1):
            rows.append(_Row(f"{SCHEME}:{url_join(series_url, f'/instances/{uid}/frames/{k}')}",
                             ds, k))
    return rows


_layouts: KeptMap[str, MosaicLayout] = KeptMap("mosaic layouts", max_items=20_000,
                                               size_of=lambda _v: 4096)


def _mosaic_layout(frame_id: str, ds: JsonDataset) -> MosaicLayout | None:
    """The tiles of a mosaic instance from its metadata (the CSA header inlined by
    ``get_series_metadata``); None where they cannot be placed (the volume then refuses the
    unsplit mosaic with a typed error)."""
    found = _layouts.get(frame_id)
    if found is None:
        try:
            found = mosaic_layout(frame_id, ds.dataset())
        except (MosaicError, ImageLoadError, ValueError, TypeError, KeyError):
            return None
        if found is not None:
            _layouts.put(frame_id, found)
    return found


_CSA = "00291010"  # Siemens CSA image header: a mosaic's tile count and slice normal
_MOSAIC_HEADER_LIMIT = 4 * 1024**2


async def _inline_mosaic_headers(items: list[Any], fetch_bulk: BulkFetcher) -> None:
    """Servers send a mosaic's CSA header as a BulkDataURI: fetch it (all at once) and put it
    in the metadata inline, so the tiles can be placed like a file's."""
    import asyncio
    import base64

    wanted = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kinds = (item.get("00080008") or {}).get("Value") or []
        element = item.get(_CSA)
        if "MOSAIC" in [str(k).upper() for k in kinds] and isinstance(element, dict) \
                and element.get("BulkDataURI"):
            wanted.append((item, str(element["BulkDataURI"])))

    async def one(item: dict[str, Any], uri: str) -> None:
        try:
            data = await fetch_bulk(uri)
        except ImageLoadError:
            return  # no tiles then: the volume says the mosaic is not split
        if len(data) <= _MOSAIC_HEADER_LIMIT:
            item[_CSA] = {"vr": "OB", "InlineBinary": base64.b64encode(data).decode("ascii")}

    await asyncio.gather(*(one(item, uri) for item, uri in wanted))


async def get_series_metadata(image_id: str, series_url: str, **http: Any) -> dict[str, JsonDataset]:
    cfg = http_config(**http)

    async def get() -> dict[str, JsonDataset]:
        metadata_url = url_join(series_url, "/metadata")
        resp = await fetch(metadata_url, image_id, accept="application/dicom+json", config=cfg)
        try:
            items = resp.json()
        except ValueError as exc:
            raise ImageLoadError(image_id, f"series metadata is not JSON: {redact_url(series_url)}") from exc

        fetch_bulk = bulk_fetcher(metadata_url, cfg)
        if isinstance(items, list):
            await _inline_mosaic_headers(items, fetch_bulk)

        def build() -> dict[str, JsonDataset]:
            datasets = datasets_from_json(items, fetch_bulk)
            register_modules(series_url, datasets)  # checks the frame counts before any ID
            return datasets

        return await runtime.to_thread(build)

    return await series_metadata.get(f"{series_url}\n{cfg.credentials_key()}", get)


def register_modules(series_url: str, datasets: dict[str, JsonDataset], only_missing: bool = False) -> None:
    """Feed the metadata providers with every frame's modules (again, if they were dropped)."""
    wholes: dict[int, dict[str, Any]] = {}
    for row in _image_ids_of(series_url, datasets):
        if only_missing and module_store.get_modules(row.image_id) is not None:
            continue
        if row.layout is None or row.tile is None:
            module_store.put(row.image_id, build_modules(row.ds, row.frame - 1))
            continue
        whole = wholes.get(id(row.ds))
        if whole is None:
            whole = wholes[id(row.ds)] = build_modules(row.ds, 0)
        module_store.put(row.image_id, tile_modules(whole, row.layout, row.tile))


async def wadors_image_ids_async(series_url: str, **http: Any) -> list[str]:
    """Frame image IDs of a DICOMweb series URL (``<root>/studies/S/series/Se``), multi-frame
    aware, in InstanceNumber order (volumes sort by position themselves)."""
    series_url = url_join(series_url, "")
    if series_url.startswith(SCHEME + ":"):
        series_url = series_url[len(SCHEME) + 1 :]
    datasets = await get_series_metadata(f"{SCHEME}:{series_url}", series_url, **http)
    rows = _image_ids_of(series_url, datasets)

    def order(row: _Row) -> tuple[int, str, int, int]:
        try:
            inst = int(row.ds.get("InstanceNumber") or 0)
        except (TypeError, ValueError):
            inst = 0
        return inst, str(row.ds.get("SOPInstanceUID", "")), row.frame, row.tile or 0

    return [r.image_id for r in sorted(rows, key=order)]


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
    found = await asyncio.gather(*(get_series_metadata(i, url, **http) for url, i in series.items()))
    if any(module_store.get_modules(i) is None for i in image_ids):  # dropped since fetched
        for url, datasets in zip(series, found):
            await runtime.to_thread(register_modules, url, datasets, True)


def wadors_image_ids(series_url: str, **http: Any) -> list[str]:
    """Blocking form of :func:`wadors_image_ids_async`."""
    return runtime.run_sync(wadors_image_ids_async(series_url, **http))


# -- frames ----------------------------------------------------------------------------------
def _frame_info_for(image_id: str, ds: Any, ts: str) -> FrameInfo:
    info = frame_info(image_id, ds, ts)
    # A frames response holds exactly one frame.
    return dataclasses.replace(info, number_of_frames=1)


async def load_wadors(image_id: str, prescale: bool = True, **http: Any) -> Image:
    if is_rendered_id(image_id):  # .../rendered, .../thumbnail: a picture, not pixel data
        return await load_rendered(image_id, **http)
    wid = parse_image_id(image_id)
    datasets = await get_series_metadata(image_id, wid.series_url, **http)
    ds = datasets.get(wid.instance)
    if ds is None:
        raise ImageLoadError(image_id, f"instance {wid.instance} is not in the series metadata")
    n_frames = number_of_frames(image_id, ds)
    check_frame(image_id, wid.frame, n_frames)
    modules = module_store.get_modules(image_id)
    if modules is None and wid.tile is not None:  # dropped since fetched: build them again
        await runtime.to_thread(register_modules, wid.series_url, datasets, True)
        modules = module_store.get_modules(image_id)
    if modules is None:
        modules = build_modules(ds, wid.frame - 1)
        module_store.put(image_id, modules)
    if wid.tile is not None:
        return await _load_tile(image_id, wid, ds, modules, prescale, **http)

    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        return await _load_from_instance(image_id, wid, prescale, **http)  # LUTs are bulk data

    resp = await fetch(
        wid.frame_url, image_id, accept=FRAME_ACCEPT, config=http_config(**http),
        ok_statuses=_FALLBACK_STATUSES, max_bytes=_frame_budget(image_id, ds),
    )
    if resp.status_code in _FALLBACK_STATUSES:
        try:
            return await _load_from_instance(image_id, wid, prescale, **http)
        except ImageLoadError as exc:
            raise HTTPStatusError(
                image_id, resp.status_code, redact_url(wid.frame_url),
                f"frame retrieval refused and whole-instance fallback failed: {exc.cause}",
            ) from exc
    data, ts = _frame_part(image_id, resp, wid.frame_url)
    info = _frame_info_for(image_id, ds, ts)
    return await runtime.to_thread(
        decode_to_image, image_id, data, info, modules, prescale=prescale,
        lut_source=ds.dataset() if modules["modalityLutModule"].get("has_modality_lut_sequence")
        else ds
    )


# Decoded mosaics (stored values), shared by their tiles: one request and one decode a mosaic.
_mosaics: SharedResults[tuple[np.ndarray, str]] = SharedResults(
    "mosaic frames", max_items=8, size_of=lambda found: int(found[0].nbytes))


async def _load_tile(image_id: str, wid: WadorsId, ds: JsonDataset, modules: dict[str, Any],
                     prescale: bool, **http: Any) -> Image:
    """Tile ``wid.tile`` of a mosaic frame: the frame fetched and decoded once for all its
    tiles, the tile cut out and converted with its own modules (its position, as from files)."""
    mosaic = modules.get("mosaicModule")
    if not mosaic or wid.tile is None or not 1 <= wid.tile <= int(mosaic["tiles"]):
        raise ImageLoadError(image_id, "no such mosaic tile in this instance")
    key = f"{wid.frame_url}\n{http_config(**http).credentials_key()}"
    raw, photometric = await _mosaics.get(key, lambda: _decoded_mosaic(image_id, wid, ds, **http))
    part = np.ascontiguousarray(cut_tile(raw, mosaic, wid.tile))
    info = dataclasses.replace(_frame_info_for(image_id, ds, EXPLICIT_LE), rows=part.shape[0],
                               columns=part.shape[1])
    return await runtime.to_thread(frame_to_image, image_id, part, photometric, info, modules,
                                   prescale=prescale, lut_source=ds)


async def _decoded_mosaic(image_id: str, wid: WadorsId, ds: JsonDataset,
                          **http: Any) -> tuple[np.ndarray, str]:
    whole = dataclasses.replace(wid, tile=None)
    resp = await fetch(
        whole.frame_url, image_id, accept=FRAME_ACCEPT, config=http_config(**http),
        ok_statuses=_FALLBACK_STATUSES, max_bytes=_frame_budget(image_id, ds),
    )
    if resp.status_code in _FALLBACK_STATUSES:  # no frame retrieval: the instance itself
        parsed = await fetch_part10(image_id, whole.instance_url, INSTANCE_ACCEPT, **http)
        data, index = parsed.frame_payload(image_id, 0)
        return await runtime.to_thread(decode_frame, image_id, data, parsed.info, index)
    data, ts = _frame_part(image_id, resp, whole.frame_url)
    info = _frame_info_for(image_id, ds, ts)
    return await runtime.to_thread(decode_frame, image_id, data, info, 0)


def _frame_budget(image_id: str, ds: JsonDataset) -> int | None:
    """Most bytes a frame response may have: twice the uncompressed frame (a compressed
    codestream of noise is a little larger than raw) plus room for the multipart envelope."""
    try:
        info = _frame_info_for(image_id, ds, EXPLICIT_LE)
    except ImageLoadError:
        return None
    return 2 * info.frame_nbytes() + 64 * 1024


_MEDIA_SYNTAX = {
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
}


def _syntax_from_media_type(content_type: str) -> str | None:
    return _MEDIA_SYNTAX.get(content_type.split(";")[0].strip().lower())


def _part_syntax(part: Any) -> str:
    """The transfer syntax of one multipart frame: its parameter, else its media type."""
    return part.param("transfer-syntax") or _syntax_from_media_type(part.content_type) \
        or EXPLICIT_LE


def _frame_part(image_id: str, resp: Any, url: str) -> tuple[bytes, str]:
    """(bytes, transfer syntax) of the one frame a frames response holds."""
    try:
        parts = parse_multipart_related(resp.content, resp.headers.get("content-type", ""))
    except MultipartError as exc:
        raise ImageLoadError(image_id, f"{exc} from {redact_url(url)}") from exc
    if not parts or not parts[0].data:
        raise MissingPixelDataError(image_id, "the server returned no frame data")
    return parts[0].data, _part_syntax(parts[0])


# -- whole-series retrieval for volumes -------------------------------------------------------
async def retrieve_series_bulk(
    image_ids: list[str],
    deliver: Callable[[str, Image | None], None],
    prescale: bool = True,
    slots: Callable[[str], np.ndarray | None] | None = None,
    **http: Any,
) -> None:
    """Load the frames of every series that ``image_ids`` cover completely with ONE request per
    series (``GET <series>``, instances as multipart), decoding each instance while the rest
    downloads. Per-request server cost dominates DICOMweb frame retrieval, so this is several
    times faster than frame requests. Frames it does not deliver (partial coverage, a broken
    stream) are left to per-frame requests by the caller.

    ``slots(image_id)``: the caller's array a frame may be written into from a worker thread
    (a volume's slice), or None. A native frame is then decoded straight into it and delivered
    as ``None``: no ``Image``, no copy on the loop thread that reads the stream.
    """
    wanted: dict[str, set[str]] = {}
    for image_id in image_ids:
        try:
            wanted.setdefault(parse_image_id(image_id).series_url, set()).add(image_id)
        except ImageLoadError:
            return
    cfg = http_config(**http)
    for series_url, ids in wanted.items():
        early = early_responses.claim(series_url, cfg)  # begun beside the metadata request
        try:
            await _retrieve_series(series_url, ids, deliver, prescale, slots, early, **http)
        finally:
            if early is not None:
                await early.aclose()


def begin_series_request(series_url: str, **http: Any) -> early_responses.EarlyResponse | None:
    """Send the whole-series request of a volume now, while its metadata is fetched; the
    volume's load claims it (see ``early``). The caller releases it (closed if no load did)."""
    return early_responses.begin(series_url, f"{SCHEME}:{series_url}", INSTANCE_ACCEPT,
                                 http_config(**http))


async def _retrieve_series(series_url: str, ids: set[str],
                           deliver: Callable[[str, Image | None], None], prescale: bool,
                           slots: Callable[[str], np.ndarray | None] | None,
                           early: early_responses.EarlyResponse | None, **http: Any) -> None:
    import asyncio

    datasets = await get_series_metadata(next(iter(ids)), series_url, **http)
    rows = _image_ids_of(series_url, datasets)
    if any(row.tile for row in rows):  # mosaics: each fetched and decoded once, all tiles
        await _retrieve_tiles(datasets, ids, deliver, prescale, **http)  # cut from it
        return
    if {row.image_id for row in rows} != ids:  # part of the series (a 4D time point):
        await _retrieve_instance_frames(series_url, datasets, ids, deliver, prescale, **http)
        return  # the frames of each multi-frame instance in one request
    gate = asyncio.Semaphore(max(2, runtime.workers))
    pending: set[asyncio.Task[None]] = set()

    async def decode(data: bytes) -> None:
        job = asyncio.ensure_future(runtime.to_thread(_decode_instance, series_url, data,
                                                      ids, prescale, slots))
        try:
            images = await asyncio.shield(job)
            for frame_id, image in images:
                deliver(frame_id, image)
        except ImageLoadError:
            pass  # that frame is retried on its own, which reports the error
        except asyncio.CancelledError:
            # a thread may be writing into a slot: the load ends only when it has stopped
            await asyncio.wait([job])
            raise
        finally:
            gate.release()

    reader: MultipartReader | None = None
    try:
        body = early.chunks() if early is not None else stream_chunks(
            series_url, f"{SCHEME}:{series_url}", accept=INSTANCE_ACCEPT,
            config=http_config(**http))
        async with aclosing(body):  # a cancel while waiting for a decode slot closes it too
            async for ctype, chunk in body:
                reader = reader or MultipartReader(ctype)
                for part in reader.feed(chunk):
                    await gate.acquire()
                    task = asyncio.ensure_future(decode(part.data))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
    except (ImageLoadError, MultipartError) as exc:
        log.info("series retrieval of %s stopped (%s); frames fall back to single requests",
                 redact_url(series_url), exc)
    except asyncio.CancelledError:
        for task in pending:
            task.cancel()
        raise
    finally:
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def _retrieve_tiles(datasets: dict[str, JsonDataset], ids: set[str],
                          deliver: Callable[[str, Image], None], prescale: bool,
                          **http: Any) -> None:
    """The wanted tiles of each mosaic frame: one request and one decode per mosaic, its tiles
    converted together (a run of 17 mosaics is 17 requests, not 340 tile loads)."""
    import asyncio

    by_frame: dict[str, list[tuple[WadorsId, str]]] = {}
    for image_id in ids:
        wid = parse_image_id(image_id)
        if wid.tile is not None:
            by_frame.setdefault(wid.frame_url, []).append((wid, image_id))
    creds = http_config(**http).credentials_key()

    def convert(raw: np.ndarray, photometric: str, ds: JsonDataset,
                tiles: list[tuple[WadorsId, str]]) -> list[tuple[str, Image]]:
        out = []
        for wid, image_id in tiles:
            modules = module_store.get_modules(image_id)
            mosaic = (modules or {}).get("mosaicModule")
            if not mosaic or wid.tile is None:
                continue
            part = np.ascontiguousarray(cut_tile(raw, mosaic, wid.tile))
            info = dataclasses.replace(_frame_info_for(image_id, ds, EXPLICIT_LE),
                                       rows=part.shape[0], columns=part.shape[1])
            try:
                out.append((image_id, frame_to_image(image_id, part, photometric, info,
                                                     modules or {}, prescale=prescale,
                                                     lut_source=ds)))
            except ImageLoadError:
                continue  # its own load reports it
        return out

    async def one(frame_url: str, tiles: list[tuple[WadorsId, str]]) -> None:
        wid, first = tiles[0]
        ds = datasets.get(wid.instance)
        if ds is None:
            return
        try:
            raw, photometric = await _mosaics.get(f"{frame_url}\n{creds}", lambda: _decoded_mosaic(
                first, wid, ds, **http))
        except ImageLoadError:
            return
        for image_id, image in await runtime.to_thread(convert, raw, photometric, ds, tiles):
            deliver(image_id, image)

    await asyncio.gather(*(one(url, tiles) for url, tiles in by_frame.items()))


_FRAMES_PER_REQUEST = 256  # frame numbers in one URL (a few kB of path at most)


async def _retrieve_instance_frames(series_url: str, datasets: dict[str, JsonDataset],
                                    ids: set[str], deliver: Callable[[str, Image], None],
                                    prescale: bool, **http: Any) -> None:
    """The wanted frames of each multi-frame instance with one request
    (``.../frames/3,7,11``, PS3.18 10.4.1.1.3): a volume that is one acquisition of an enhanced
    4D object no longer costs a request per frame. Frames not delivered (a server refusing
    frame lists, a broken part) are left to per-frame requests."""
    import asyncio

    by_instance: dict[str, list[tuple[int, str]]] = {}
    for image_id in ids:
        wid = parse_image_id(image_id)
        by_instance.setdefault(wid.instance, []).append((wid.frame, image_id))
    cfg = http_config(**http)

    async def one(instance: str, frames: list[tuple[int, str]]) -> None:
        ds = datasets.get(instance)
        if ds is None or ds.get("PhotometricInterpretation") == "PALETTE COLOR":
            return
        url = url_join(series_url, f"/instances/{instance}/frames/"
                                    + ",".join(str(k) for k, _ in frames))
        budget = _frame_budget(frames[0][1], ds)
        try:
            resp = await fetch(url, frames[0][1], accept=FRAME_ACCEPT, config=cfg,
                               max_bytes=None if budget is None else budget * len(frames))
            parts = parse_multipart_related(resp.content, resp.headers.get("content-type", ""))
        except (ImageLoadError, MultipartError) as exc:
            log.info("frames of %s in one request failed (%s); frame by frame",
                     redact_url(url), exc)
            return
        if len(parts) != len(frames):
            return  # not one part per frame asked: let each frame be asked alone
        for (k, frame_id), part in zip(frames, parts):
            modules = module_store.get_modules(frame_id)
            if modules is None or not part.data:
                continue
            ts = _part_syntax(part)
            try:
                image = await runtime.to_thread(
                    decode_to_image, frame_id, part.data, _frame_info_for(frame_id, ds, ts),
                    modules, prescale=prescale,
                    lut_source=ds.dataset() if (modules.get("modalityLutModule") or {}).get(
                        "has_modality_lut_sequence") else ds)
            except ImageLoadError:
                continue  # its own request reports the error
            deliver(frame_id, image)

    for frames in by_instance.values():
        frames.sort()
    jobs = [one(instance, chunk) for instance, frames in by_instance.items() if len(frames) > 1
            for chunk in (frames[i : i + _FRAMES_PER_REQUEST]
                          for i in range(0, len(frames), _FRAMES_PER_REQUEST))]
    await asyncio.gather(*jobs)


def _decode_instance(series_url: str, data: bytes, ids: set[str], prescale: bool,
                     slots: Callable[[str], np.ndarray | None] | None = None,
                     ) -> list[tuple[str, Image | None]]:
    """The wanted frames of one instance from a series stream (worker thread). A classic
    one-frame instance whose modules came with the series metadata is read with the compact
    header reader and decoded from its bytes (a native one straight into its slot, if the
    caller gives one: delivered as None); anything else is parsed by pydicom."""
    fast = read_fast_header(data)
    if fast is not None:
        uid = str(fast.get("SOPInstanceUID") or "")
        frame_id = f"{SCHEME}:{url_join(series_url, f'/instances/{uid}/frames/1')}"
        modules = module_store.get_modules(frame_id)
        element = fast.get_item("PixelData")
        if (frame_id in ids and modules is not None and element is not None
                and number_of_frames(frame_id, fast) == 1):
            ts = str(fast.file_meta.TransferSyntaxUID)
            info = frame_info(frame_id, fast, ts)
            start = element.value_tell
            end = len(data) if element.length == 0xFFFFFFFF else start + element.length
            pixels = memoryview(data)[start:end] if info.native else data[start:end]
            payload, index = frame_payload(frame_id, info, pixels, 0)
            slot = slots(frame_id) if slots is not None and info.native else None
            if slot is not None and decode_native_into(slot, payload, index, info, modules,
                                                       prescale):
                return [(frame_id, None)]
            return [(frame_id, decode_to_image(frame_id, payload, info, modules, index=index,
                                               prescale=prescale))]
    parsed = parse_part10(f"{SCHEME}:{series_url}", data)
    uid = str(parsed.dataset.get("SOPInstanceUID", ""))
    out: list[tuple[str, Image | None]] = []
    for k in range(1, parsed.info.number_of_frames + 1):
        frame_id = f"{SCHEME}:{url_join(series_url, f'/instances/{uid}/frames/{k}')}"
        if frame_id in ids:
            modules = module_store.get_modules(frame_id)
            if parsed.info.photometric_interpretation == "PALETTE COLOR":
                modules = None
            out.append((frame_id, decode_parsed_frame(frame_id, parsed, k, prescale, modules)))
    return out


async def _load_from_instance(image_id: str, wid: WadorsId, prescale: bool, **http: Any) -> Image:
    parsed = await fetch_part10(image_id, wid.instance_url, INSTANCE_ACCEPT, **http)
    return await runtime.to_thread(decode_parsed_frame, image_id, parsed, wid.frame, prescale)


def instance_json(image_id: str) -> JsonDataset | None:
    """The DICOM JSON of a ``wadors:`` frame's (or instance URL's) instance, from series
    metadata already fetched (nothing is requested here), or None."""
    try:
        series_url, instance = parse_instance_id(image_id)
    except Exception:
        return None
    # series metadata is kept per credentials ("<series URL>\n<credentials key>")
    for found in series_metadata.finished(lambda key: key.split("\n", 1)[0] == series_url):
        item = found.get(instance)
        if item is not None:
            return item
    return None


def instance_header(image_id: str) -> Any:
    found = instance_json(image_id)
    return None if found is None else found.dataset()


json_sources["wadors"] = instance_json
header_sources["wadors"] = instance_header

