"""Event bus with Cornerstone's event names. A raising handler is logged and never breaks a load,
whatever it raises (even ``SystemExit``: handlers run on the shared loop)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

log = logging.getLogger("medstream.events")


class Events(str, Enum):
    IMAGE_LOADED = "IMAGE_LOADED"
    IMAGE_LOAD_FAILED = "IMAGE_LOAD_FAILED"
    IMAGE_VOLUME_MODIFIED = "IMAGE_VOLUME_MODIFIED"
    VOLUME_LOADED = "VOLUME_LOADED"
    IMAGE_VOLUME_LOADING_COMPLETED = "IMAGE_VOLUME_LOADING_COMPLETED"
    IMAGE_VOLUME_STAGE_COMPLETED = "IMAGE_VOLUME_STAGE_COMPLETED"  # a staged load's stage
    IMAGE_CACHE_IMAGE_ADDED = "IMAGE_CACHE_IMAGE_ADDED"
    IMAGE_CACHE_IMAGE_REMOVED = "IMAGE_CACHE_IMAGE_REMOVED"
    VOLUME_CACHE_VOLUME_ADDED = "VOLUME_CACHE_VOLUME_ADDED"
    VOLUME_CACHE_VOLUME_REMOVED = "VOLUME_CACHE_VOLUME_REMOVED"
    CACHE_SIZE_EXCEEDED = "CACHE_SIZE_EXCEEDED"


@dataclass(frozen=True)
class Event:
    type: Events
    detail: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Event], Any]


class EventBus:
    """Handlers run synchronously in the thread that fires the event (usually the medstream loop),
    so they must be quick; hand heavy work to your own thread or loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[Events, list[Handler]] = {}

    def add_event_listener(self, event: Events | str, handler: Handler) -> None:
        key = Events(event)
        with self._lock:
            self._handlers.setdefault(key, []).append(handler)

    def remove_event_listener(self, event: Events | str, handler: Handler) -> None:
        key = Events(event)
        with self._lock:
            handlers = self._handlers.get(key, [])
            if handler in handlers:
                handlers.remove(handler)

    def remove_all_listeners(self) -> None:
        with self._lock:
            self._handlers.clear()

    # Short aliases, as users of event emitters expect.
    on = add_event_listener
    off = remove_event_listener

    def trigger(self, event: Events, **detail: Any) -> None:
        with self._lock:
            handlers = list(self._handlers.get(event, ()))
        if not handlers:
            return
        ev = Event(event, detail)
        for handler in handlers:
            try:
                handler(ev)
            except BaseException:  # SystemExit too: it would stop the loop every load runs on
                log.exception("event handler %r for %s raised; ignored", handler, event.value)


events = EventBus()
