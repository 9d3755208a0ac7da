"""The metadata provider for DICOM images: modules recorded per image ID as objects are parsed."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ..core.metadata import metadata

_MAX_IMAGES = 200_000


class ModuleStore:
    """Bounded map image_id -> modules; camelCase (Cornerstone) or snake_case module names."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def put(self, image_id: str, modules: dict[str, Any]) -> None:
        with self._lock:
            self._items[image_id] = modules
            self._items.move_to_end(image_id)
            while len(self._items) > _MAX_IMAGES:
                self._items.popitem(last=False)

    def get_modules(self, image_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(image_id)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def provider(self, module: str, image_id: str) -> Any:
        modules = self.get_modules(image_id)
        if modules is None:
            return None
        if module == "all":
            return modules
        return modules.get(_camel(module))


def _camel(name: str) -> str:
    if "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


module_store = ModuleStore()
metadata.add_provider(module_store.provider, priority=-10)
