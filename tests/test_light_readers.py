"""The light readers give exactly what pydicom gives: the compact header reader (or it steps
aside), and the DICOM JSON view used for DICOMweb series metadata.

Every real file it accepts (pydicom's and pydicom-data's test files, qa-dev vendor files) must
yield the same metadata modules, frame description and pixel data offset as pydicom; every
layout it does not handle (enhanced, mosaic, palette, big endian, deflated, truncated) must
fall back to pydicom (None)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from corpus import QA_MIN_FILES, local_files, qa, qa_files
from needs import require
from medstream.dicom.fastheader import read_fast_header
from medstream.dicom.header import _DEFER
from medstream.dicom.modules import build_modules
from medstream.dicom.part10 import frame_info

FILES = local_files() + qa_files()


def _pydicom(path: Path):
    try:
        return pydicom.dcmread(path, defer_size=_DEFER)
    except Exception:
        return None


@pytest.mark.parametrize("path", FILES, ids=[p.name[-40:] for p in FILES])
def test_same_modules_as_pydicom_or_fallback(path):
    fast = read_fast_header(path)
    ds = _pydicom(path)
    if fast is None:
        return  # pydicom reads it (or reports why it cannot)
    assert ds is not None, "the fast reader accepted a file pydicom cannot read"
    ts = str(ds.file_meta.TransferSyntaxUID)
    assert fast.file_meta.TransferSyntaxUID == ts
    n = int(ds.get("NumberOfFrames") or 1)
    for frame in {0, n - 1}:
        assert build_modules(fast, frame, ts) == build_modules(ds, frame, ts)
    assert frame_info("x", fast, ts) == frame_info("x", ds, ts)
    kw = next(k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds)
    raw = ds.get_item(kw, keep_deferred=True)
    if getattr(raw, "value_tell", None) is not None:
        assert fast.get_item(kw).value_tell == raw.value_tell


def test_the_corpus_is_all_here_and_mostly_taken_by_the_fast_reader():
    """The cases above are built by listing folders: a missing or partial folder would shrink
    the suite silently, and a fast reader that declined everything would pass it vacuously."""
    assert len(qa_files()) >= QA_MIN_FILES, "tests/data/qa-dev is incomplete"
    local = local_files()
    require(len(local) >= 100, f"pydicom's test files: {len(local)} found, 100+ expected "
                               "(pip install -e '.[test]' brings pydicom and pydicom-data)")
    accepted = sum(read_fast_header(p) is not None for p in local)
    assert accepted >= 85, f"the fast reader took only {accepted} of {len(local)} plain files"


def test_layouts_it_leaves_to_pydicom():
    enhanced = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    mosaic = next(qa("siemens-mosaic", "ax", "axasc35").glob("MR.*"))
    for path in (enhanced, mosaic):
        assert read_fast_header(path) is None, path.name
    big = Path(pydicom.data.get_testdata_file("MR_small_bigendian.dcm"))
    deflated = Path(pydicom.data.get_testdata_file("image_dfl.dcm"))
    palette = Path(pydicom.data.get_testdata_file("OBXXXX1A.dcm"))
    for path in (big, deflated, palette):
        assert read_fast_header(path) is None, path.name


def test_truncated_or_garbled_headers_fall_back(tmp_path):
    src = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
    assert read_fast_header(pydicom.data.get_testdata_file("CT_small.dcm")) is not None
    for n, data in enumerate([src[:600], src[:132], src[:128] + b"DICX" + src[132:],
                              src[:300] + b"\xff" * 40 + src[340:]]):
        path = tmp_path / f"bad{n}.dcm"
        path.write_bytes(data)
        assert read_fast_header(path) is None


@pytest.mark.parametrize("path", FILES, ids=[p.name[-40:] for p in FILES])
def test_json_view_gives_the_modules_from_json_gives(path):
    """DICOM JSON made by pydicom from each real file (bulk data as URIs, as servers send it)."""
    from pydicom.dataset import Dataset

    from medstream.dicom.jsonmeta import JsonDataset

    ds = _pydicom(path)
    assert ds is not None, "every file of the corpus is DICOM pydicom reads"
    item = ds.to_json_dict(bulk_data_threshold=1024,
                           bulk_data_element_handler=lambda _e: "http://127.0.0.1/bulk")
    full = Dataset.from_json(item, bulk_data_uri_handler=lambda *_a: None)
    light = JsonDataset(item)
    n = int(full.get("NumberOfFrames") or 1)
    for frame in {0, n - 1}:
        assert build_modules(light, frame) == build_modules(full, frame)
