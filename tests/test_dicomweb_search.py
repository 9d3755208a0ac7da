"""QIDO-RS search against a real Orthanc (several patients, studies and series), a local server
that misbehaves (ignores paging, answers 204), and the `find` command end to end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid

import medstream as ms
from medstream.dicomweb import SeriesResult, StudyResult, is_root_url
from series import expected_stack, write_series

CLI = [sys.executable, "-m", "medstream.cli"]


@pytest.fixture(scope="module")
def archive(orthanc, tmp_path_factory):
    """Three patients of this module (the shared Orthanc holds other tests' data too):
    A has a CT study (two CT series) and an MR study, B one CT study, C one CT study."""
    tag = "QIDO" + uuid.uuid4().hex[:8].upper()
    tmp = tmp_path_factory.mktemp("qido")
    plan = [  # (patient, study key, study date, modality, slices, description)
        ("A", "a1", "20240105", "CT", 4, "CT AX"),
        ("A", "a1", "20240105", "CT", 3, "CT COR"),
        ("A", "a2", "20240610", "MR", 2, "T1"),
        ("B", "b1", "20231201", "CT", 3, "CT AX"),
        ("C", "c1", "20250302", "CT", 2, "CT AX"),
    ]
    studies = {key: generate_uid() for _, key, *_ in plan}
    out: dict[str, object] = {"tag": tag, "studies": studies, "series": {}, "paths": {}}
    paths: list[Path] = []
    for i, (patient, key, date, modality, n, desc) in enumerate(plan):
        series_uid = generate_uid()
        files = write_series(tmp / str(i), n, size=16, series_uid=series_uid,
                             study_uid=studies[key],
                             extra={"PatientID": f"{tag}-{patient}", "StudyDate": date,
                                    "Modality": modality, "SeriesDescription": desc})
        out["series"][series_uid] = (key, modality, n)  # type: ignore[index]
        out["paths"][series_uid] = files  # type: ignore[index]
        paths += files
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(orthanc.upload, paths))
    return out


def test_studies_by_patient_with_their_fields(orthanc, archive):
    tag, studies = archive["tag"], archive["studies"]
    found = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=f"{tag}-A")
    assert {s.study_uid for s in found} == {studies["a1"], studies["a2"]}
    a1 = next(s for s in found if s.study_uid == studies["a1"])
    assert isinstance(a1, StudyResult)
    assert (a1.patient_id, a1.study_date, a1.modalities) == (f"{tag}-A", "20240105", ("CT",))
    assert (a1.n_series, a1.n_instances) == (2, 7)
    assert a1.patient_name == "MEDSTREAM^PHANTOM" and a1.description
    by_name = ms.dicomweb.search_studies(orthanc.dicomweb, PatientName="MEDSTREAM^PH*",
                                         PatientID=f"{tag}-?")  # wildcards sent as they are
    assert len(by_name) == 4
    assert a1.url == f"{orthanc.dicomweb}/studies/{studies['a1']}"
    with pytest.raises(AttributeError):  # frozen
        a1.study_uid = "x"  # type: ignore[misc]


def test_date_range_and_modality_filters(orthanc, archive):
    tag, studies = archive["tag"], archive["studies"]
    pid = f"{tag}-*"
    in_2024 = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=pid,
                                         StudyDate="20240101-20241231")
    assert {s.study_uid for s in in_2024} == {studies["a1"], studies["a2"]}
    as_dates = ms.dicomweb.search_studies(
        orthanc.dicomweb, PatientID=pid,
        StudyDate=(datetime.date(2023, 1, 1), datetime.date(2024, 1, 31)))
    assert {s.study_uid for s in as_dates} == {studies["a1"], studies["b1"]}
    ct = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=pid, ModalitiesInStudy="CT")
    assert {s.study_uid for s in ct} == {studies["a1"], studies["b1"], studies["c1"]}


def test_paging_follows_limit_and_offset(orthanc, archive):
    tag, studies = archive["tag"], archive["studies"]
    pid = f"{tag}-*"
    # the server does honour limit (so three results from pages of one means three pages)
    raw = httpx.get(f"{orthanc.dicomweb}/studies?PatientID={pid}&limit=1")  # "*" as is
    assert len(raw.json()) == 1
    paged = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=pid, page_size=1)
    assert len(paged) == 4 and {s.study_uid for s in paged} == set(studies.values())
    assert len(ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=pid, page_size=1,
                                          limit=3)) == 3
    rest = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=pid, page_size=2, offset=1)
    assert len(rest) == 3
    capped = ms.dicomweb.search_studies(orthanc.dicomweb, PatientID=pid, page_size=1,
                                        max_results=2)
    assert len(capped) == 2


def test_series_and_instances_then_open_volume(orthanc, archive):
    tag, studies = archive["tag"], archive["studies"]
    series = ms.dicomweb.search_series(orthanc.dicomweb, studies["a1"])
    assert len(series) == 2 and all(isinstance(s, SeriesResult) for s in series)
    assert {s.description for s in series} == {"CT AX", "CT COR"}
    assert {s.n_instances for s in series} == {4, 3}
    assert all(s.study_uid == studies["a1"] and s.modality == "CT" for s in series)
    # across the server, by patient and modality (study attributes at series level)
    mr = ms.dicomweb.search_series(orthanc.dicomweb, PatientID=f"{tag}-*", Modality="MR")
    assert [(s.study_uid, s.description, s.patient_id) for s in mr] == [
        (studies["a2"], "T1", f"{tag}-A")]
    ax = next(s for s in series if s.description == "CT AX")
    instances = ms.dicomweb.search_instances(orthanc.dicomweb, ax.study_uid, ax.series_uid)
    assert len(instances) == 4 and {i.rows for i in instances} == {16}
    assert len({i.sop_instance_uid for i in instances}) == 4
    image = ms.load_image(instances[0].image_ids[0]).result(30)
    assert image.shape == (16, 16)
    volume = ax.open_volume()
    assert volume.shape == (4, 16, 16)
    assert np.array_equal(volume.scalar_data, expected_stack(archive["paths"][ax.series_uid]))


def test_async_searches_run_together(orthanc, archive):
    tag = archive["tag"]

    async def both():
        return await asyncio.gather(
            ms.dicomweb.search_studies_async(orthanc.dicomweb, PatientID=f"{tag}-B"),
            ms.dicomweb.search_series_async(orthanc.dicomweb, PatientID=f"{tag}-C"))

    studies, series = ms.runtime.run_sync(both())
    assert [s.study_uid for s in studies] == [archive["studies"]["b1"]]
    assert [s.study_uid for s in series] == [archive["studies"]["c1"]]


def test_a_misspelt_keyword_is_an_error_not_a_match_all():
    with pytest.raises(ms.OptionError, match="PatientID"):
        ms.dicomweb.search_studies("http://127.0.0.1:9/dicom-web", PatientId="P1")
    with pytest.raises(ms.OptionError, match="token"):
        ms.dicomweb.search_studies("http://127.0.0.1:9/dicom-web", toekn="x")


def test_root_url_heuristic():
    assert is_root_url("http://h:8042/dicom-web")
    assert is_root_url("https://h/v1/projects/p/dicomWeb?access_token=x")
    assert not is_root_url("http://h/dicom-web/studies/1")
    assert not is_root_url("http://h/img.png")
    assert not is_root_url("http://h/wado?requestType=WADO&studyUID=1")


class _Stubborn(http.server.BaseHTTPRequestHandler):
    """Ignores limit/offset (always the same two studies); 204 for /series; records headers."""

    seen: list[tuple[str, dict[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append((self.path, dict(self.headers)))
        if "/series" in self.path:
            self.send_response(204)
            self.end_headers()
            return
        body = json.dumps([{"0020000D": {"vr": "UI", "Value": [f"1.2.{k}"]}}
                           for k in (1, 2)]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler]):
    """A local server for ``handler``; yields its http://127.0.0.1:PORT."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_server_that_ignores_paging_or_answers_204():
    with _serve(_Stubborn) as base:
        root = f"{base}/dicom-web?key=k"
        found = ms.dicomweb.search_studies(root, page_size=1, token="s3cret", Modality=None)
        assert [s.study_uid for s in found] == ["1.2.1", "1.2.2"]  # no endless loop
        path, headers = _Stubborn.seen[0]
        assert path.startswith("/dicom-web/studies?key=k&") and "limit=1" in path
        assert headers.get("Authorization") == "Bearer s3cret"
        assert found[0].url == root.replace("?", "/studies/1.2.1?")
        assert ms.dicomweb.search_series(root, "1.2.1") == []


# -- command line ----------------------------------------------------------------------------------
def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def test_find_into_volume_end_to_end(orthanc, archive, tmp_path):
    tag = archive["tag"]
    proc = run("find", orthanc.dicomweb, "--patient", f"{tag}-*", "--modality", "CT",
               "--study-date", "20240101-20241231", "--json")
    assert proc.returncode == 0, proc.stderr
    studies = json.loads(proc.stdout)
    assert [s["study_uid"] for s in studies] == [archive["studies"]["a1"]]
    assert studies[0]["modalities"] == ["CT"] and studies[0]["n_series"] == 2

    proc = run("find", orthanc.dicomweb, "--study", studies[0]["study_uid"],
               "--match", "SeriesDescription=*COR", "--json")
    assert proc.returncode == 0, proc.stderr
    (series,) = json.loads(proc.stdout)
    assert series["n_instances"] == 3
    out = tmp_path / "cor.nii.gz"
    proc = run("volume", series["url"], "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    import nibabel as nib

    assert nib.load(str(out)).shape == (16, 16, 3)

    table = run("find", orthanc.dicomweb, "--patient", f"{tag}-B", "--level", "series")
    assert table.returncode == 0, table.stderr
    assert "CT AX" in table.stdout and f"[0] {orthanc.dicomweb}/studies/" in table.stdout
    none = run("find", orthanc.dicomweb, "--patient", f"{tag}-nobody")
    assert none.returncode == 0 and "no studies found" in none.stdout


def test_info_on_a_root_lists_studies_and_volume_says_what_it_is(orthanc, archive, tmp_path):
    proc = run("info", orthanc.dicomweb, "--json")
    assert proc.returncode == 0, proc.stderr
    uids = {s["study_uid"] for s in json.loads(proc.stdout)}
    assert set(archive["studies"].values()) <= uids
    bad = run("volume", orthanc.dicomweb, "-o", str(tmp_path / "x.nii.gz"))
    assert bad.returncode == 1 and "medstream find" in bad.stderr
    flag = run("find", orthanc.dicomweb, "--match", "nonsense")
    assert flag.returncode == 2 and "KEYWORD=VALUE" in flag.stderr


class _Picture(http.server.BaseHTTPRequestHandler):
    """A PNG at every path (an extensionless image URL: not a DICOMweb root after all)."""

    def do_GET(self) -> None:  # noqa: N802
        buf = io.BytesIO()
        Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buf, "PNG")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(buf.getvalue())))
        self.end_headers()
        self.wfile.write(buf.getvalue())

    def log_message(self, *args: object) -> None:
        pass


def test_info_on_an_extensionless_image_url_still_shows_the_image():
    with _serve(_Picture) as base:
        url = f"{base}/picture"
        with pytest.raises(ValueError, match="not DICOM JSON"):
            ms.dicomweb.search_studies(url)
        proc = run("info", url, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["image_id"] == url
