"""Option checking for the public calls, and plain paths as image IDs.

Options travel as ``**kwargs`` down to loaders, so a typo (``toekn=``, ``prescal=False``) or a
bad value (``spacing="kep"``) used to be dropped without a word and the user got a different
result than asked for. Every public entry point checks its options here: an unknown name or a
bad value raises :class:`OptionError` (a ``TypeError`` and a ``ValueError``) naming it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .errors import MedstreamError

HTTP_OPTIONS = frozenset({"token", "headers", "verify", "timeout", "retries", "backoff",
                          "max_bytes", "auth", "cert"})
IMAGE_OPTIONS = HTTP_OPTIONS | {"prescale"}
VOLUME_OPTIONS = IMAGE_OPTIONS | {"image_ids", "spacing", "tilt", "request_type", "priority",
                                  "retrieve", "device", "gpu_batch", "decimate"}
OPEN_VOLUME_OPTIONS = VOLUME_OPTIONS - {"image_ids"} | {"series", "dynamic", "load", "order",
                                                        "on_progress", "stages"}
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
RESULT_OPTIONS: dict[str, Any] = {"prescale": True, "spacing": "raise", "tilt": "shear",
                                  "decimate": None}


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
            close = _close_match(name, sorted(known))
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise OptionError(f"{where}() got an unknown option {name!r}{hint}; "
                              f"it takes {', '.join(sorted(KNOWN[api]))}")
    check_values(where, options)


def _close_match(word: str, candidates: list[str]) -> list[str]:
    """The closest candidate, if any is close (difflib imported here: errors only)."""
    import difflib

    return difflib.get_close_matches(word, candidates, n=1)


def check_values(where: str, options: Mapping[str, Any]) -> None:
    for name, choices in CHOICES.items():
        value = options.get(name)
        if value is not None and value not in choices:
            close = _close_match(str(value), [str(c) for c in choices])
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
