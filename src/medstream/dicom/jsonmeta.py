"""DICOM JSON (PS3.18 F.2) read in place: a light, ``Dataset``-like view of one instance.

``pydicom.Dataset.from_json`` builds a full dataset per instance, with per-element conversion
and validation; for a series /metadata response of hundreds of instances that was most of the
time to open a DICOMweb volume. Here the parsed JSON stays as it is and a value is converted
only when a module asks for it, to what pydicom would have given the module builder. A real
``Dataset`` is still made on demand for the few uses that need one (LUT data).
"""

from __future__ import annotations

import functools
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from .values import KeywordAttributes


@functools.lru_cache(maxsize=None)
def _key(keyword: str) -> str | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else f"{tag:08X}"


def _bulk_none(tag: str, vr: str, uri: str) -> Any:
    return None


class JsonDataset(KeywordAttributes):
    """One DICOM JSON object: ``get(keyword)``, ``keyword in ds``, attributes by keyword."""

    __slots__ = ("_item", "_dataset")

    def __init__(self, item: dict[str, Any]) -> None:
        self._item = item
        self._dataset: Dataset | None = None

    def __contains__(self, keyword: object) -> bool:
        key = _key(keyword) if isinstance(keyword, str) else None
        return key is not None and key in self._item

    def get_item(self, keyword: str, keep_deferred: bool = True) -> None:
        return None  # no pixel data in metadata

    def get(self, keyword: str, default: Any = None) -> Any:
        key = _key(keyword)
        element = self._item.get(key) if key is not None else None
        if not element:
            return default
        value = _convert(element)
        return default if value is None else value

    def dataset(self) -> Dataset:
        """The full pydicom ``Dataset`` (made once, when LUT data or the like is needed)."""
        if self._dataset is None:
            self._dataset = Dataset.from_json(self._item, bulk_data_uri_handler=_bulk_none)
        return self._dataset


def _convert(element: dict[str, Any]) -> Any:
    vr = element.get("vr")
    values = element.get("Value")
    if not values:
        return None
    if vr == "SQ":
        return [JsonDataset(item) for item in values if isinstance(item, dict)]
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
