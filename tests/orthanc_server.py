"""Start a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on 127.0.0.1 for the tests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def available() -> bool:
    return os.path.exists(ORTHANC) and os.path.exists(PLUGIN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="medstream-orthanc-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Orthanc":
        storage = self.dir / "db"
        storage.mkdir(exist_ok=True)  # kept across kill() / start()
        config = {
            "Name": "medstream-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "HttpBindAddress": "127.0.0.1",
            "Plugins": [PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True,
                         "WadoRoot": "/wado"},
        }
        cfg = self.dir / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = open(self.dir / "orthanc.log", "wb")
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.dir / 'orthanc.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/system", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not start within 30 s")

    def upload(self, path: str | os.PathLike[str]) -> dict:
        data = Path(path).read_bytes()
        r = httpx.post(self.url + "/instances", content=data, timeout=60)
        r.raise_for_status()
        return r.json()

    def instance_tags(self, orthanc_id: str) -> dict:
        return httpx.get(f"{self.url}/instances/{orthanc_id}/simplified-tags", timeout=10).json()

    def uids(self, orthanc_id: str) -> tuple[str, str, str]:
        t = self.instance_tags(orthanc_id)
        return t["StudyInstanceUID"], t["SeriesInstanceUID"], t["SOPInstanceUID"]

    def kill(self) -> None:
        """Die like a crashed server (SIGKILL); storage stays, so start() brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
