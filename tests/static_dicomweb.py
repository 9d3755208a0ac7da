"""A static DICOMweb server on 127.0.0.1 that honours HTTP Range on frames (as OHIF's static
DICOMweb and object-store fronted archives do; Orthanc does not), for progressive loading.

Serves a folder of single-frame DICOM files: series ``/metadata`` (pixel data left out), the
whole series (multipart of instances) and ``/frames/1`` (one multipart part holding the stored
codestream). A ``Range: bytes=a-b`` on a frame gets 206 with that slice of the response body;
``ranges=False`` answers 200 with the whole body instead. Every request is logged with its
range and the body bytes sent, and with the time it came in (``received``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pydicom
from pydicom.encaps import generate_fragmented_frames

BOUNDARY = "medstream-static-boundary"
_FRAME = re.compile(r"^/studies/([^/]+)/series/([^/]+)/instances/([^/]+)/frames/(\d+)$")
_SERIES = re.compile(r"^/studies/([^/]+)/series/([^/]+)(/metadata)?$")


class StaticDicomWeb:
    def __init__(self, folder: Path, *, ranges: bool = True, delay: float = 0.0,
                 lie: str | None = None, metadata_delay: float = 0.0) -> None:
        self.ranges = ranges
        self.metadata_delay = metadata_delay  # seconds to build /metadata (reading every file)
        self.received: list[tuple[str, float]] = []  # (path, time.monotonic() it came in)
        self.lie = lie  # "total": a huge total length; "start": ranges from the wrong offset
        self.delay = delay  # seconds before each frame response (a slow archive)
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, bytes sent)
        self._lock = threading.Lock()
        self.instances: dict[str, Path] = {}
        self._frames: dict[str, tuple[str, bytes]] = {}
        self.metadata: dict[tuple[str, str], list[dict]] = {}
        for p in sorted(q for q in folder.iterdir() if not q.name.startswith(".")):
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            self.instances[str(ds.SOPInstanceUID)] = p
            meta = ds.to_json_dict(bulk_data_threshold=1 << 20, bulk_data_element_handler=None)
            meta["00020010"] = {"vr": "UI", "Value": [str(ds.file_meta.TransferSyntaxUID)]}
            key = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
            self.metadata.setdefault(key, []).append(meta)
        self.study_uid, self.series_uid = next(iter(self.metadata))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per response

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server._get(self)

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def series_url(self) -> str:
        return f"{self.url}/studies/{self.study_uid}/series/{self.series_uid}"

    def frame(self, sop_uid: str) -> tuple[str, bytes]:
        """(transfer syntax, stored frame bytes), split once as a static server stores them."""
        with self._lock:
            found = self._frames.get(sop_uid)
        if found is None:
            ds = pydicom.dcmread(self.instances[sop_uid])
            ts = ds.file_meta.TransferSyntaxUID
            data = (b"".join(next(generate_fragmented_frames(ds.PixelData))) if
                    ts.is_encapsulated else bytes(ds.PixelData))
            found = (str(ts), data)
            with self._lock:
                self._frames[sop_uid] = found
        return found

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        rng = h.headers.get("Range")
        with self._lock:
            self.received.append((path, time.monotonic()))
        m = _FRAME.match(path)
        if m and m.group(3) in self.instances and m.group(4) == "1":
            time.sleep(self.delay)
            ts, data = self.frame(m.group(3))
            body = (f"--{BOUNDARY}\r\nContent-Type: application/octet-stream; "
                    f"transfer-syntax={ts}\r\n\r\n").encode() + data + \
                f"\r\n--{BOUNDARY}--\r\n".encode()
            ctype = (f'multipart/related; type="application/octet-stream"; '
                     f"boundary={BOUNDARY}")
            self._send(h, path, body, ctype, rng if self.ranges else None)
            return
        m = _SERIES.match(path)
        if m and (m.group(1), m.group(2)) in self.metadata:
            if m.group(3):
                time.sleep(self.metadata_delay)
                body = json.dumps(self.metadata[(m.group(1), m.group(2))]).encode()
                self._send(h, path, body, "application/dicom+json", None)
                return
            parts = [f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                     + p.read_bytes() + b"\r\n" for p in self.instances.values()]
            body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
            self._send(h, path, body,
                       f'multipart/related; type="application/dicom"; boundary={BOUNDARY}', None)
            return
        self._send(h, path, b"not found", "text/plain", None, status=404)

    def _send(self, h: BaseHTTPRequestHandler, path: str, body: bytes, ctype: str,
              rng: str | None, status: int = 200) -> None:
        headers = {"Content-Type": ctype}
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m:
            first = int(m.group(1))
            last = min(int(m.group(2)) if m.group(2) else len(body) - 1, len(body) - 1)
            total = 10**12 if self.lie == "total" else len(body)
            shown = first + 7 if self.lie == "start" and first else first
            headers["Content-Range"] = ("bytes abc-1/99" if self.lie == "garbage"
                                        else f"bytes {shown}-{last}/{total}")
            body, status = body[first : last + 1], 206
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
        with self._lock:
            self.log.append((path, rng, len(body)))

    def bytes_sent(self) -> int:
        with self._lock:
            return sum(n for _, _, n in self.log)

    def clear(self) -> None:
        with self._lock:
            self.log.clear()
            self.received.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
