"""Option checking for the public calls, and plain paths as image IDs.

Options travel as ``**kwargs`` down to loaders, so a typo (``toekn=``, ``prescal=False``) or a
bad value (``spacing="kep"``) used to be dropped without a word and the user got a different
result than asked for. Every public entry point checks its options here: an unknown name or a
bad value raises :class:`OptionError` (a ``TypeError`` and a ``ValueError``) naming it.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ImageLoadError, MedstreamError

HTTP_OPTIONS = frozenset({"token", "headers", "verify", "timeout", "retries", "backoff",
                          "max_bytes", "auth", "cert"})
IMAGE_OPTIONS = HTTP_OPTIONS | {"prescale"}
VOLUME_OPTIONS = IMAGE_OPTIONS | {"image_ids", "spacing", "tilt", "request_type", "priority",
                                  "retrieve", "device", "gpu_batch"}
OPEN_VOLUME_OPTIONS = VOLUME_OPTIONS - {"image_ids"} | {"series", "dynamic", "load", "order",
                                                        "on_progress"}
KNOWN = {"load_image": IMAGE_OPTIONS, "volume": VOLUME_OPTIONS,
         "open_volume": OPEN_VOLUME_OPTIONS, "http": HTTP_OPTIONS}

CHOICES: dict[str, tuple[Any, ...]] = {
    "spacing": ("raise", "keep", "resample"),
    "tilt": ("shear", "raise"),
    "order": ("interleaved", "sequential"),
    "retrieve": ("auto", "frames"),
}
FLAGS = ("prescale", "dynamic", "load")

#: Options that change a volume's pixels or geometry, with their defaults: they are part of the
#: cache key of ``open_volume``, so ``prescale=False`` never returns a cached HU volume.
RESULT_OPTIONS: dict[str, Any] = {"prescale": True, "spacing": "raise", "tilt": "shear"}


class OptionError(MedstreamError, TypeError, ValueError):
    """An unknown option name or a value out of its choices."""


@functools.lru_cache(maxsize=256)
def _loader_params(loader: Callable[..., Any] | None) -> tuple[frozenset[str], bool]:
    """(named keyword parameters, whether unknown names are welcome): a loader of another
    package that takes ``**kwargs`` may consume any option; medstream's own never do."""
    if loader is None:
        return frozenset(), False
    try:
        params = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):
        return frozenset(), True
    names = frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    own = (getattr(loader, "__module__", "") or "").startswith("medstream.")
    return names, var_kw and not own


def check_options(where: str, options: Mapping[str, Any], api: str,
                  loader: Callable[..., Any] | None = None) -> None:
    """Raise :class:`OptionError` for a name ``where`` (the public call) does not take, or a
    value out of its choices. ``api`` picks the known set; ``loader``'s own keyword parameters
    are accepted too (custom loaders take custom options)."""
    try:
        named, anything = _loader_params(loader)
    except TypeError:  # an unhashable callable
        named, anything = _loader_params.__wrapped__(loader)
    known = KNOWN[api] | named
    for name in options:
        if name not in known and not anything:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptionError(f"{where}() got an unknown option {name!r}{hint}; "
                              f"it takes {', '.join(sorted(KNOWN[api]))}")
    check_values(where, options)


def check_values(where: str, options: Mapping[str, Any]) -> None:
    for name, choices in CHOICES.items():
        value = options.get(name)
        if value is not None and value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {name}={close[0]!r}?)" if close else ""
            raise OptionError(f"{where}(): {name}={value!r} is not one of "
                              f"{', '.join(repr(c) for c in choices)}{hint}")
    for name in FLAGS:
        if name in options and not isinstance(options[name], bool):
            raise OptionError(f"{where}(): {name} must be True or False, "
                              f"got {options[name]!r}")


def variant_suffix(options: Mapping[str, Any]) -> str:
    """The part of a volume ID that records non-default result options (``""`` for defaults)."""
    parts = [f"{k}={options[k]}" for k, default in RESULT_OPTIONS.items()
             if k in options and options[k] != default]
    return ";" + ";".join(parts) if parts else ""


# -- plain paths as image IDs ------------------------------------------------------------------
def as_image_id(item: str | os.PathLike[str]) -> str:
    """An image ID for ``item``: IDs with a registered scheme unchanged; a path (``/x.dcm``,
    ``scan/IM1``, a ``Path``) or an object URL (``s3://b/x.dcm``) becomes ``dicomfile:``
    (``nifti:...?slice=0`` for NIfTI).

    A missing path raises ``ImageLoadError`` saying "no such file or folder" — not "no loader for
    scheme ''". Without a scheme and not on disk, an ID still goes to the unknown-scheme
    loader when one is registered.
    """
    from .core.registry import image_loaders, scheme_of
    from .storage import is_store_url

    path_like = isinstance(item, os.PathLike)
    text = os.fspath(item)
    if not path_like and is_store_url(text) and scheme_of(text) not in image_loaders.schemes():
        if text.lower().endswith((".nii", ".nii.gz")):  # an object URL: a file in a bucket
            return f"nifti:{text}?slice=0"
        from .loaders.dicomfile import image_id_for

        return image_id_for(text)
    if not path_like:
        scheme = scheme_of(text)
        if scheme and (scheme in image_loaders.schemes() or len(scheme) > 1 and not
                       text.startswith(("/", ".", "~"))):
            return text
    path = os.path.expanduser(text)
    if not os.path.exists(path):
        if not path_like and image_loaders._unknown is not None:
            return text  # the fallback loader may know what this is
        raise ImageLoadError(text, "no such file or folder" + (f": {path}" if path != text else ""))
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ImageLoadError(text, f"{path} is a folder, not an image: open it with "
                                   "ms.open_volume() or list it with ms.scan_folder()")
    if path.lower().endswith((".nii", ".nii.gz")):
        return f"nifti:{path}?slice=0"
    from .loaders.dicomfile import image_id_for

    return image_id_for(path)
