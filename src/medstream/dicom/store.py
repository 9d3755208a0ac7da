"""The metadata provider for DICOM images: modules recorded per image ID as objects are parsed."""

from __future__ import annotations

from typing import Any

from ..core.kept import KeptMap
from ..core.metadata import metadata

MAX_METADATA_BYTES = 1024**3  # ~70,000 images' modules


def modules_nbytes(modules: dict[str, Any]) -> int:
    """About what one image's modules hold (~12 kB for a CT slice): a per-entry figure, as a
    full walk on every put would cost a tenth of a header scan."""
    return 200 + sum(400 + 160 * len(m) if isinstance(m, dict) else 200
                     for m in modules.values())


class ModuleStore:
    """Byte-bounded map image_id -> modules; camelCase (Cornerstone) or snake_case module names.
    An evicted image's modules are read again from its source when a load needs them."""

    def __init__(self) -> None:
        self._items: KeptMap[str, dict[str, Any]] = KeptMap(
            "metadata", max_bytes=MAX_METADATA_BYTES, size_of=modules_nbytes, shrinkable=False)

    def put(self, image_id: str, modules: dict[str, Any]) -> None:
        self._items.put(image_id, modules)

    def get_modules(self, image_id: str) -> dict[str, Any] | None:
        return self._items.get(image_id)

    def clear(self) -> None:
        self._items.clear()

    def provider(self, module: str, image_id: str) -> Any:
        modules = self.get_modules(image_id)
        if modules is None:
            return None
        if module == "all":
            return modules
        return modules.get(camel_case(module))


def camel_case(name: str) -> str:
    if "_" not in name:
        return name
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


module_store = ModuleStore()
metadata.add_provider(module_store.provider, priority=-10)
