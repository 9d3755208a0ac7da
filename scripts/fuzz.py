#!/usr/bin/env python3
"""Mutation fuzzing of medstream's DICOM file loading.

Seed files (pydicom's test files with pixel data and the real vendor files of tests/data/qa-dev)
are mutated: bytes flipped, runs of bytes overwritten, the file truncated, header attributes set
to hostile values (with pydicom, then re-saved) and, for encapsulated pixel data, the first
frame's codestream corrupted (bytes flipped, marker lengths and image sizes zeroed or enlarged,
the fragment cut short). Each mutant is loaded in a child interpreter -- warmed up (medstream
imported, clean files loaded) before an address-space limit (RLIMIT_AS) is applied -- with a
timeout, doing what a user does::

    ms.load_image(ms.dicomfile_image_id(path, 1)).result(30)
    ms.open_volume(str(path))

Outcome classes of a mutant (the worst of its two loads):

    ok         loaded (and no NaN/inf in float pixels, nor in the spacing/position reported)
    typed      a ms.MedstreamError subclass                               (expected)
    untyped    any other exception                                        (failure)
    signal     the child died by a signal (segfault, abort)               (failure)
    hang       the child did not answer within --timeout                  (failure)
    memory     MemoryError, or the child killed by the memory limit       (failure)
    nonfinite  loaded, but NaN/inf presented as data                      (failure)

Mutants of a failing class are saved to --out with a line in --out/failures.jsonl. The same
--seed gives the same mutants (with --count; --seconds decides only how many are tried). Exit
status 1 when any failing class occurred, 2 on a harness error.

    .venv/bin/python scripts/fuzz.py --count 500 --seed 1 --out /tmp/fuzz-out --json /tmp/fuzz.json
    .venv/bin/python scripts/fuzz.py --replay /tmp/fuzz-out/000123-header-untyped.dcm
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
QA_DIR = REPO / "tests" / "data" / "qa-dev"
FAILING = ("untyped", "signal", "hang", "memory", "nonfinite")
CLASSES = ("ok", "typed") + FAILING
# the worst outcome of a mutant's loads names its class
SEVERITY = {"ok": 0, "typed": 1, "nonfinite": 2, "untyped": 3, "memory": 4, "hang": 5, "signal": 6}
KINDS = {"flip": 2, "overwrite": 2, "truncate": 1, "header": 3, "codestream": 3}
GiB = 1024**3

PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
PIXEL_TAG_BE = b"\x7f\xe0\x00\x10"
ITEM = b"\xfe\xff\x00\xe0"
SEQ_DELIM = b"\xfe\xff\xdd\xe0"
RLE_UID = "1.2.840.10008.1.2.5"


# -- the seed corpus ---------------------------------------------------------------------------
@dataclass
class Seed:
    path: Path
    label: str  # a short, stable name for reports
    data: bytes
    encapsulated: bool
    transfer_syntax: str | None
    pixel_offset: int  # where (7FE0,0010) starts in the file; len(data) if not found


def pydicom_test_files() -> Path:
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def _is_seed_name(p: Path) -> bool:
    return p.name not in ("LICENSE", "README.md") and p.suffix not in (".txt", ".nii", ".md")


def default_corpus() -> list[Path]:
    return sorted(pydicom_test_files().glob("*.dcm")) + sorted(
        p for p in QA_DIR.rglob("*") if p.is_file() and _is_seed_name(p))


def expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and _is_seed_name(q))
        elif p.is_file():
            out.append(p)
        else:
            raise SystemExit(f"fuzz: no such corpus file or folder: {p}")
    return out


def label_of(p: Path) -> str:
    for root, name in ((QA_DIR, "qa-dev"), (pydicom_test_files(), "pydicom")):
        try:
            return f"{name}/{p.resolve().relative_to(root.resolve())}"
        except ValueError:
            pass
    return str(p)


def load_seeds(paths: list[Path]) -> list[Seed]:
    """The files among ``paths`` that hold pixel data (files pydicom cannot parse at all are
    kept when the Pixel Data tag is in their bytes)."""
    import pydicom

    seeds = []
    for p in paths:
        data = p.read_bytes()
        ts, encapsulated, has_pixels = None, False, False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(p, force=True, defer_size=256)
            has_pixels = any(k in ds for k in ("PixelData", "FloatPixelData",
                                               "DoubleFloatPixelData"))
            uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if uid is not None:
                ts, encapsulated = str(uid), bool(uid.is_encapsulated)
        except Exception:
            pass
        if not has_pixels and PIXEL_TAG_LE not in data:
            continue
        off = max(data.rfind(PIXEL_TAG_LE), data.rfind(PIXEL_TAG_BE))
        seeds.append(Seed(p, label_of(p), data, encapsulated and find_items(data) is not None,
                          ts, off if off >= 0 else len(data)))
    return seeds


# -- byte-level helpers ------------------------------------------------------------------------
class Skip(Exception):
    """This mutation does not apply to this seed; draw another."""


def _offset(rng: random.Random, seed: Seed, size: int, header_bias: float = 0.7) -> int:
    """A position, mostly in the header (before the pixel data) where the parser lives."""
    end = min(seed.pixel_offset + 16, size)
    if size == 0:
        raise Skip("empty")
    if end > 0 and rng.random() < header_bias:
        return rng.randrange(end)
    return rng.randrange(size)


_INTERESTING = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE)


def _new_byte(rng: random.Random, old: int) -> int:
    r = rng.random()
    if r < 0.5:
        return old ^ (1 << rng.randrange(8))
    if r < 0.8:
        return rng.choice(_INTERESTING)
    return rng.randrange(256)


def _flip(rng: random.Random, buf: bytearray, lo: int, hi: int, n: int,
          pick: Callable[[], int] | None = None) -> list[list[int]]:
    changes = []
    for _ in range(n):
        pos = pick() if pick else rng.randrange(lo, hi)
        old = buf[pos]
        buf[pos] = _new_byte(rng, old)
        changes.append([pos, old, buf[pos]])
    return changes


def _run(rng: random.Random, data: bytes | bytearray, length: int) -> tuple[bytes, str]:
    style = rng.choice(("random", "zeros", "ones", "repeat", "splice"))
    if style == "random":
        return bytes(rng.randrange(256) for _ in range(length)), style
    if style == "zeros":
        return bytes(length), style
    if style == "ones":
        return b"\xff" * length, style
    if style == "repeat":
        return bytes([rng.randrange(256)]) * length, style
    start = rng.randrange(max(1, len(data) - length))
    return bytes(data[start:start + length]).ljust(length, b"\0"), style


# -- mutators: (rng, seed) -> (mutant bytes, detail) -------------------------------------------
def mutate_flip(rng: random.Random, seed: Seed) -> tuple[bytes, dict[str, Any]]:
    buf = bytearray(seed.data)
    n = rng.choice((1, 1, 1, 2, 3, 4, 8, 16))
    changes = _flip(rng, buf, 0, len(buf), n, lambda: _offset(rng, seed, len(buf)))
    return bytes(buf), {"sub": "flip", "changes": changes}


def mutate_overwrite(rng: random.Random, seed: Seed) -> tuple[bytes, dict[str, Any]]:
    buf = bytearray(seed.data)
    length = rng.choice((1, 2, 3, 4, 8, 16, 64, 256, 1024))
    pos = _offset(rng, seed, len(buf))
    run, style = _run(rng, buf, length)
    buf[pos:pos + length] = run[:len(buf) - pos]
    return bytes(buf), {"sub": f"overwrite-{style}", "offset": pos, "length": length}


def mutate_truncate(rng: random.Random, seed: Seed) -> tuple[bytes, dict[str, Any]]:
    size = len(seed.data)
    r = rng.random()
    if r < 0.4:
        cut, where = _offset(rng, seed, size, header_bias=1.0), "header"
    elif r < 0.7:
        cut, where = max(0, size - rng.randrange(1, max(2, size // 10))), "tail"
    else:
        cut, where = rng.randrange(size), "anywhere"
    return seed.data[:cut], {"sub": f"truncate-{where}", "keep": cut, "of": size}


# hostile values per attribute: numbers, or "+1"/"-1"/"x2"/"/2" relative to the original,
# or "del" to remove it. Strings (IS/DS/CS) are written as they are, "\\" between values.
HEADER = {
    "Rows": ("US", [0, 1, 2, 3, 255, 256, 4096, 32767, 32768, 65535, "+1", "-1", "x2", "/2",
                    "del"]),
    "Columns": ("US", [0, 1, 2, 3, 255, 256, 4096, 32767, 32768, 65535, "+1", "-1", "x2",
                       "/2", "del"]),
    "BitsAllocated": ("US", [0, 1, 7, 8, 9, 12, 16, 24, 32, 33, 64, 128, 255, 65535, "del"]),
    "BitsStored": ("US", [0, 1, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 65535, "+1", "-1",
                          "del"]),
    "NumberOfFrames": ("IS", ["0", "-1", "1", "2", "3", "1000", "65535", "100001",
                              "2147483647", "4294967297", "99999999999", "1.5", "", "abc",
                              "1\\2", "+1", "x2", "del"]),
    "SamplesPerPixel": ("US", [0, 1, 2, 3, 4, 5, 255, 65535, "del"]),
    "RescaleSlope": ("DS", ["0", "-1", "nan", "NaN", "inf", "-inf", "1e308", "-1e308",
                            "1e-308", "5e-324", "1e39", "", "abc", "1\\2", "del"]),
    "PixelSpacing": ("DS", ["0\\0", "-1\\-1", "nan\\1", "1\\nan", "inf\\inf", "-inf\\1",
                            "1e308\\1e308", "1e-320\\1", "1", "1\\2\\3", "", "abc\\1",
                            "del"]),
    "ImagePositionPatient": ("DS", ["nan\\0\\0", "0\\nan\\0", "0\\0\\inf", "inf\\-inf\\0",
                                    "1e308\\1e308\\1e308", "-1e308\\0\\1e308", "0\\0", "0",
                                    "", "abc\\0\\0", "0\\0\\0\\0", "del"]),
    # neighbours of the above that the same code paths read
    "RescaleIntercept": ("DS", ["nan", "inf", "-inf", "1e308", "-1e308", "", "abc"]),
    "HighBit": ("US", [0, 7, 15, 16, 31, 32, 63, 255, 65535, "del"]),
    "PixelRepresentation": ("US", [0, 1, 2, 255, 65535, "del"]),
    "PlanarConfiguration": ("US", [0, 1, 2, 65535, "del"]),
    "PhotometricInterpretation": ("CS", ["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR",
                                         "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT",
                                         "XYZ", "", "del"]),
    "ImageOrientationPatient": ("DS", ["0\\0\\0\\0\\0\\0", "nan\\0\\0\\0\\1\\0",
                                       "1\\0\\0\\1\\0\\0", "inf\\0\\0\\0\\1\\0", "1\\0\\0",
                                       "1e308\\0\\0\\0\\1e308\\0", "del"]),
}
HEADER_PRIMARY = ("Rows", "Columns", "BitsAllocated", "BitsStored", "NumberOfFrames",
                  "SamplesPerPixel", "RescaleSlope", "PixelSpacing", "ImagePositionPatient")


def _walk(ds: Any, path: str = "") -> Any:
    """(parent dataset, element, path) for every element, sequences included."""
    for elem in ds:
        yield ds, elem, f"{path}{elem.keyword or elem.tag}"
        if elem.VR == "SQ" and elem.value is not None:
            for k, item in enumerate(elem.value):
                yield from _walk(item, f"{path}{elem.keyword or elem.tag}[{k}].")


def _raw_value(vr: str, value: Any, original: Any, little: bool) -> bytes | None:
    """The bytes of a hostile value, None to delete the element."""
    if value == "del":
        return None
    if isinstance(value, str) and value[:1] in "+-x/" and value[1:].isdigit() and vr == "US":
        base = int(original) if isinstance(original, int) else 1
        n = int(value[1:])
        value = {"+": base + n, "-": base - n, "x": base * n, "/": base // n}[value[0]]
    if vr == "US":
        return struct.pack("<H" if little else ">H", int(value) & 0xFFFF)
    text = str(value)
    if vr == "IS" and text in ("+1", "x2"):
        try:
            base = int(str(original))
        except (TypeError, ValueError):
            base = 1
        text = str(base + 1 if text == "+1" else base * 2)
    raw = text.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def mutate_header(rng: random.Random, seed: Seed) -> tuple[bytes, dict[str, Any]]:
    import io

    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import tag_for_keyword

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(io.BytesIO(seed.data), force=True)
        except Exception as exc:
            raise Skip(f"pydicom cannot read the seed: {exc}") from None
        implicit, little = ds.original_encoding
        if implicit is None:
            implicit, little = False, True
        n = rng.choice((1, 1, 1, 2, 3))
        changes = []
        for _ in range(n):
            keyword = rng.choice(HEADER_PRIMARY if rng.random() < 0.8 else tuple(HEADER))
            vr, values = HEADER[keyword]
            value = rng.choice(values)
            tag = tag_for_keyword(keyword)
            where = [(parent, elem, path) for parent, elem, path in _walk(ds)
                     if elem.tag == tag]
            if not where:  # add it at the top level
                where = [(ds, None, keyword)]
            if len(where) > 1 and rng.random() < 0.3:
                targets, scope = where, "all"
            else:
                targets = [rng.choice(where)]
                scope = targets[0][2]
            for parent, elem, _path in targets:
                original = elem.value if elem is not None else None
                raw = _raw_value(vr, value, original, little)
                if raw is None:
                    if tag in parent:
                        del parent[tag]
                else:
                    parent[tag] = RawDataElement(pydicom.tag.Tag(tag), vr, len(raw), raw, 0,
                                                 implicit, little)
            changes.append({"attribute": keyword, "value": value, "where": scope,
                            "occurrences": len(where)})
        out = io.BytesIO()
        try:
            ds.save_as(out, enforce_file_format=False)
        except Exception as exc:
            raise Skip(f"pydicom cannot write it: {exc}") from None
    return out.getvalue(), {"sub": "+".join(c["attribute"] for c in changes),
                            "changes": changes}


# -- the encapsulated codestream ---------------------------------------------------------------
def find_items(data: bytes) -> tuple[int, list[tuple[int, int]]] | None:
    """(start of the pixel data value, [(item start, item length)]) for encapsulated pixel data
    (explicit or implicit VR little endian), None if there is none. Item 0 is the offset table."""
    starts = [data.rfind(PIXEL_TAG_LE + vr + b"\0\0\xff\xff\xff\xff") for vr in (b"OB", b"OW")]
    best = max(starts)
    value = best + 12 if best >= 0 else -1
    implicit = data.rfind(PIXEL_TAG_LE + b"\xff\xff\xff\xff")
    if implicit > best:
        value = implicit + 8
    if value < 0:
        return None
    items, p = [], value
    while p + 8 <= len(data) and data[p:p + 4] == ITEM:
        length = struct.unpack_from("<I", data, p + 4)[0]
        if p + 8 + length > len(data):
            break
        items.append((p, length))
        p += 8 + length
    return (value, items) if len(items) >= 2 else None


def _u(buf: bytes | bytearray, off: int, size: int) -> int:
    return int.from_bytes(buf[off:off + size], "big")


def _set(buf: bytearray, off: int, size: int, value: int) -> None:
    buf[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "big")


def codestream_fields(frag: bytes | bytearray, rle: bool) -> tuple[list, list]:
    """(marker length fields, size fields) of a JPEG/JPEG-LS, JPEG 2000 or RLE codestream:
    each (name, offset, size in bytes, value); offsets are inside ``frag``."""
    lengths: list[tuple[str, int, int, int]] = []
    sizes: list[tuple[str, int, int, int]] = []
    n = len(frag)
    if rle and n >= 64:
        nseg = struct.unpack_from("<I", frag, 0)[0]
        sizes.append(("rle.segments", 0, 4, nseg))
        for k in range(1, 16):
            sizes.append((f"rle.offset{k}", 4 * k, 4, struct.unpack_from("<I", frag, 4 * k)[0]))
        return lengths, sizes
    if frag[:2] == b"\xff\xd8":  # JPEG, JPEG-LS
        p = 2
        while p + 4 <= n and frag[p] == 0xFF:
            m = frag[p + 1]
            if m == 0xFF:
                p += 1
                continue
            if m == 0x01 or 0xD0 <= m <= 0xD8:
                p += 2
                continue
            if m == 0xD9:
                break
            length = _u(frag, p + 2, 2)
            lengths.append((f"jpeg.FF{m:02X}.length", p + 2, 2, length))
            sof = (0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC)) or m == 0xF7
            if sof and p + 10 <= n:
                sizes += [(f"jpeg.FF{m:02X}.precision", p + 4, 1, frag[p + 4]),
                          (f"jpeg.FF{m:02X}.rows", p + 5, 2, _u(frag, p + 5, 2)),
                          (f"jpeg.FF{m:02X}.columns", p + 7, 2, _u(frag, p + 7, 2)),
                          (f"jpeg.FF{m:02X}.components", p + 9, 1, frag[p + 9])]
            if m == 0xDA:
                if p + 5 <= n:
                    sizes.append(("jpeg.SOS.components", p + 4, 1, frag[p + 4]))
                break
            p += 2 + length
        return lengths, sizes
    cs = frag.find(b"\xff\x4f\xff\x51")  # JPEG 2000 (a raw codestream or inside a JP2 file)
    if cs < 0:
        return lengths, sizes
    p = cs + 2
    while p + 4 <= n:
        m = _u(frag, p, 2)
        if m < 0xFF00 or m in (0xFF93, 0xFFD9):  # SOD, EOC
            break
        length = _u(frag, p + 2, 2)
        lengths.append((f"j2k.{m:04X}.length", p + 2, 2, length))
        if m == 0xFF51 and p + 40 <= n:  # SIZ
            for name, off, size in (("Xsiz", 6, 4), ("Ysiz", 10, 4), ("XOsiz", 14, 4),
                                    ("YOsiz", 18, 4), ("XTsiz", 22, 4), ("YTsiz", 26, 4),
                                    ("Csiz", 38, 2)):
                sizes.append((f"j2k.SIZ.{name}", p + off, size, _u(frag, p + off, size)))
            for c in range(min(_u(frag, p + 38, 2), 4)):
                q = p + 40 + 3 * c
                if q + 3 <= n:
                    sizes += [(f"j2k.SIZ.Ssiz{c}", q, 1, frag[q]),
                              (f"j2k.SIZ.XRsiz{c}", q + 1, 1, frag[q + 1]),
                              (f"j2k.SIZ.YRsiz{c}", q + 2, 1, frag[q + 2])]
        elif m == 0xFF52 and p + 14 <= n:  # COD
            sizes += [("j2k.COD.layers", p + 6, 2, _u(frag, p + 6, 2)),
                      ("j2k.COD.levels", p + 9, 1, frag[p + 9]),
                      ("j2k.COD.cbw", p + 10, 1, frag[p + 10]),
                      ("j2k.COD.cbh", p + 11, 1, frag[p + 11]),
                      ("j2k.COD.transform", p + 13, 1, frag[p + 13])]
        elif m == 0xFF90 and p + 12 <= n:  # SOT: Psot, the tile-part length
            lengths.append(("j2k.SOT.Psot", p + 6, 4, _u(frag, p + 6, 4)))
        p += 2 + length
    return lengths, sizes


def _hostile(rng: random.Random, size: int, value: int) -> int:
    top = (1 << (8 * size)) - 1
    return rng.choice((0, 1, 2, top, top // 2, top // 2 + 1, value + 1, max(0, value - 1),
                       value * 2, value * 16, 255 if size > 1 else 0x0F))


def mutate_codestream(rng: random.Random, seed: Seed) -> tuple[bytes, dict[str, Any]]:
    found = find_items(seed.data)
    if found is None:
        raise Skip("no encapsulated pixel data")
    _value, items = found
    bot_start, bot_len = items[0]
    start, length = items[1]  # the first fragment: the first frame's codestream (or its head)
    body = start + 8
    frag = bytearray(seed.data[body:body + length])
    rle = seed.transfer_syntax == RLE_UID
    lengths, sizes = codestream_fields(frag, rle)
    subs = ["flip", "overwrite", "truncate", "fragment-length"]
    subs += ["marker-length"] * 2 if lengths else []
    subs += ["size"] * 2 if sizes else []
    subs += ["rle-runs"] if rle and length > 64 else []
    sub = rng.choice(subs)
    detail: dict[str, Any] = {"sub": sub, "fragment_offset": body, "fragment_length": length}
    new_len = len(frag)
    item_len: int | None = None
    if sub == "flip":
        n = rng.choice((1, 2, 4, 8, 16))
        head = min(len(frag), 512)
        detail["changes"] = _flip(rng, frag, 0, len(frag), n, lambda: (
            rng.randrange(head) if rng.random() < 0.6 else rng.randrange(len(frag))))
    elif sub == "overwrite":
        run_len = rng.choice((2, 4, 16, 64, 256))
        pos = rng.randrange(len(frag))
        run, style = _run(rng, frag, run_len)
        frag[pos:pos + run_len] = run[:len(frag) - pos]
        detail.update(offset=pos, length=run_len, style=style)
    elif sub == "truncate":
        r = rng.random()
        if r < 0.3:
            new_len = rng.randrange(min(len(frag), 256))
        elif r < 0.6:
            new_len = max(0, len(frag) - rng.randrange(1, 17))
        else:
            new_len = rng.randrange(len(frag))
        del frag[new_len:]
        detail["keep"] = new_len
    elif sub == "fragment-length":
        item_len = rng.choice((0, 1, length - 1, length + 1, length + 2, length + 1000,
                               0xFFFFFFF0, 0xFFFFFFFF)) & 0xFFFFFFFF
        detail["item_length"] = item_len
    elif sub == "marker-length":
        name, off, size, value = rng.choice(lengths)
        new = rng.choice((0, 1, 2, 3, max(0, value - 1), value + 1, value * 2,
                          (1 << (8 * size)) - 1, 1 << (8 * size - 1)))
        _set(frag, off, size, new)
        detail.update(field=name, old=value, new=new & ((1 << (8 * size)) - 1))
    elif sub == "size":
        name, off, size, value = rng.choice(sizes)
        if rle:
            buf = bytearray(struct.pack("<I", value))
            new = rng.choice((0, 1, 2, 3, 4, 15, 16, 255, 0xFFFFFFFF, 63, 64, length,
                              length + 1, max(0, value - 1), value + 1)) & 0xFFFFFFFF
            frag[off:off + 4] = struct.pack("<I", new)
            del buf
        else:
            new = _hostile(rng, size, value) & ((1 << (8 * size)) - 1)
            _set(frag, off, size, new)
        detail.update(field=name, old=value, new=new)
    else:  # rle-runs: replicate runs (-127) and literal runs (127) that overrun the output
        nseg = struct.unpack_from("<I", frag, 0)[0]
        seg = struct.unpack_from("<I", frag, 4)[0] if 1 <= nseg <= 15 else 64
        seg = seg if 64 <= seg < len(frag) else 64
        pos = rng.randrange(seg, len(frag))
        run_len = rng.choice((2, 16, 128, 1024))
        pattern = rng.choice((b"\x81\x00", b"\x7f", b"\x80", b"\x81\xff"))
        frag[pos:pos + run_len] = (pattern * run_len)[:min(run_len, len(frag) - pos)]
        detail.update(offset=pos, length=run_len, pattern=pattern.hex())
    out = bytearray(seed.data[:start])
    out += ITEM + struct.pack("<I", item_len if item_len is not None else len(frag))
    out += frag
    out += seed.data[body + length:]
    if new_len != length and bot_len >= 4:  # later frames moved: keep their offsets true
        delta = length - new_len
        for k in range(1, bot_len // 4):
            off = bot_start + 8 + 4 * k
            old = struct.unpack_from("<I", out, off)[0]
            if old > 0:
                struct.pack_into("<I", out, off, max(0, old - delta))
    return bytes(out), detail


MUTATORS: dict[str, Callable[[random.Random, Seed], tuple[bytes, dict[str, Any]]]] = {
    "flip": mutate_flip,
    "overwrite": mutate_overwrite,
    "truncate": mutate_truncate,
    "header": mutate_header,
    "codestream": mutate_codestream,
}


@dataclass
class Mutant:
    index: int
    kind: str
    seed: Seed
    data: bytes
    detail: dict[str, Any]

    @property
    def name(self) -> str:
        return "mutant.dcm" if self.seed.path.suffix == ".dcm" else "mutant"


def make_mutant(master_seed: int, index: int, seeds: list[Seed]) -> Mutant:
    """The ``index``-th mutant of ``master_seed``: the same bytes every run."""
    rng = random.Random(f"medstream-fuzz:{master_seed}:{index}")
    encapsulated = [s for s in seeds if s.encapsulated]
    kinds = [k for k in KINDS if k != "codestream" or encapsulated]
    for _attempt in range(20):
        kind = rng.choices(kinds, weights=[KINDS[k] for k in kinds])[0]
        seed = rng.choice(encapsulated if kind == "codestream" else seeds)
        try:
            data, detail = MUTATORS[kind](rng, seed)
        except Skip:
            continue
        if data != seed.data:
            return Mutant(index, kind, seed, data, detail)
    # every draw skipped (a corpus of unreadable files): a byte flip always applies
    seed = rng.choice(seeds)
    data, detail = mutate_flip(rng, seed)
    return Mutant(index, "flip", seed, data, detail)


# -- the child interpreter ---------------------------------------------------------------------
CHILD = r'''
import faulthandler, json, math, os, resource, sys, time, traceback, warnings
faulthandler.enable()
warnings.simplefilter("ignore")
proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # stray prints (Python or C) go to stderr, never into the protocol
sys.stdout = sys.stderr


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


import numpy as np
import medstream as ms


def _memory_in_chain(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _check(arr, where, bad):
    a = np.asarray(arr)
    if a.dtype.kind in "fc" and a.size:
        finite = np.isfinite(a)
        if not finite.all():
            bad.append(f"{where}: {int(a.size - finite.sum())} of {a.size} values not finite")


def _scalars(obj, names, where, bad):
    for name in names:
        v = getattr(obj, name, None)
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, (int, float, np.floating)) and not math.isfinite(float(x)):
                bad.append(f"{where}.{name} = {v!r}")
                break


def _frames(exc):
    """The innermost frame in medstream and the innermost frame of all, as "file:line func"."""
    tb = traceback.extract_tb(exc.__traceback__)
    fmt = lambda f: f"{f.filename.split('/site-packages/')[-1].split('/src/')[-1]}:{f.lineno} {f.name}"
    ours = [f for f in tb if "/medstream/" in f.filename]
    return {"medstream_frame": fmt(ours[-1]) if ours else None,
            "frame": fmt(tb[-1]) if tb else None}


def run_op(op, path):
    t0 = time.monotonic()
    res = {}
    try:
        bad = []
        if op == "image":
            img = ms.load_image(ms.dicomfile_image_id(path, 1)).result(30)
            arr = img.pixel_data
            _check(arr, "pixels", bad)
            _scalars(img, ("slope", "intercept", "min_pixel_value", "max_pixel_value",
                           "row_pixel_spacing", "column_pixel_spacing"), "image", bad)
        else:
            vol = ms.open_volume(str(path))
            arr = vol.get_scalar_data()
            _check(arr, "voxels", bad)
            geo = getattr(vol, "geometry", None)
            if geo is not None:
                _scalars(geo, ("spacing",), "geometry", bad)
                for name in ("origin", "affine", "direction"):
                    if getattr(geo, name, None) is not None:
                        _check(np.asarray(getattr(geo, name), dtype=float), "geometry." + name,
                               bad)
        res.update(dtype=str(np.asarray(arr).dtype), shape=list(np.shape(arr)))
        if bad:
            res.update(outcome="nonfinite", message="; ".join(bad)[:1000],
                       where=sorted({b.split(":")[0].split(" = ")[0] for b in bad}))
        else:
            res["outcome"] = "ok"
    except ms.LoadTimeoutError as exc:
        res.update(outcome="hang", error=type(exc).__name__, message=str(exc)[-500:])
    except ms.MedstreamError as exc:
        res.update(outcome="typed", error=type(exc).__name__, message=str(exc)[-500:])
        if _memory_in_chain(exc):
            res["memory_cause"] = True
    except MemoryError as exc:
        res.update(outcome="memory", error="MemoryError", message=str(exc)[-500:],
                   traceback=traceback.format_exc()[-3000:], **_frames(exc))
    except BaseException as exc:
        t = type(exc)
        name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
        res.update(outcome="untyped", error=name, message=str(exc)[-500:],
                   traceback=traceback.format_exc()[-3000:], **_frames(exc))
    res["seconds"] = round(time.monotonic() - t0, 3)
    return res


for warm in json.loads(sys.argv[1]):
    for op in ("image", "volume"):
        run_op(op, warm)
ms.cancel_load_all()
ms.purge_cache()
limit = _status("VmSize") + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
proto.write(json.dumps({"ready": True, "limit": limit}) + "\n")
for line in sys.stdin:
    req = json.loads(line)
    for op in ("image", "volume"):
        print(f"-- mutant {req['index']} {op}", file=sys.stderr, flush=True)
        proto.write(json.dumps(dict(run_op(op, req["path"]), op=op)) + "\n")
    try:
        ms.cancel_load_all()
        ms.purge_cache()
    except BaseException:
        pass
    proto.write(json.dumps({"done": True}) + "\n")
'''

MEMORY_WORDS = ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory",
                "Out of memory", "failed to allocate", "memory exhausted")


class Worker:
    """One warmed child interpreter that loads mutants one after another; restarted after a
    crash, a hang or a failing outcome, and every ``recycle`` mutants."""

    def __init__(self, warm: list[str], headroom: int, recycle: int, tmp: Path, n: int) -> None:
        self.warm, self.headroom, self.recycle = warm, headroom, recycle
        self.errpath = tmp / f"worker{n}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.used = 0
        self.buf = b""
        self.eof = False

    def start(self) -> None:
        env = dict(os.environ, MALLOC_ARENA_MAX="2", PYTHONWARNINGS="ignore",
                   PYTHONFAULTHANDLER="1")
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(self.warm), str(self.headroom)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, env=env,
            cwd=str(REPO))
        self.used, self.buf, self.eof = 0, b"", False
        line = self._line(time.monotonic() + 180)
        if not line or not json.loads(line).get("ready"):
            tail = self._stderr(0)
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start: {tail[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()  # type: ignore[union-attr]
                except OSError:
                    pass
            self.err.close()
            self.proc = None

    def _line(self, deadline: float) -> bytes | None:
        """The next protocol line; None at EOF (``self.eof`` set) or past the deadline."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                self.eof = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def _stderr(self, start: int) -> str:
        try:
            with open(self.errpath, "rb") as f:
                f.seek(start)
                return f.read()[-8000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def run(self, path: Path, index: int, timeout: float) -> dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None or self.used >= self.recycle:
            self.stop()
            self.start()
        assert self.proc is not None and self.proc.stdin is not None
        self.used += 1
        self.err.flush()
        err_start = os.path.getsize(self.errpath)
        self.proc.stdin.write((json.dumps({"path": str(path), "index": index}) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        ops: dict[str, dict[str, Any]] = {}
        while True:
            line = self._line(deadline)
            if line is None:
                break
            msg = json.loads(line)
            if msg.get("done"):
                return {"ops": ops}
            ops[msg.pop("op")] = msg
        running = "image" if "image" not in ops else "volume"
        if not self.eof:  # alive and silent: past the deadline
            self.stop()
            ops[running] = {"outcome": "hang", "message": f"no answer within {timeout:g} s"}
            return {"ops": ops}
        try:  # the pipe closed: the child is exiting (or has exited)
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.stop()
            ops[running] = {"outcome": "hang", "message": "closed its output but did not exit"}
            return {"ops": ops}
        tail = self._stderr(err_start)
        self.stop()
        if rc < 0:
            import signal as _signal

            try:
                signame = _signal.Signals(-rc).name
            except ValueError:
                signame = f"signal {-rc}"
            memory = any(w in tail for w in MEMORY_WORDS)
            ops[running] = {"outcome": "memory" if memory else "signal", "signal": signame,
                            "message": f"the child died by {signame}: {crash_excerpt(tail)}",
                            "stderr": tail[-8000:]}
        else:
            ops[running] = {"outcome": "untyped", "error": "ChildExit",
                            "message": f"the child exited with status {rc}",
                            "stderr": tail[-4000:]}
        return {"ops": ops}


def crash_excerpt(stderr: str) -> str:
    """The fatal error line and the innermost frames of the crashing thread (faulthandler)."""
    lines = stderr.splitlines()
    fatal = next((ln for ln in lines if ln.startswith("Fatal Python error")), "")
    frames: list[str] = []
    for k, ln in enumerate(lines):
        if ln.startswith("Current thread"):
            frames = [x.strip() for x in lines[k + 1:k + 5] if x.startswith("  File")]
            break
    return " | ".join([fatal] + frames if fatal else frames)[:600]


def signature(op: str, o: dict[str, Any]) -> str:
    """One failing load, with the numbers, paths and quoted values taken out: mutants that fail
    the same way group under one signature."""
    import re

    if o.get("outcome") == "nonfinite":
        where = o.get("where") or []
        return f"{op}: nonfinite in " + ", ".join(
            "pixels" if w in ("pixels", "voxels") else w for w in where)
    text = o.get("message") or ""
    if o.get("outcome") in ("signal", "memory") and o.get("signal"):
        text = o.get("signal", "") + " " + (crash_excerpt(o.get("stderr") or "")
                                           .split(" | ")[0])
    text = re.sub(r"(dicomfile:)?/\S+", "<path>", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "<v>", text)
    text = re.sub(r"0x[0-9a-fA-F]+|-?\d+(\.\d+)?(e[-+]?\d+)?", "<n>", text)
    at = f" [at {o['medstream_frame']}]" if o.get("medstream_frame") else ""
    return f"{op}: {o.get('outcome')} {o.get('error') or ''} {text[:160]}{at}".strip()


# -- the run -----------------------------------------------------------------------------------
def classify(ops: dict[str, dict[str, Any]]) -> str:
    outcomes = [o.get("outcome", "untyped") for o in ops.values()] or ["untyped"]
    return max(outcomes, key=lambda c: SEVERITY.get(c, 3))


def warm_files(seeds: list[Seed]) -> list[str]:
    """A few clean files that pull in each decoder before the memory limit."""
    names = ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
             "MR_small_jpeg_ls_lossless.dcm", "JPEG-lossy.dcm", "SC_rgb_jpeg_dcmtk.dcm",
             "image_dfl.dcm")
    out = [str(pydicom_test_files() / n) for n in names if (pydicom_test_files() / n).exists()]
    return out or [str(seeds[0].path)]


def fuzz(args: argparse.Namespace, seeds: list[Seed]) -> dict[str, Any]:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    failures_log = out_dir / "failures.jsonl"
    failures_log.write_text("")  # this run's failures only
    tmp = Path(tempfile.mkdtemp(prefix="medstream-fuzz-"))
    warm = warm_files(seeds)
    headroom = int(args.memory_gib * GiB)
    lock = threading.Lock()
    results: dict[int, dict[str, Any]] = {}
    next_index = [args.start]
    t0 = time.monotonic()
    stop_at = t0 + args.seconds if args.seconds else None
    count = args.count if args.count is not None else (None if args.seconds else 100)
    harness_errors: list[str] = []
    stopped: list[str] = []
    log = open(args.log, "w") if args.log else None

    def take() -> int | None:
        with lock:
            if harness_errors or stopped:
                return None
            if count is not None and next_index[0] >= args.start + count:
                return None
            if stop_at is not None and time.monotonic() >= stop_at:
                return None
            i = next_index[0]
            next_index[0] += 1
            return i

    def job(n: int) -> None:
        worker = Worker(warm, headroom, args.recycle, tmp, n)
        try:
            while (i := take()) is not None:
                mutant = make_mutant(args.seed, i, seeds)
                d = tmp / f"{i:07d}"
                d.mkdir()
                path = d / mutant.name
                path.write_bytes(mutant.data)
                res = worker.run(path, i, args.timeout)
                cls = classify(res["ops"])
                record = {"index": i, "seed": mutant.seed.label, "kind": mutant.kind,
                          "sub": mutant.detail.get("sub"), "class": cls,
                          "ops": res["ops"], "detail": mutant.detail,
                          "size": len(mutant.data)}
                if cls in FAILING:
                    worker.stop()  # a fresh interpreter for the next mutant
                    saved = out_dir / f"{i:06d}-{mutant.kind}-{cls}{Path(mutant.name).suffix}"
                    shutil.copyfile(path, saved)
                    record["saved"] = str(saved)
                    with lock:
                        with open(failures_log, "a") as f:
                            f.write(json.dumps(record, default=str) + "\n")
                shutil.rmtree(d, ignore_errors=True)
                with lock:
                    results[i] = record
                    if log is not None:
                        log.write(json.dumps(record, default=str) + "\n")
                    done = len(results)
                if args.progress and done % args.progress == 0:
                    c = Counter(r["class"] for r in results.values())
                    print(f"[{time.monotonic() - t0:7.1f} s] {done} mutants: "
                          + ", ".join(f"{k} {c[k]}" for k in CLASSES if c[k]), flush=True)
        except Exception as exc:  # a harness fault, not a finding
            with lock:
                harness_errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            worker.stop()

    import signal

    def terminate(signum: int, _frame: Any) -> None:  # summarise what finished, then exit
        stopped.append(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, terminate)
    threads = [threading.Thread(target=job, args=(n,), daemon=True) for n in range(args.jobs)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        print("interrupted: summarising what finished", file=sys.stderr)
        stopped.append("interrupted")
    elapsed = time.monotonic() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    if log is not None:
        log.close()
    summary = summarise(args, seeds, [results[i] for i in sorted(results)], elapsed,
                        harness_errors, out_dir)
    summary["stopped"] = stopped[0] if stopped else None
    return summary


def summarise(args: argparse.Namespace, seeds: list[Seed], records: list[dict[str, Any]],
              elapsed: float, harness_errors: list[str], out_dir: Path) -> dict[str, Any]:
    classes = Counter(r["class"] for r in records)
    per_op: dict[str, Counter] = defaultdict(Counter)
    typed: Counter = Counter()
    typed_memory: Counter = Counter()
    per_kind: dict[str, Counter] = defaultdict(Counter)
    per_sub: dict[str, Counter] = defaultdict(Counter)
    for r in records:
        per_kind[r["kind"]][r["class"]] += 1
        sub = r.get("sub") or ""
        if r["kind"] == "header":  # "Rows+Columns" -> one row per attribute
            for c in r["detail"].get("changes", []):
                per_sub[f"header.{c['attribute']}"][r["class"]] += 1
        else:
            per_sub[f"{r['kind']}.{sub.split('-')[0] if r['kind'] != 'codestream' else sub}"][
                r["class"]] += 1
        for op, o in r["ops"].items():
            per_op[op][o.get("outcome", "?")] += 1
            if o.get("outcome") == "typed":
                typed[f"{op}:{o.get('error')}"] += 1
                if o.get("memory_cause"):
                    typed_memory[f"{op}:{o.get('error')}"] += 1
    memory_typed = [{"index": r["index"], "kind": r["kind"], "sub": r.get("sub"), "seed": r["seed"],
                     "errors": {op: f"{o.get('error')}: {(o.get('message') or '')[-200:]}"
                                for op, o in r["ops"].items() if o.get("memory_cause")}}
                    for r in records if any(o.get("memory_cause") for o in r["ops"].values())]
    groups: dict[str, list[int]] = defaultdict(list)
    for r in records:
        for op, o in r["ops"].items():
            if o.get("outcome") in FAILING:
                groups[signature(op, o)].append(r["index"])
    failures = [{"index": r["index"], "class": r["class"], "kind": r["kind"], "sub": r.get("sub"),
                 "seed": r["seed"], "saved": r.get("saved"),
                 "cause": "; ".join(
                     f"{op}: {o.get('outcome')} {o.get('error') or o.get('signal') or ''} "
                     f"{(o.get('message') or '')[:300]}".strip()
                     for op, o in r["ops"].items() if o.get("outcome") in FAILING)}
                for r in records if r["class"] in FAILING]
    return {
        "seed": args.seed,
        "jobs": args.jobs,
        "timeout_s": args.timeout,
        "memory_headroom_gib": args.memory_gib,
        "seed_files": len(seeds),
        "seed_files_encapsulated": sum(s.encapsulated for s in seeds),
        "tried": len(records),
        "seconds": round(elapsed, 1),
        "classes": {c: classes.get(c, 0) for c in CLASSES},
        "per_op": {op: dict(c) for op, c in sorted(per_op.items())},
        "typed_errors": dict(typed.most_common()),
        "typed_with_memory_cause": dict(typed_memory.most_common()),
        "typed_with_memory_cause_mutants": memory_typed,
        "per_kind": {k: dict(per_kind[k]) for k in KINDS if k in per_kind},
        "per_sub": {k: dict(v) for k, v in sorted(per_sub.items())},
        "failing": sum(classes.get(c, 0) for c in FAILING),
        "failure_signatures": {k: {"count": len(v), "mutants": v[:20]}
                               for k, v in sorted(groups.items(), key=lambda kv: -len(kv[1]))},
        "failures": failures,
        "failures_log": str(out_dir / "failures.jsonl") if failures else None,
        "harness_errors": harness_errors,
        "list_limit": args.list,
    }


def args_list_limit(s: dict[str, Any]) -> int:
    return int(s.get("list_limit", 50))


def print_summary(s: dict[str, Any]) -> None:
    w = sys.stdout.write
    rate = s["tried"] / s["seconds"] if s["seconds"] else 0.0
    took = f"in {s['seconds']} s ({rate:.1f}/s)" if s["seconds"] else "(from logs)"
    w(f"\nmedstream fuzz: {s['tried']} mutants {took}, "
      f"--seed {s['seed']}, --jobs {s['jobs']}, {s['seed_files']} seed files "
      f"({s['seed_files_encapsulated']} encapsulated)\n\n")
    w(f"{'outcome':<12}{'mutants':>8}   {'image':>6}{'volume':>7}\n")
    for c in CLASSES:
        mark = "  <- failing" if c in FAILING and s["classes"][c] else ""
        w(f"{c:<12}{s['classes'][c]:>8}   {s['per_op'].get('image', {}).get(c, 0):>6}"
          f"{s['per_op'].get('volume', {}).get(c, 0):>7}{mark}\n")
    if s["typed_errors"]:
        w("\ntyped errors (per load)\n")
        for name, n in s["typed_errors"].items():
            extra = s["typed_with_memory_cause"].get(name)
            w(f"  {name:<42}{n:>6}" + (f"   ({extra} caused by MemoryError)" if extra else "")
              + "\n")
    cols = [c for c in CLASSES if any(v.get(c) for v in s["per_sub"].values())]
    for title, table in (("mutation kind", s["per_kind"]), ("mutation (sub-kind)", s["per_sub"])):
        w(f"\n{title:<34}" + "".join(f"{c:>10}" for c in cols) + f"{'total':>8}\n")
        for k, v in table.items():
            w(f"  {k:<32}" + "".join(f"{v.get(c, 0):>10}" for c in cols)
              + f"{sum(v.values()):>8}\n")
    if s["failure_signatures"]:
        w("\nfailing loads, grouped (count, first mutants)\n")
        for sig, g in s["failure_signatures"].items():
            w(f"  {g['count']:>5}  {sig}\n         #" + " #".join(map(str, g["mutants"][:8]))
              + "\n")
    if s["failures"]:
        w(f"\n{len(s['failures'])} failing mutants (saved in {s['failures_log']}):\n")
        for f in s["failures"][:args_list_limit(s)]:
            w(f"  #{f['index']} {f['class']} [{f['kind']}:{f['sub']}] {f['seed']}\n"
              f"      {f['cause'][:400]}\n")
        if len(s["failures"]) > args_list_limit(s):
            w(f"  ... and {len(s['failures']) - args_list_limit(s)} more (all in "
              f"{s['failures_log']})\n")
    for e in s["harness_errors"]:
        w(f"harness error: {e}\n")
    if s.get("stopped"):
        w(f"{s['stopped']}: the counts cover the mutants that finished\n")
    w("\n")


def replay(paths: list[str], args: argparse.Namespace) -> int:
    """Load saved mutants in a worker (same limits) and print what happened to each."""
    seeds: list[Seed] = []
    tmp = Path(tempfile.mkdtemp(prefix="medstream-fuzz-replay-"))
    worker = Worker(warm_files(seeds), int(args.memory_gib * GiB), 1, tmp, 0)
    bad = 0
    try:
        for k, p in enumerate(paths):
            res = worker.run(Path(p).resolve(), k, args.timeout)
            cls = classify(res["ops"])
            bad += cls in FAILING
            print(f"{p}: {cls}")
            for op, o in res["ops"].items():
                print(f"  {op}: " + json.dumps(o, indent=2, default=str).replace("\\n", "\n"))
    finally:
        worker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, help="stop starting mutants after this long")
    ap.add_argument("--count", type=int, help="mutants to try (default 100 without --seconds)")
    ap.add_argument("--seed", type=int, default=0, help="the same seed gives the same mutants")
    ap.add_argument("--jobs", type=int, default=1, help="child interpreters at once")
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "medstream-fuzz-out"),
                    help="folder for failing mutants and failures.jsonl")
    ap.add_argument("--corpus", nargs="+", type=Path,
                    help="seed files or folders (default: pydicom's test files with pixel "
                         "data and tests/data/qa-dev)")
    ap.add_argument("--json", help="write the summary here as JSON")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per mutant (both loads)")
    ap.add_argument("--memory-gib", type=float, default=3.0,
                    help="address space allowed beyond the warmed-up child (RLIMIT_AS)")
    ap.add_argument("--recycle", type=int, default=200,
                    help="start a fresh child after this many mutants")
    ap.add_argument("--progress", type=int, default=0, help="print a line every N mutants")
    ap.add_argument("--list", type=int, default=50,
                    help="failing mutants listed one by one in the printed summary")
    ap.add_argument("--start", type=int, default=0,
                    help="index of the first mutant (to go on where a run of --seed stopped)")
    ap.add_argument("--from-log", nargs="+", metavar="LOG",
                    help="summarise the records of earlier runs' --log files; load nothing")
    ap.add_argument("--log", help="write every mutant's record here (JSON lines)")
    ap.add_argument("--replay", nargs="+", metavar="FILE",
                    help="load these (saved) mutants and print the outcome of each")
    ap.add_argument("--emit", nargs="+", type=int, metavar="INDEX",
                    help="write these mutants of --seed to --out (no loading) and exit")
    args = ap.parse_args(argv)
    if args.jobs < 1 or (args.count is not None and args.count < 0):
        ap.error("--jobs must be >= 1 and --count >= 0")
    if args.replay:
        return replay(args.replay, args)
    if args.from_log:
        records: dict[int, dict[str, Any]] = {}
        for log in args.from_log:
            with open(log) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        records[r["index"]] = r
        seeds = load_seeds(expand(args.corpus) if args.corpus else default_corpus())
        summary = summarise(args, seeds, [records[i] for i in sorted(records)], 0.0, [],
                            Path(args.out))
        summary["seconds"] = None
        print_summary(summary)
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return 1 if summary["failing"] else 0
    seeds = load_seeds(expand(args.corpus) if args.corpus else default_corpus())
    if not seeds:
        print("fuzz: no seed file with pixel data", file=sys.stderr)
        return 2
    if args.emit:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        for i in args.emit:
            m = make_mutant(args.seed, i, seeds)
            path = Path(args.out) / f"{i:06d}-{m.kind}{Path(m.name).suffix}"
            path.write_bytes(m.data)
            print(f"{path}: {m.kind} of {m.seed.label}: {json.dumps(m.detail, default=str)}")
        return 0
    summary = fuzz(args, seeds)
    print_summary(summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if summary["harness_errors"]:
        return 2
    return 1 if summary["failing"] else 0


if __name__ == "__main__":
    sys.exit(main())
