"""DICOM JSON (PS3.18 F.2) read in place: a light, ``Dataset``-like view of one instance.

``pydicom.Dataset.from_json`` builds a full dataset per instance, with per-element conversion
and validation; for a series /metadata response of hundreds of instances that was most of the
time to open a DICOMweb volume. Here the parsed JSON stays as it is and a value is converted
only when a module asks for it, to what pydicom would have given the module builder. A real
``Dataset`` is still made on demand for the few uses that need one (LUT data).

Values the server left out as a ``BulkDataURI`` (overlays, ICC profiles, large private OB) read
as absent through ``get`` and ``dataset()``, so module builders never touch the network;
:meth:`JsonDataset.bulk` gives a :class:`BulkData` reference that fetches only when read.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ..core.runtime import runtime
from ..errors import DecodeError, ImageLoadError
from .values import KeywordAttributes

#: ``await fetch(uri)``: the bytes of one BulkDataURI (the loader that read the metadata makes
#: it, bound to that load's HTTP settings and origin).
BulkFetcher = Callable[[str], Awaitable[bytes]]
_BYTES_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_KNOWN_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT",
                        "PN", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR", "US",
                        "UT", "UV"}) | _BYTES_VRS
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")


@functools.lru_cache(maxsize=4096)
def json_key(keyword: str) -> str | None:
    """The JSON key (``"00282000"``) of a keyword, or of a tag given as 8 hex digits."""
    if _TAG_RE.match(keyword):
        return keyword.upper()
    tag = tag_for_keyword(keyword)
    return None if tag is None else f"{tag:08X}"


def convert_bulk(tag: str, vr: str, data: bytes, item_id: str = "") -> Any:
    """Bulk bytes as pydicom gives that VR from a file: bytes for OB/OW/OF/..., numbers for
    US/SS/FL/..., text for string VRs (little endian, as PS3.18 sends bulk data). Bytes that
    do not fit the VR (3 bytes of US) raise ``DecodeError``."""
    if vr in _BYTES_VRS or vr not in _KNOWN_VRS:
        return data
    raw = RawDataElement(Tag(int(tag, 16)), vr, len(data), data, 0, False, True)
    try:
        return convert_raw_data_element(raw).value
    except Exception as exc:  # pydicom's BytesLengthException, struct errors, bad text
        raise DecodeError(item_id or tag, f"bulk data of ({tag[:4]},{tag[4:]}) is not a valid "
                                          f"{vr} value ({len(data)} bytes: {exc})") from exc


@dataclass(frozen=True, eq=False)
class BulkData:
    """An element the server sent as a ``BulkDataURI`` instead of its value (PS3.18 F.2.6).

    Nothing is fetched until :meth:`read` / :meth:`value` (each call fetches again: keep the
    result). The fetch uses the HTTP settings of the load that read the metadata, with its
    credentials only for the metadata's own origin, and the byte budget of every request."""

    tag: str  # "00282000"
    vr: str
    uri: str
    fetcher: BulkFetcher | None = field(default=None, repr=False)

    async def read_async(self) -> bytes:
        """The element's bytes, fetched now."""
        if self.fetcher is None:
            raise ImageLoadError(self.uri, f"bulk data of ({self.tag[:4]},{self.tag[4:]}) has no "
                                           "source to fetch from (metadata not read by a loader)")
        return await self.fetcher(self.uri)

    def read(self) -> bytes:
        """Blocking :meth:`read_async` (not from a medstream loop or worker thread)."""
        return runtime.run_sync(self.read_async())

    async def value_async(self) -> Any:
        """The value as pydicom reads it from a file: bytes for OB/OW/UN, numbers for US..."""
        return convert_bulk(self.tag, self.vr, await self.read_async(), self.uri)

    def value(self) -> Any:
        """Blocking :meth:`value_async`."""
        return runtime.run_sync(self.value_async())


def _bulk_none(tag: str, vr: str, uri: str) -> Any:
    return None


class JsonDataset(KeywordAttributes):
    """One DICOM JSON object: ``get(keyword)``, ``keyword in ds``, attributes by keyword;
    ``bulk(keyword)`` for a value left out as a BulkDataURI. A keyword or 8 hex digits
    (``"00111001"``, private tags) name an element."""

    __slots__ = ("_item", "_dataset", "_fetch")

    def __init__(self, item: dict[str, Any], bulk: BulkFetcher | None = None) -> None:
        self._item = item
        self._dataset: Dataset | None = None
        self._fetch = bulk

    def __contains__(self, keyword: object) -> bool:
        key = json_key(keyword) if isinstance(keyword, str) else None
        return key is not None and key in self._item

    def get_item(self, keyword: str, keep_deferred: bool = True) -> None:
        return None  # no pixel data in metadata

    def get(self, keyword: str, default: Any = None) -> Any:
        key = json_key(keyword)
        element = self._item.get(key) if key is not None else None
        if not element:
            return default
        value = _convert(element, self._fetch)
        return default if value is None else value

    def bulk(self, keyword: str) -> BulkData | None:
        """The BulkDataURI reference of an element (nothing is fetched), or None where the
        element is absent or sent inline."""
        key = json_key(keyword)
        element = self._item.get(key) if key is not None else None
        if key is None or not isinstance(element, dict):
            return None
        uri = element.get("BulkDataURI")
        if not isinstance(uri, str) or not uri:
            return None
        return BulkData(key, str(element.get("vr") or "UN"), uri, self._fetch)

    def bulk_elements(self) -> dict[str, BulkData]:
        """Every top-level element sent as a BulkDataURI, by tag (``"00282000"``)."""
        out = {}
        for key in self._item:
            found = self.bulk(key) if isinstance(key, str) else None
            if found is not None:
                out[key] = found
        return out

    def dataset(self) -> Dataset:
        """The full pydicom ``Dataset`` (made once, when LUT data or the like is needed)."""
        if self._dataset is None:
            self._dataset = Dataset.from_json(self._item, bulk_data_uri_handler=_bulk_none)
        return self._dataset


def _convert(element: dict[str, Any], bulk: BulkFetcher | None = None) -> Any:
    vr = element.get("vr")
    values = element.get("Value")
    if not values:
        return None
    if vr == "SQ":
        return [JsonDataset(item, bulk) for item in values if isinstance(item, dict)]
    if vr == "PN":
        values = [v.get("Alphabetic") if isinstance(v, dict) else v for v in values]
    elif vr == "AT":
        values = [f"({str(v)[:4].upper()},{str(v)[4:].upper()})" for v in values]
    values = [v.strip() if isinstance(v, str) else v for v in values]
    if len(values) == 1:
        return values[0]
    if vr == "AT":
        return "[" + ", ".join(values) + "]"
    return values
