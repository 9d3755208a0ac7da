"""A fault-injecting HTTP reverse proxy on 127.0.0.1 in front of a real server (Orthanc).

Rules pick requests by a substring of the path and apply a fault a given number of times:
an error status, a connection reset in the middle of the body, a stalled response, or a body
cut short. Everything else is forwarded unchanged. Every request is logged with what was done.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass


@dataclass
class Rule:
    match: str  # substring of the request path ("" matches all); a trailing "$" anchors the end
    action: str  # "status:503", "reset", "stall", "truncate", "refuse", "delay:0.02" (seconds)
    times: int = 1_000_000  # how many matching requests get the fault


def _matches(pattern: str, path: str) -> bool:
    return path.endswith(pattern[:-1]) if pattern.endswith("$") else pattern in path


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str]] = []  # (path, action)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def add(self, match: str, action: str, times: int = 1_000_000) -> None:
        with self._lock:
            self.rules.append(Rule(match, action, times))

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.log.clear()

    def count(self, match: str = "", action: str | None = None) -> int:
        with self._lock:
            return sum(1 for p, a in self.log if _matches(match, p) and (action is None or a == action))

    def _pick(self, path: str) -> str:
        with self._lock:
            for rule in self.rules:
                if _matches(rule.match, path) and rule.times > 0:
                    rule.times -= 1
                    self.log.append((path, rule.action))
                    return rule.action
            self.log.append((path, "pass"))
            return "pass"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            path = request_line.split(" ")[1] if " " in request_line else "/"
            action = self._pick(path)
            if action == "refuse":
                writer.transport.abort()
                return
            if action.startswith("status:"):
                code = int(action.split(":")[1])
                writer.write(f"HTTP/1.1 {code} Injected\r\nContent-Length: 0\r\nRetry-After: 0\r\n"
                             "Connection: close\r\n\r\n".encode())
                await writer.drain()
                return
            if action == "stall":
                await asyncio.sleep(3600)
                return
            if action.startswith("delay:"):  # a round trip to a far server, then forwarded
                await asyncio.sleep(float(action.split(":")[1]))
            lines = [ln for ln in head.decode("latin-1").split("\r\n")
                     if ln and not ln.lower().startswith(("connection:", "keep-alive:"))]
            forwarded = "\r\n".join(lines + ["Connection: close", "", ""]).encode("latin-1")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(forwarded)
            await up_writer.drain()
            response = await up_reader.read()
            up_writer.close()
            if action == "reset":
                writer.write(response[: len(response) // 2])
                await writer.drain()
                writer.transport.abort()
                return
            if action == "truncate":
                writer.write(response[: len(response) - max(1, len(response) // 3)])
            else:
                writer.write(response)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    def stop(self) -> None:
        async def cancel_handlers() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(cancel_handlers(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
