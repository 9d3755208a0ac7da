"""``dicombytes:<n>[?frame=K]`` — DICOM objects held in memory (Cornerstone's ``fileManager``).

Bytes, file-like objects (an upload, a zip member, an object-store read) and pydicom
``Dataset`` s are parsed once at registration: the metadata modules of every frame go to the
module store there and then, so a volume of them has its geometry before any pixel is decoded.

The registry is bounded by the bytes it holds (least recently used objects go first); the IDs of
an evicted or unregistered object fail to load with a message saying so. Registering the same
bytes (or the same ``Dataset`` object) again returns the same ID, so cached images and volumes
made from it are reused.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ..core.image import Image
from ..core.runtime import runtime
from ..dicom.frames import check_frames_fit, number_of_frames
from ..dicom.modules import build_modules
from ..dicom.part10 import (
    PIXEL_KEYWORDS,
    ParsedDicom,
    decode_parsed_frame,
    frame_info,
    parse_part10,
)
from ..dicom.store import module_store
from ..errors import DicomParseError, ImageLoadError, MissingPixelDataError
from .dicomfile import record_tile_modules, split_tile, tile_image

SCHEME = "dicombytes"
DEFAULT_MAX_BYTES = 4 * 1024**3

_ITEM_TAG = b"\xfe\xff\x00\xe0"  # the first item of encapsulated pixel data


@dataclass
class _Entry:
    parsed: ParsedDicom
    ids: list[str]
    key: str  # content digest (bytes) or "ds:<id>" (a Dataset, kept alive by the entry)


class MemorySources:
    """The registry behind ``ms.register_bytes`` / ``ms.register_dataset``: number -> parsed
    object, least recently used first out once ``max_bytes`` is passed."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[int, _Entry] = OrderedDict()
        self._by_key: dict[str, int] = {}
        self._next = 1
        self._bytes = 0
        self.max_bytes = max_bytes

    @property
    def nbytes(self) -> int:
        """Pixel bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def set_max_bytes(self, n: int) -> None:
        with self._lock:
            self.max_bytes = n
            self._evict()

    def add(self, parsed: ParsedDicom, key: str) -> list[str]:
        """Register a parsed object (or find it registered under ``key``): its image IDs."""
        with self._lock:
            n = self._by_key.get(key)
            if n is not None and n in self._items:
                self._items.move_to_end(n)
                return list(self._items[n].ids)
            n, self._next = self._next, self._next + 1
        base = f"{SCHEME}:{n}"
        frames = number_of_frames(base, parsed.dataset)
        ids = [base] if frames == 1 else [f"{base}?frame={k}" for k in range(1, frames + 1)]
        ts = parsed.info.transfer_syntax_uid
        for k, ident in enumerate(ids):  # geometry before pixels: modules of every frame now
            module_store.put(ident, build_modules(parsed.dataset, k, ts))
        if frames > 1:
            module_store.put(base, module_store.get_modules(ids[0]) or {})
        with self._lock:
            self._items[n] = _Entry(parsed, ids, key)
            self._by_key[key] = n
            self._bytes += parsed.nbytes
            self._evict(keep=n)
        return list(ids)

    def _evict(self, keep: int | None = None) -> None:
        while self._bytes > self.max_bytes and self._items:
            n = next(iter(self._items))
            if n == keep and len(self._items) == 1:
                break  # one object over the budget still loads
            if n == keep:
                self._items.move_to_end(n)
                continue
            self._drop(n)

    def _drop(self, n: int) -> None:
        entry = self._items.pop(n)
        self._bytes -= entry.parsed.nbytes
        if self._by_key.get(entry.key) == n:
            del self._by_key[entry.key]

    def get(self, image_id: str) -> tuple[ParsedDicom, int]:
        """(parsed object, 1-based frame) of an ID, or ``ImageLoadError`` saying why not."""
        n, frame = parse_image_id(image_id)
        with self._lock:
            entry = self._items.get(n)
            if entry is not None:
                self._items.move_to_end(n)
        if entry is None:
            raise ImageLoadError(image_id, "not registered (unregistered, or evicted from the "
                                           "in-memory sources: raise ms.memory_sources.max_bytes)")
        return entry.parsed, frame or 1

    def ids_of(self, image_id: str) -> list[str]:
        n, _ = parse_image_id(image_id)
        with self._lock:
            entry = self._items.get(n)
        if entry is None:
            raise ImageLoadError(image_id, "not registered")
        return list(entry.ids)

    def remove(self, image_id: str) -> bool:
        n, _ = parse_image_id(image_id)
        with self._lock:
            if n not in self._items:
                return False
            self._drop(n)
            return True

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._by_key.clear()
            self._bytes = 0


memory_sources = MemorySources()


def parse_image_id(image_id: str) -> tuple[int, int | None]:
    """(registry number, 1-based frame or None) of a ``dicombytes:`` ID."""
    rest = image_id[len(SCHEME) + 1:] if image_id.startswith(SCHEME + ":") else image_id
    rest = split_tile(rest)[0]  # a mosaic's tile: the object's number and frame
    number, _, query = rest.partition("?")
    try:
        frame = int(query[len("frame="):]) if query.startswith("frame=") else None
        if query and frame is None:
            raise ValueError(query)
        return int(number), frame
    except ValueError as exc:
        raise ImageLoadError(image_id, "not a dicombytes ID (dicombytes:N or "
                                       "dicombytes:N?frame=K)") from exc


# -- registration ------------------------------------------------------------------------------
def _parsed_dataset(image_id: str, ds: Dataset) -> ParsedDicom:
    """What ``parse_part10`` makes from a file, from a ``Dataset`` already in memory (no copy of
    its pixel data). Without file meta, native pixel data is taken as Explicit VR LE."""
    kw = next((k for k in PIXEL_KEYWORDS if k in ds), None)
    if kw is None:
        raise MissingPixelDataError(image_id, "the dataset has no pixel data")
    pixel_bytes = ds[kw].value
    if not pixel_bytes:
        raise MissingPixelDataError(image_id, "the pixel data element is empty")
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else None
    if ts is None:
        if bytes(pixel_bytes[:4]) == _ITEM_TAG:
            raise DicomParseError(image_id, "compressed pixel data but no TransferSyntaxUID in "
                                            "ds.file_meta")
        ts = str(ExplicitVRLittleEndian)
    info = frame_info(image_id, ds, ts)
    check_frames_fit(image_id, info, len(pixel_bytes))
    return ParsedDicom(ds, info, pixel_bytes, len(pixel_bytes))


def register_all(source: Any) -> list[str]:
    """Register bytes, a file-like object or a ``Dataset``: every image ID it holds (one per
    frame of a multi-frame object)."""
    if isinstance(source, Dataset):
        return memory_sources.add(_parsed_dataset(f"{SCHEME}:dataset", source),
                                  f"ds:{id(source)}")
    if hasattr(source, "read"):
        source = source.read()
    if not isinstance(source, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected DICOM bytes, a file-like object or a pydicom Dataset, got "
                        f"{type(source).__name__}")
    data = bytes(source)
    key = "sha1:" + hashlib.sha1(data).hexdigest()
    return memory_sources.add(parse_part10(f"{SCHEME}:bytes", data), key)


def register_bytes(data: bytes | bytearray | memoryview | Any) -> str:
    """Keep a DICOM Part 10 object (bytes or a file-like object) in memory and return its image
    ID (``dicombytes:N``: its first frame; :func:`registered_image_ids` lists all frames)."""
    return register_all(data)[0].split("?", 1)[0]


def register_dataset(ds: Dataset) -> str:
    """Like :func:`register_bytes` for a pydicom ``Dataset`` (held, not copied: do not change
    it while registered)."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a pydicom Dataset, got {type(ds).__name__}")
    return register_all(ds)[0].split("?", 1)[0]


def registered_image_ids(image_id: str) -> list[str]:
    """Every image ID of a registered object: ``[id]``, or one ``?frame=K`` ID per frame."""
    return memory_sources.ids_of(image_id)


def unregister(image_id: str) -> bool:
    """Forget a registered object (its memory is freed once no image or volume holds it)."""
    return memory_sources.remove(image_id)


def as_image_ids(item: Any) -> list[str] | None:
    """The image IDs of an in-memory item (registered on the way), None for anything else."""
    if isinstance(item, (bytes, bytearray, memoryview, Dataset)) or hasattr(item, "read"):
        return register_all(item)
    return None


# -- loader --------------------------------------------------------------------------------------
def _load_sync(image_id: str, prescale: bool) -> Image:
    parsed, frame = memory_sources.get(image_id)
    tile = split_tile(image_id)[1]
    if tile is not None:
        modules = module_store.get_modules(image_id) or record_tile_modules(
            image_id, parsed).get(image_id)
        if not modules:
            raise ImageLoadError(image_id, "not a mosaic with this tile")
        return tile_image(image_id, parsed, modules, tile, prescale)
    return decode_parsed_frame(image_id, parsed, frame, prescale,
                               modules=module_store.get_modules(image_id))


async def mosaic_tile_ids(image_id: str) -> list[str] | None:
    """The tile IDs of a registered mosaic object given as one ID (modules recorded)."""
    if split_tile(image_id)[1] is not None:
        return None
    parsed, frame = memory_sources.get(image_id)
    if frame != 1:
        return None
    found = await runtime.to_thread(record_tile_modules, image_id, parsed)
    return list(found) or None


async def load_dicombytes(image_id: str, prescale: bool = True, **_: Any) -> Image:
    """Decode in the worker pool, like a file (the bytes are already here)."""
    return await runtime.to_thread(_load_sync, image_id, prescale)


async def preload_dicombytes_metadata(image_ids: list[str], **_: Any) -> None:
    """Modules were recorded at registration; rebuild any the bounded module store dropped."""
    for image_id in image_ids:
        if module_store.get_modules(image_id) is None:
            try:
                parsed, frame = memory_sources.get(image_id)
            except ImageLoadError:
                continue  # the load reports it under its own ID
            if split_tile(image_id)[1] is not None:
                record_tile_modules(image_id, parsed)
                continue
            module_store.put(image_id, build_modules(parsed.dataset, frame - 1,
                                                     parsed.info.transfer_syntax_uid))
