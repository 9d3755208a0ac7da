"""Crafted codestreams that once took the process down (a segfault in the RLE decoder, heap
corruption after a zero-height lossless JPEG) or kept a decoder busy for seconds (a JPEG-LS stream
cut short), and headers whose numbers are not finite. Each runs in a child interpreter under a
memory limit, then loads a clean file several times in the same process: a crash, even a late one
from a corrupted heap, fails the test instead of the suite."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_fragmented_frames

import medstream as ms
from attack import run_attack


def _frames(ds: pydicom.Dataset) -> list[bytes]:
    n = int(ds.get("NumberOfFrames") or 1)
    return [b"".join(f) for f in generate_fragmented_frames(ds.PixelData, number_of_frames=n)]


def _with_frame(name: str, edit, out: Path) -> Path:  # noqa: ANN001 - bytes -> bytes
    ds = pydicom.dcmread(get_testdata_file(name))
    frames = _frames(ds)
    frames[0] = edit(bytearray(frames[0]))
    ds.PixelData = encapsulate(frames)
    ds.save_as(out)
    return out


def _rle_offset_past_end(f: bytearray) -> bytes:
    f[8:12] = b"\xff\xff\xff\xff"  # second segment offset
    return bytes(f)


def _rle_segment_count(f: bytearray) -> bytes:
    f[0:4] = struct.pack("<I", 15)  # 15 segments declared, offsets beyond the second are 0
    return bytes(f)


def _sof_height_zero(f: bytearray) -> bytes:
    i = f.find(b"\xff\xc3")  # lossless SOF
    f[i + 5 : i + 7] = b"\x00\x00"
    return bytes(f)


def _sof_wider(f: bytearray) -> bytes:
    i = f.find(b"\xff\xc3")
    f[i + 7 : i + 9] = (int.from_bytes(f[i + 7 : i + 9], "big") + 1).to_bytes(2, "big")
    return bytes(f)


def _sof_length(f: bytearray) -> bytes:
    i = f.find(b"\xff\xc3")
    f[i + 2 : i + 4] = (int.from_bytes(f[i + 2 : i + 4], "big") + 1).to_bytes(2, "big")
    return bytes(f)


def _dht_to_sof(f: bytearray) -> bytes:
    i = f.find(b"\xff\xc4")  # the Huffman tables' marker flipped into a second frame header
    f[i + 1] = 0xC5
    return bytes(f)


def _dht_to_app(f: bytearray) -> bytes:
    i = f.find(b"\xff\xc4")  # ... or into an application segment: the scan's table is undefined
    f[i + 1] = 0xE1
    return bytes(f)


def _cut_third(f: bytearray) -> bytes:
    return bytes(f[: len(f) // 3])


def _cut_end(f: bytearray) -> bytes:
    return bytes(f[: len(f) - 40])


CASES = {
    "rle-offset-past-end": ("MR_small_RLE.dcm", _rle_offset_past_end, "RLE segment offsets"),
    "rle-segment-count": ("MR_small_RLE.dcm", _rle_segment_count, "segments"),
    "jpeg-lossless-sof-height-0": ("JPEG-LL.dcm", _sof_height_zero, "codestream is 256x0"),
    "jpeg-lossless-sof-wider": ("JPEG-LL.dcm", _sof_wider, "the header says"),
    "jpeg-lossless-sof-length": ("JPEG-LL.dcm", _sof_length, "(SOF) has a length"),
    # libjpeg refuses these; the lossless JPEG decoder tried next segfaulted (fuzzer, seed 44)
    "jpeg-lossless-rgb-dht-to-sof": ("SC_rgb_jpeg_gdcm.dcm", _dht_to_sof,
                                     "found 0xFFC3, 0xFFC5"),
    "jpeg-lossless-rgb-no-tables": ("SC_rgb_jpeg_gdcm.dcm", _dht_to_app,
                                    "no DHT segment defines"),
    "jpeg-lossless-dht-to-sof": ("JPEG-LL.dcm", _dht_to_sof, "found 0xFFC3, 0xFFC5"),
    "jpegls-cut-short": ("MR_small_jpeg_ls_lossless.dcm", _cut_third, "cut short"),
    "jpegls-end-cut": ("MR_small_jpeg_ls_lossless.dcm", _cut_end, "cut short"),
    "jpeg-baseline-cut": ("SC_rgb_jpeg_dcmtk.dcm", _cut_third, "cut short"),
}

_LOAD_THEN_CLEAN = """
def attack(arg):
    bad, clean = arg
    errors = []
    for _ in range(4):
        try:
            ms.load_image(ms.dicomfile_image_id(bad)).result(30)
            errors.append("loaded")
        except ms.MedstreamError as exc:
            errors.append(type(exc).__name__ + ": " + str(exc))
        ms.purge_cache()
    for _ in range(8):  # heap damage shows on later, unrelated allocations
        ms.load_image(ms.dicomfile_image_id(clean)).result(30)
        ms.purge_cache()
    return errors
"""


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_codestream_is_a_typed_error_and_the_process_lives_on(tmp_path, case):
    name, edit, words = CASES[case]
    bad = _with_frame(name, edit, tmp_path / f"{case}.dcm")
    clean = get_testdata_file(name)
    out = run_attack(_LOAD_THEN_CLEAN, [str(bad), clean], timeout=60)
    assert out.error is None, out.message + out.stderr[-2000:]
    assert out.exited
    assert len(out.value) == 4
    for message in out.value:
        assert message.startswith("DecodeError") and words in message, message


def test_a_stream_one_decoder_found_corrupt_is_not_decoded_again(tmp_path, monkeypatch):
    """The fallback decoders serve streams the first cannot read, not streams it found bad."""
    from medstream.codecs import registry
    from medstream.codecs.frame import CorruptStream

    calls: list[str] = []

    def corrupt(data: bytes, info) -> tuple[np.ndarray, str]:  # noqa: ANN001
        calls.append("first")
        raise CorruptStream("bad stream")

    def second(data: bytes, info) -> tuple[np.ndarray, str]:  # noqa: ANN001
        calls.append("second")
        raise AssertionError("not to be called")

    uid = "1.2.840.10008.1.2.4.80"
    registry.decoders.can_decode(uid)  # the built-in plugins first
    monkeypatch.setattr(registry.decoders, "_by_syntax", dict(registry.decoders._by_syntax))
    registry.decoders.register(uid, "first", corrupt, priority=0)
    registry.decoders.register(uid, "second", second, priority=1)
    with pytest.raises(ms.DecodeError, match="bad stream"):
        ms.load_image(ms.dicomfile_image_id(get_testdata_file("MR_small_jpeg_ls_lossless.dcm")))\
            .result(30)
    assert calls == ["first"]


@pytest.mark.parametrize("keyword,value", [("RescaleSlope", "nan"), ("RescaleSlope", "inf"),
                                           ("RescaleIntercept", "-inf"), ("WindowCenter", "nan"),
                                           ("WindowWidth", "inf")])
def test_non_finite_rescale_or_window_is_a_typed_error(tmp_path, keyword, value):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    setattr(ds, keyword, value)
    path = tmp_path / "bad.dcm"
    ds.save_as(path)
    with pytest.raises(ms.DicomParseError, match=keyword):
        ms.load_image(ms.dicomfile_image_id(path)).result(30)
    with pytest.raises(ms.VolumeError, match=keyword):
        ms.open_volume(str(path))


def test_a_garbled_value_representation_is_a_typed_error_for_volumes_too(tmp_path):
    """A flipped byte in an explicit VR (found by scripts/fuzz.py): pydicom converts the element
    lazily and raises NotImplementedError; image and volume loads both say DicomParseError."""
    src = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    at = src.index(b"\x28\x00\x10\x00US")  # (0028,0010) Rows, explicit VR "US"
    bad = tmp_path / "vr.dcm"
    bad.write_bytes(src[: at + 4] + b"\x55\xa8" + src[at + 6 :])
    with pytest.raises(ms.ImageLoadError):
        ms.load_image(ms.dicomfile_image_id(bad)).result(30)
    with pytest.raises(ms.DicomParseError, match="Unknown Value Representation"):
        ms.open_volume(str(bad))
