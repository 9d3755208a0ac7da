"""API hygiene: python -m medstream, CLI network flags and folder reports, clean exit under
-X dev, split series refused by UID, notebook display, and mypy clean on src/."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import medstream as ms
from needs import require
from series import write_series

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict | None = None, timeout: float = 120,
        python: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python, "-m", "medstream", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env or dict(os.environ))


def test_python_dash_m_medstream():
    proc = run("--help")
    assert proc.returncode == 0 and "Usage: medstream" in proc.stdout
    assert "MEDSTREAM_TOKEN" in proc.stdout and "--insecure" in proc.stdout
    vol_help = run("volume", "--help").stdout
    assert "0-based" in " ".join(vol_help.split())


def test_info_folder_lists_skipped_files_and_says_when_nothing_was_found(tmp_path):
    write_series(tmp_path / "f", 3, size=16)
    (tmp_path / "f" / "notes.txt").write_text("hello")
    proc = run("info", str(tmp_path / "f"))
    assert proc.returncode == 0, proc.stderr
    assert "notes.txt" in proc.stdout and "not a DICOM" in proc.stdout
    js = json.loads(run("info", str(tmp_path / "f"), "--json").stdout)
    assert any(p.endswith("notes.txt") for p in js["skipped"]) and len(js["series"]) == 1
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    proc = run("info", str(tmp_path / "empty"))
    assert proc.returncode == 0 and "no DICOM image series found" in proc.stdout


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(dict(self.headers))
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_token_from_environment_and_header_flag_reach_the_server(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/dicom-web/studies/1/series/2"
        env = dict(os.environ, MEDSTREAM_TOKEN="s3cret")
        proc = run("--header", "X-Api-Key: k1", "info", url, env=env, python=("-X", "dev"))
        assert proc.returncode == 1 and "404" in proc.stderr
        assert "s3cret" not in proc.stderr + proc.stdout
        sent = _Recorder.seen[-1]
        assert sent.get("Authorization") == "Bearer s3cret" and sent.get("X-Api-Key") == "k1"
        # an error exit under -X dev: one line, no unclosed loop, no traceback
        assert "unclosed" not in proc.stderr and "Traceback" not in proc.stderr
    finally:
        srv.shutdown()
        srv.server_close()


def test_clean_exit_under_dev_mode(tmp_path):
    paths = write_series(tmp_path / "s", 2, size=16)
    code = ("import medstream as ms, sys; im = ms.load_image(sys.argv[1]).result(30); "
            "v = ms.open_volume(sys.argv[2]); print(im.shape, v.shape)")
    proc = subprocess.run([sys.executable, "-X", "dev", "-c", code, str(paths[0]),
                           str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" not in proc.stderr and "unclosed" not in proc.stderr, proc.stderr


def test_a_uid_split_into_stacks_is_refused_with_its_keys(tmp_path):
    from pydicom.uid import generate_uid

    uid = generate_uid()
    write_series(tmp_path / "m" / "a", 4, size=16, series_uid=uid)
    write_series(tmp_path / "m" / "b", 4, size=24, series_uid=uid)  # another size: split
    proc = run("info", str(tmp_path / "m"), "--json")
    stacks = {s["key"]: s.get("stack") for s in json.loads(proc.stdout)["series"]}
    assert stacks == {f"{uid}#1": "size=16x16", f"{uid}#2": "size=24x24"}
    with pytest.raises(ms.VolumeError, match=rf"split into 2 stacks.*{uid}#1.*{uid}#2"):
        ms.open_volume(tmp_path / "m", series=uid, load=False)
    assert ms.open_volume(tmp_path / "m", series=f"{uid}#2", load=False).shape == (4, 24, 24)


def test_notebook_html_for_volumes_and_images(tmp_path):
    paths = write_series(tmp_path / "s", 4, size=16)
    vol = ms.open_volume(tmp_path / "s", load=False)
    page = vol._repr_html_()
    assert "(4, 16, 16)" in page and "not loaded" in page and "<img" not in page
    vol.load().result(30)
    page = vol._repr_html_()
    assert "loaded, 4/4 frames" in page and "data:image/png;base64," in page
    assert "LPS" in page or "orientation" in page
    image = ms.load_image(str(paths[0])).result(30)
    assert "data:image/png;base64," in image._repr_html_()


def test_mypy_is_clean_on_src():
    require(shutil.which("mypy", path=os.path.dirname(sys.executable)) is not None,
            "mypy not installed (it is in the test extra)")
    proc = subprocess.run([sys.executable, "-m", "mypy", "src/medstream"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (ROOT / "src" / "medstream" / "py.typed").exists()


def test_docs_site_builds_strict(tmp_path):
    """The API reference and guides build without a warning (broken links, bad references)."""
    try:
        import mkdocs  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError:
        require(False, "mkdocs-material / mkdocstrings not installed (they are in the test extra)")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "volume_from_array" in api and "open_volume" in api
