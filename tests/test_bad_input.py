"""Bad files made from real ones: every load ends, in bounded time, with an Image or a typed
medstream error that names the image ID; never another exception, a hang or a huge allocation."""

from __future__ import annotations

import random
import time
import tracemalloc
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.encaps import encapsulate, generate_fragments

import medstream as ms
from corpus import find

SOURCES = {
    "native": "CT_small.dcm",
    "j2k": "693_J2KR.dcm",
    "jpegls": "emri_small_jpeg_ls_lossless.dcm",
    "rle": "MR_small_RLE.dcm",
    "jpeg": "JPEG-LL.dcm",
    "bigendian": "MR_small_bigendian.dcm",
}
LIMIT_S = 15.0
RESULTS: dict[str, str] = {}  # case -> outcome (pytest -s prints a summary; docs/reliability.md)


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    from collections import Counter

    print(f"\nbad-input cases: {len(RESULTS)}; outcomes: {dict(Counter(RESULTS.values()))}")


def outcome(path: Path, case: str) -> str:
    """Load ``path``; return "image" or the error class. Anything else fails the test."""
    image_id = ms.dicomfile_image_id(path)
    t0 = time.monotonic()
    try:
        image = ms.load_image(image_id).result(LIMIT_S)
    except ms.MedstreamError as exc:
        assert getattr(exc, "image_id", image_id) == image_id and image_id in str(exc), case
        result = type(exc).__name__
    else:
        assert image.get_pixel_data().size > 0, case
        result = "image"
    assert time.monotonic() - t0 < LIMIT_S, case
    RESULTS[case] = result
    return result


def _write(ds: pydicom.Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.parametrize("name", list(SOURCES))
def test_truncated_at_many_offsets(tmp_path, name):
    data = find(SOURCES[name]).read_bytes()
    offsets = sorted({0, 1, 10, 127, 128, 131, 132, 200, len(data) - 1}
                     | {len(data) * k // 17 for k in range(1, 17)})
    errors = 0
    for off in offsets:
        path = tmp_path / f"{name}-{off}.dcm"
        path.write_bytes(data[:off])
        errors += outcome(path, f"{name} truncated at {off}/{len(data)}") != "image"
    assert errors >= len(offsets) - 2  # only a cut in trailing padding may still decode


def test_random_bytes_and_not_dicom(tmp_path):
    rng = random.Random(7)
    for n in (0, 1, 132, 4096, 100_000):
        path = tmp_path / f"random-{n}.dcm"
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(n)))
        assert outcome(path, f"{n} random bytes") != "image"
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\0" * 128 + b"DICM" + bytes(200))
    assert outcome(fake, "preamble then zeros") != "image"
    text = tmp_path / "notes.dcm"
    text.write_text("this is not an image\n" * 100)
    assert outcome(text, "text file") == "DicomParseError"


def test_wrong_transfer_syntax_declared(tmp_path):
    data = find(SOURCES["native"]).read_bytes()  # explicit VR LE; claim RLE, same UID length
    assert data.count(b"1.2.840.10008.1.2.1\0") == 1
    (tmp_path / "a.dcm").write_bytes(data.replace(b"1.2.840.10008.1.2.1\0", b"1.2.840.10008.1.2.5\0"))
    assert outcome(tmp_path / "a.dcm", "raw pixels declared RLE") != "image"
    ds = pydicom.dcmread(find(SOURCES["j2k"]))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.80"  # J2K declared JPEG-LS
    assert outcome(_write(ds, tmp_path / "b.dcm"), "J2K declared JPEG-LS") == "DecodeError"
    ds = pydicom.dcmread(find(SOURCES["native"]))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6"
    err = outcome(_write(ds, tmp_path / "c.dcm"), "unknown syntax UID")
    assert err == "UnsupportedTransferSyntaxError"


def test_pixel_data_too_short_or_long(tmp_path):
    ds = pydicom.dcmread(find(SOURCES["native"]))
    raw = ds.PixelData
    ds.PixelData = raw[: len(raw) // 3]
    assert outcome(_write(ds, tmp_path / "short.dcm"), "pixel data too short") in (
        "DecodeError", "MissingPixelDataError")
    ds.PixelData = raw + bytes(1000)
    assert outcome(_write(ds, tmp_path / "long.dcm"), "pixel data too long") in (
        "image", "MissingPixelDataError")


@pytest.mark.parametrize("name", ["j2k", "jpegls", "rle", "jpeg"])
def test_corrupt_codestreams(tmp_path, name):
    ds = pydicom.dcmread(find(SOURCES[name]))
    n = int(ds.get("NumberOfFrames") or 1)
    frags = list(generate_fragments(ds.PixelData))
    rng = random.Random(name)
    results = []
    for trial, how in enumerate(("zero-middle", "flip-header", "cut-half", "garbage")):
        bad = []
        for f in frags:
            b = bytearray(f)
            if how == "zero-middle":
                b[len(b) // 3 : len(b) // 3 + 64] = bytes(64)
            elif how == "flip-header":
                for i in range(2, min(40, len(b))):
                    b[i] ^= rng.getrandbits(8)
            elif how == "cut-half":
                b = b[: len(b) // 2]
            else:
                b = bytearray(rng.getrandbits(8) for _ in range(len(b)))
            bad.append(bytes(b) + (b"\0" if len(b) % 2 else b""))
        ds.PixelData = encapsulate(bad) if n == len(bad) else encapsulate([b"".join(bad)])
        results.append(outcome(_write(ds, tmp_path / f"{name}-{trial}.dcm"), f"{name} {how}"))
    assert "DecodeError" in results  # garbage is always caught; other damage may still decode


def test_missing_tags_zero_rows_and_huge_sizes(tmp_path):
    base = pydicom.dcmread(find(SOURCES["native"]))
    for keyword in ("Rows", "Columns", "BitsAllocated", "PixelData"):
        ds = pydicom.dcmread(find(SOURCES["native"]))
        del ds[keyword]
        assert outcome(_write(ds, tmp_path / f"no-{keyword}.dcm"), f"no {keyword}") == \
            "MissingPixelDataError"
    ds = base.copy()
    ds.Rows = 0
    assert outcome(_write(ds, tmp_path / "zero.dcm"), "zero rows") == "MissingPixelDataError"
    tracemalloc.start()
    for rows, frames, name in ((65535, 1, "huge rows"), (128, 2_000_000, "huge frames")):
        ds = pydicom.dcmread(find(SOURCES["native"]))
        ds.Rows, ds.Columns, ds.NumberOfFrames = rows, 65535, frames
        path = _write(ds, tmp_path / f"{name}.dcm")
        assert outcome(path, name) in ("DecodeError", "MissingPixelDataError", "ResourceLimitError")
        ds = pydicom.dcmread(find(SOURCES["j2k"]))
        ds.Rows, ds.Columns = rows, 65535
        assert outcome(_write(ds, tmp_path / f"j2k-{name}.dcm"), f"J2K {name}") != "image"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 1024**2, f"{peak / 1e6:.0f} MB allocated for a tiny file"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzz_mutated_dicom(tmp_path, data):
    """Random byte edits of real files: an Image or a typed error, always, in bounded time."""
    name = data.draw(st.sampled_from(sorted(SOURCES)))
    raw = bytearray(find(SOURCES[name]).read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        kind = data.draw(st.sampled_from(["set", "delete", "insert"]))
        if kind == "set":
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == "delete":
            del raw[pos : pos + data.draw(st.integers(1, 64))]
        else:
            raw[pos:pos] = bytes(data.draw(st.binary(min_size=1, max_size=16)))
    path = tmp_path / f"fuzz-{name}.dcm"
    path.write_bytes(bytes(raw))
    outcome(path, f"fuzz {name}")


def test_scan_lists_broken_files_and_volume_lists_failed_frames(tmp_path):
    from series import write_series

    paths = write_series(tmp_path / "s", 6, size=64)
    (tmp_path / "s" / "junk.dcm").write_bytes(b"garbage" * 50)
    scan = ms.scan_folder(tmp_path / "s")
    assert len(scan) == 1 and scan.series[0].n_images == 6
    assert "not a DICOM" in scan.skipped[str(tmp_path / "s" / "junk.dcm")]
    vol = ms.create_and_cache_volume("broken", image_ids=scan.series[0].image_ids).result(30)
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[:-3000])  # pixel data cut after the scan
    with pytest.raises(ms.VolumeLoadError) as err:
        vol.load().result(30)
    assert list(err.value.failed) == [ms.dicomfile_image_id(paths[2])]
    assert vol.status.frames_loaded == 5
