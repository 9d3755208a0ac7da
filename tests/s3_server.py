"""Start a real S3-compatible server (moto's, from PyPI ``moto[server]``) on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orthanc_server import free_port

KEY, SECRET = "medstream-test", "medstream-test-secret"


def available() -> bool:
    return importlib.util.find_spec("moto") is not None and importlib.util.find_spec("s3fs") is not None


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, deadline: float = 30.0) -> "S3Server":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not start in time")

    @property
    def options(self) -> dict[str, Any]:
        """What ``ms.configure_storage`` needs for this server."""
        return {"key": KEY, "secret": SECRET, "client_kwargs": {"endpoint_url": self.endpoint}}

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.options)

    def upload(self, local: Path | str, url: str) -> None:
        """A file, or a folder's files (recursively), to ``s3://bucket/prefix``."""
        fs = self.filesystem()
        bucket = url[len("s3://"):].split("/", 1)[0]
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        local = Path(local)
        if local.is_dir():
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                fs.put_file(str(path), f"{url.rstrip('/')}/{path.relative_to(local).as_posix()}")
        else:
            fs.put_file(str(local), url)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
