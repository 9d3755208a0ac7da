"""A hostile HTTP server on 127.0.0.1 for tests: each route is a function that writes whatever
bytes it likes (lying headers, drips, bombs, redirects). Every request's path and headers are
logged. Loops are bounded: a route never runs longer than a few seconds."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


class HostileServer:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                owner.log.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                route = owner.routes.get(self.path.split("?")[0])
                try:
                    if route is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hangs up on a bomb is the point, not an error

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:  # a failed handshake is dropped in accept(), the server goes on
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def seen(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.log if p.split("?")[0] == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200,
         ctype: str = "application/octet-stream", **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        handler.send_header(k.replace("_", "-"), v)
    handler.end_headers()
    handler.wfile.write(body)


class CountingRefuser:
    """A TCP port that accepts and at once closes every connection, counting them (a server
    that is up but broken: each attempt is a connection failure)."""

    def __init__(self) -> None:
        self.count = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._sock.close()


class Blackhole:
    """A port that completes TCP handshakes (listen backlog) and never answers."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()


FRAMES_TYPE = 'multipart/related; type="application/octet-stream"; boundary=B0UND'


def one_instance_series(ds) -> tuple[bytes, bytes]:  # noqa: ANN001
    """(series /metadata JSON, its frame 1 as multipart) for a one-instance DICOMweb series made
    of the uncompressed dataset ``ds``; serve the frame with ``FRAMES_TYPE``."""
    import json

    meta = ds.to_json_dict()
    meta.pop("7FE00010", None)
    frame = (b"--B0UND\r\nContent-Type: application/octet-stream; "
             b"transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n" + ds.PixelData + b"\r\n--B0UND--\r\n")
    return json.dumps([meta]).encode(), frame
