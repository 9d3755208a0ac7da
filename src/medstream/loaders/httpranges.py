"""DICOM files on plain HTTP(S) servers read by byte ranges (``dicomfile:https://host/a.dcm``).

The requests go through medstream's own HTTP stack, not fsspec's: byte budgets, deadlines,
retries, host-scoped credentials (``configure_http(base_url=...)``) and redaction apply as for
every other HTTP load. A server that ignores ``Range`` answers with the whole object, which is
accepted for the first read (under the byte budget) and then served from memory.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from ..core.runtime import runtime
from ..core.scope import current as current_scope
from ..errors import ImageLoadError, NetworkError
from .http import Body, fetch, http_config

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
DEADLINE = 120.0  # seconds for one batch of ranges (each request has its own timeout too)


def _wait(item_id: str, coro: Any) -> Any:
    """Run on the medstream loop and wait, from a worker thread (never the loop's own)."""
    if runtime.in_loop_thread():
        coro.close()
        raise RuntimeError("ranged HTTP reads run in worker threads, not on the loop")
    future = runtime.submit(coro)
    try:
        return future.result(DEADLINE)
    except TimeoutError as exc:
        future.cancel()
        raise NetworkError(item_id, f"ranged reads not done in {DEADLINE:g} s") from exc
    except BaseException:  # an interrupt: the requests stop too
        future.cancel()
        raise


def _version(body: Body) -> str:
    return body.headers.get("etag") or body.headers.get("last-modified") or ""


def head(item_id: str, url: str, size: int) -> tuple[dict[str, Any], bytes, bool]:
    """(info, the first ``size`` bytes, whether that is the whole object) in one request:
    the total size comes from ``Content-Range``, or the body is the whole object."""
    config = http_config(**current_scope().http)  # an ms.Client's credentials, or the defaults
    body = _wait(item_id, fetch(url, item_id, config=config, byte_range=(0, size)))
    if body.status_code == 206:
        match = _CONTENT_RANGE.match(body.headers.get("content-range", ""))
        if match is None or match.group(3) == "*" or int(match.group(1)) != 0:
            raise ImageLoadError(item_id, f"bad Content-Range {body.headers.get('content-range')!r}")
        total = int(match.group(3))
        whole = len(body.content) >= total
    else:  # 200: no range support, the body is the object
        total, whole = len(body.content), True
    return {"size": total, "ETag": _version(body)}, body.content, whole


def ranges(item_id: str, wanted: Sequence[tuple[str, int, int, int]],
           ) -> list[bytes | BaseException]:
    """``[start, end)`` of each URL (of an object of the given size), all requests in flight at
    once. A server without Range support answers with the whole object (no larger than its known
    size, under the budget), which is cut; any other reply that is not exactly the range (an
    object that changed) is an error."""

    async def one(url: str, start: int, end: int, size: int) -> bytes:
        config = http_config(**current_scope().http)
        body = await fetch(url, item_id, config=config, byte_range=(start, end),
                           max_bytes=max(end - start + 1024, size))
        if body.status_code == 200 and len(body.content) == size:
            return body.content[start:end]
        if body.status_code != 206 or len(body.content) != end - start:
            raise ImageLoadError(item_id, f"asked bytes {start}..{end} of an object, got "
                                          f"{len(body.content)} (status {body.status_code})")
        return body.content

    async def run() -> list[bytes | BaseException]:
        return await asyncio.gather(*(one(*w) for w in wanted), return_exceptions=True)

    out: list[bytes | BaseException] = _wait(item_id, run())
    for item in out:
        if isinstance(item, BaseException) and not isinstance(item, Exception):
            raise item  # cancellation and the like are not per-range failures
    return out


