"""Any header element by keyword: ``metadata.get("instance", id)`` and ``metadata.get("KVP", id)``.

Header scans keep only the modules volumes need (keeping every dataset of a 2000-file series
would hold far more memory than it is worth). The full header is read again on demand instead:
a ``dicomfile:`` file is re-read without its pixel data, a ``wadors:`` instance comes from the
series metadata already fetched. A few recent headers are kept (bounded), never pixel data.
Cornerstone's PET, patient-study, overlay, cine and calibration modules are built from it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.kept import KeptMap
from ..core.metadata import metadata
from ..errors import MedstreamError
from .keywords import tag_for_keyword
from .modules import EXTRA_MODULES, extra_modules
from .store import camel_case

if TYPE_CHECKING:  # pydicom is imported by the first header asked for, not by registering
    from pydicom.dataset import Dataset

    from .jsonmeta import JsonDataset

MAX_HEADERS = 256
_BINARY_LIMIT = 256  # bytes: larger binary values (overlays, LUTs) are left out of "instance"
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")


def dataset_nbytes(ds: Any) -> int:
    """Roughly what a parsed header holds: value bytes plus a per-element overhead, nested
    sequences included, without converting raw elements (which would grow it)."""
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence as DicomSequence

    total = 0
    for elem in ds.values():
        total += 120
        length = getattr(elem, "length", None)
        if isinstance(length, int):  # a raw element: its value bytes
            total += length
            continue
        value = getattr(elem, "value", None)
        if isinstance(value, (bytes, str)):
            total += len(value)
        elif isinstance(value, DicomSequence):
            total += sum(dataset_nbytes(item) for item in value)
        elif isinstance(value, (list, MultiValue)):
            total += 16 * len(value)
    return total


class _Headers:
    def __init__(self) -> None:
        self._items: KeptMap[str, Dataset] = KeptMap("headers", max_items=MAX_HEADERS,
                                                     size_of=dataset_nbytes)

    def get(self, key: str, read: Any) -> Dataset | None:
        ds = self._items.get(key)
        if ds is not None:
            return ds
        ds = read()
        if ds is not None:
            self._items.put(key, ds)
        return ds

    def clear(self) -> None:
        self._items.clear()


headers = _Headers()


#: Where the full header of an image ID's object comes from, per scheme (the loaders register
#: theirs: a ``dicomfile:`` file re-read without pixels, a ``wadors:`` instance's JSON).
header_sources: dict[str, Callable[[str], Dataset | None]] = {}
json_sources: dict[str, Callable[[str], JsonDataset | None]] = {}


def header_of(image_id: str) -> Dataset | None:
    """The header (no pixel data) of the object ``image_id`` belongs to, or None."""
    source = header_sources.get(image_id.split(":", 1)[0])
    return source(image_id) if source is not None else None


def json_of(image_id: str) -> JsonDataset | None:
    """The DICOM JSON view of an image's instance where its scheme has one (``wadors:``, from
    series metadata already fetched: nothing is requested here), or None."""
    source = json_sources.get(image_id.split(":", 1)[0])
    return source(image_id) if source is not None else None


def naturalize(ds: Dataset) -> dict[str, Any]:
    """Keyword -> plain Python value (lists, str, float, int; sequences as lists of dicts).
    Elements without a keyword (private) are keyed by their tag, e.g. ``"00191008"``."""
    out: dict[str, Any] = {}
    for elem in ds:
        if elem.tag == 0x7FE00010:
            continue
        key = elem.keyword or f"{elem.tag:08X}"
        value = plain_value(elem.value)
        if isinstance(value, bytes) and len(value) > _BINARY_LIMIT:
            continue
        out[key] = value
    return out


def plain_value(value: Any) -> Any:
    from pydicom.multival import MultiValue
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.valuerep import PersonName

    if isinstance(value, DicomSequence):
        return [naturalize(item) for item in value]
    if isinstance(value, (MultiValue, list, tuple)):
        return [plain_value(v) for v in value]
    if isinstance(value, PersonName):
        return str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value


def provider(module: str, image_id: str) -> Any:
    """``instance`` (the whole header as a dict), the extra Cornerstone modules, or any
    element by keyword (``"KVP"``, ``"ImageType"``) or by tag (``"00111001"``, private ones).

    A ``wadors:`` element the server sent as a BulkDataURI is fetched when asked for by keyword
    or tag (blocking: ask from your own thread, or use ``ms.dicomweb.read_element_async``);
    ``instance`` never fetches (such elements are None there)."""
    if module == "instance":
        ds = header_of(image_id)
        return None if ds is None else naturalize(ds)
    if camel_case(module) in EXTRA_MODULES:  # "pet_isotope_module" works too, as for the others
        module = camel_case(module)
        ds = header_of(image_id)
        return None if ds is None else extra_modules(ds)[module]
    if module[:1].isupper() and tag_for_keyword(module) is not None or _TAG_RE.match(module):
        found = json_of(image_id) if image_id.startswith("wadors:") else None
        bulk = found.bulk(module) if found is not None else None
        if bulk is not None:  # left out of the metadata: fetched now, as asked for
            return plain_value(bulk.value())
        ds = header_of(image_id)
        key: str | int = int(module, 16) if _TAG_RE.match(module) else module
        if ds is None or key not in ds:
            return None
        return plain_value(ds[key].value)
    return None


metadata.add_provider(provider, priority=-20)
