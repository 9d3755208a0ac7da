"""A TCP proxy on 127.0.0.1 that makes a local server look like a remote one: every HTTP request
waits ``latency`` seconds before it is forwarded, and all responses together share ``rate``
bytes per second (a 100 Mbit/s link is 12.5e6). Counts the bytes it delivers."""

from __future__ import annotations

import asyncio
import threading
import time

_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ")
CHUNK = 65536  # 5 ms of a 100 Mbit/s link: pacing overhead stays small


class ThrottleProxy:
    def __init__(self, upstream_port: int, *, rate: float = 12.5e6, latency: float = 0.02) -> None:
        self.upstream_port, self.rate, self.latency = upstream_port, rate, latency
        self.bytes_down = 0
        self.requests = 0
        self._next_free = 0.0  # when the shared link is free again (monotonic seconds)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def reset(self) -> None:
        self.bytes_down = self.requests = 0

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(self._up(client_r, up_w), self._down(up_r, client_w),
                                 return_exceptions=True)
        except asyncio.CancelledError:
            pass  # closing the proxy
        finally:
            for w in (client_w, up_w):
                w.close()

    async def _up(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(CHUNK):
            if data.startswith(_METHODS):  # a new request on this connection
                self.requests += 1
                await asyncio.sleep(self.latency)
            w.write(data)
            await w.drain()
        w.close()

    async def _down(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(CHUNK):
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + len(data) / self.rate
            if self._next_free - now > 0.001:
                await asyncio.sleep(self._next_free - now)
            w.write(data)
            await w.drain()
            self.bytes_down += len(data)
        w.close()

    def close(self) -> None:
        def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_later(0.05, self._loop.stop)  # let the cancelled tasks finish

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
