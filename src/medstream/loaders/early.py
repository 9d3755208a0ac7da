"""A DICOMweb series response begun while the series metadata is still on its way.

A server builds ``/metadata`` by reading every file of the series (Orthanc: 0.2 s for 300 CT
slices), and the volume cannot place a frame before it has the geometry, so the client sat idle
through it. ``open_volume`` of a series URL now sends the series request at the same time; the
body waits, a bounded number of chunks at most (the socket is not read past them), until the
volume's series retrieval claims it. Unclaimed (a mosaic or 4D series, a failed metadata
request, a cancelled load), it is closed by whoever began it: nothing stays open or buffered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

from ..core.scope import current as current_scope
from .http import stream_chunks
from .httpconfig import HttpConfig

MAX_CHUNKS = 256  # up to 64 MB (256 kB reads) held before the volume claims them

_Item = tuple[str, bytes] | BaseException | None
_begun: dict[tuple[str, str, str, int], EarlyResponse] = {}


class EarlyResponse:
    """The chunks of one series response, in order, for one claimant."""

    def __init__(self, key: tuple[str, str, str, int], url: str, image_id: str, accept: str,
                 config: HttpConfig) -> None:
        self.key = key
        self.claimed = False  # then the claimant reads and closes it, not the one who began it
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(MAX_CHUNKS)
        self._task = asyncio.ensure_future(self._pump(url, image_id, accept, config))

    async def _pump(self, url: str, image_id: str, accept: str, config: HttpConfig) -> None:
        try:  # closed at once when cancelled (the response with it), not when collected
            async with aclosing(stream_chunks(url, image_id, accept=accept,
                                              config=config)) as body:
                async for item in body:
                    await self._queue.put(item)
        except Exception as exc:  # the claimant raises it where a direct request would have
            await self._queue.put(exc)
            return
        await self._queue.put(None)

    async def chunks(self) -> AsyncGenerator[tuple[str, bytes], None]:
        """(content type, chunk) as ``stream_chunks`` yields them, its errors raised alike."""
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def release(self) -> None:
        """The end of the call that began it: closed, unless a load claimed it (whichever
        load did, it reads it to the end and closes it)."""
        if not self.claimed:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the request (if still running) and drop what it holds."""
        if _begun.get(self.key) is self:
            del _begun[self.key]
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()


def _key(url: str, config: HttpConfig) -> tuple[str, str, str, int]:
    """Per URL, credentials and ``ms.Client`` (a response is never handed to a load with other
    ones) and event loop."""
    return url, config.credentials_key(), current_scope().key, id(asyncio.get_running_loop())


def begin(url: str, image_id: str, accept: str, config: HttpConfig) -> EarlyResponse | None:
    """Send the GET now; None if one for the same URL and credentials is already waiting."""
    key = _key(url, config)
    if key in _begun:
        return None
    response = _begun[key] = EarlyResponse(key, url, image_id, accept, config)
    return response


def claim(url: str, config: HttpConfig) -> EarlyResponse | None:
    """The waiting response for ``url`` (the caller now owns it and closes it), or None."""
    response = _begun.pop(_key(url, config), None)
    if response is not None:
        response.claimed = True
    return response


def waiting() -> int:
    """How many begun responses no load has claimed or closed yet (0 between loads)."""
    return len(_begun)
