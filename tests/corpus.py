"""Test data that needs no network: pydicom's and pydicom-data's files, plus series transcoded
here with dcmtk, gdcm and imagecodecs (HTJ2K), each with its uncompressed source."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from needs import require

PYDICOM_DIR = Path(pydicom.__file__).parent / "data" / "test_files"
QA_DIR = Path(__file__).resolve().parent / "data" / "qa-dev"  # real vendor files, see its README
QA_MIN_FILES = 43  # DICOM files shipped in tests/data/qa-dev: a guard against a partial copy


def qa(*parts: str) -> Path:
    """A real vendor file or folder shipped with the tests (tests/data/qa-dev)."""
    path = QA_DIR.joinpath(*parts)
    require(path.exists(), f"real test data missing from the checkout: {path}")
    return path


def qa_files() -> list[Path]:
    """Every DICOM file of tests/data/qa-dev (not the licences, notes or reference NIfTI)."""
    return sorted(p for p in QA_DIR.rglob("*") if p.is_file()
                  and p.suffix not in (".nii", ".txt", ".md") and p.name != "LICENSE")


def data_store_dir() -> Path | None:
    try:
        import data_store  # the pydicom-data wheel
    except ImportError:
        return None
    return Path(data_store.__file__).parent / "data"


# Files that are broken on purpose (tests of pydicom's parser) or carry no image.
SKIP = {
    "MR_truncated.dcm",  # truncated pixel data: an error case, tested separately
    "badVR.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",  # encapsulation error pydicom works around
    "bad_sequence.dcm",
    "emri_small_jpeg_2k_lossless_too_short.dcm",  # truncated on purpose
    "nested_priv_SQ.dcm",
    "no_meta.dcm",
    "empty_charset_LEI.dcm",
}


def local_files() -> list[Path]:
    dirs = [PYDICOM_DIR] + ([data_store_dir()] if data_store_dir() else [])
    out = []
    for d in dirs:
        for p in sorted(glob.glob(str(d / "**" / "*.dcm"), recursive=True)):
            if os.path.basename(p) in SKIP:
                continue
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:
                continue
            if "TransferSyntaxUID" not in ds.file_meta or ds.get("Rows") is None:
                continue
            with open(p, "rb") as f:
                if b"\xe0\x7f\x10\x00" not in f.read():  # (7FE0,0010) Pixel Data
                    continue
            out.append(Path(p))
    return out


def find(name: str) -> Path:
    for d in (PYDICOM_DIR, data_store_dir()):
        if d is not None:
            hits = glob.glob(str(d / "**" / name), recursive=True)
            if hits:
                return Path(hits[0])
    raise FileNotFoundError(name)


@dataclass(frozen=True)
class Transcoded:
    path: Path
    source: Path  # uncompressed original
    syntax: str
    lossless: bool
    tool: str


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def _htj2k(src: Path, dst: Path, syntax: str, reversible: bool) -> None:
    import imagecodecs
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(src)
    n = int(ds.get("NumberOfFrames") or 1)
    arr = ds.pixel_array if n > 1 else ds.pixel_array[None]
    # Irreversible (9/7 wavelet) with the default quantisation for the lossy syntax.
    frames = [imagecodecs.htj2k_encode(np.ascontiguousarray(f), reversible=reversible) for f in arr]
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    if ds.get("SamplesPerPixel", 1) == 3:
        ds.PhotometricInterpretation = "RGB"
    ds.save_as(dst, enforce_file_format=True)


def make_transcoded(out: Path) -> list[Transcoded]:
    """Transcode real sources with dcmtk / gdcm / imagecodecs. Tools missing here are skipped
    by the caller's checks (CI installs them)."""
    out.mkdir(parents=True, exist_ok=True)
    ct = find("693_UNCI.dcm")  # 512x512 CT, 16-bit signed, 14 bits stored
    mr12 = find("emri_small.dcm")  # 10-frame MR, 12 bits stored
    gray8 = find("vlut_04.dcm")  # 8-bit
    rgb = find("US1_UNCR.dcm")  # RGB 8-bit
    jobs: list[tuple[str, Path, str, bool, list[str] | None, str]] = [
        ("ct_implicit", ct, "1.2.840.10008.1.2", True, ["dcmconv", "+ti"], "dcmtk"),
        ("ct_bigendian", ct, "1.2.840.10008.1.2.2", True, ["dcmconv", "+tb"], "dcmtk"),
        ("ct_deflated", ct, "1.2.840.10008.1.2.1.99", True, ["dcmconv", "+td"], "dcmtk"),
        ("gray8_baseline", gray8, "1.2.840.10008.1.2.4.50", False, ["dcmcjpeg", "+eb"], "dcmtk"),
        ("rgb_baseline", rgb, "1.2.840.10008.1.2.4.50", False, ["dcmcjpeg", "+eb"], "dcmtk"),
        ("mr12_extended", mr12, "1.2.840.10008.1.2.4.51", False, ["dcmcjpeg", "+ee"], "dcmtk"),
        ("mr12_spectral", mr12, "1.2.840.10008.1.2.4.53", False, ["dcmcjpeg", "+es"], "dcmtk"),
        ("mr12_progressive", mr12, "1.2.840.10008.1.2.4.55", False, ["dcmcjpeg", "+ep"], "dcmtk"),
        ("ct_lossless", ct, "1.2.840.10008.1.2.4.57", True, ["dcmcjpeg", "+el"], "dcmtk"),
        ("ct_lossless_sv1", ct, "1.2.840.10008.1.2.4.70", True, ["dcmcjpeg", "+e1"], "dcmtk"),
        ("mr12_lossless_sv1", mr12, "1.2.840.10008.1.2.4.70", True, ["dcmcjpeg", "+e1"], "dcmtk"),
        ("ct_jpegls", ct, "1.2.840.10008.1.2.4.80", True, ["dcmcjpls", "+el"], "dcmtk"),
        ("mr12_jpegls_near", mr12, "1.2.840.10008.1.2.4.81", False, ["dcmcjpls", "+en"], "dcmtk"),
        ("rgb_jpegls", rgb, "1.2.840.10008.1.2.4.80", True, ["dcmcjpls", "+el"], "dcmtk"),
        ("ct_rle", ct, "1.2.840.10008.1.2.5", True, ["dcmcrle"], "dcmtk"),
        ("rgb_rle", rgb, "1.2.840.10008.1.2.5", True, ["dcmcrle"], "dcmtk"),
        ("mr12_rle", mr12, "1.2.840.10008.1.2.5", True, ["dcmcrle"], "dcmtk"),
        ("ct_j2k", ct, "1.2.840.10008.1.2.4.90", True, ["gdcmconv", "--j2k"], "gdcm"),
        ("mr12_j2k_lossy", mr12, "1.2.840.10008.1.2.4.91", False,
         ["gdcmconv", "--j2k", "--lossy", "-q", "45"], "gdcm"),
        ("rgb_j2k_lossy", rgb, "1.2.840.10008.1.2.4.91", False,
         ["gdcmconv", "--j2k", "--lossy", "-q", "45"], "gdcm"),
        ("mr12_j2k", mr12, "1.2.840.10008.1.2.4.90", True, ["gdcmconv", "--j2k"], "gdcm"),
        ("ct_htj2k", ct, "1.2.840.10008.1.2.4.201", True, None, "imagecodecs"),
        ("ct_htj2k_rpcl", ct, "1.2.840.10008.1.2.4.202", True, None, "imagecodecs"),
        ("ct_htj2k_lossy", ct, "1.2.840.10008.1.2.4.203", False, None, "imagecodecs"),
        ("mr12_htj2k", mr12, "1.2.840.10008.1.2.4.201", True, None, "imagecodecs"),
    ]
    result = []
    for name, src, syntax, lossless, cmd, tool in jobs:
        dst = out / f"{name}.dcm"
        if not dst.exists():
            if cmd is None:
                _htj2k(src, dst, syntax, reversible=lossless)
            else:
                if shutil.which(cmd[0]) is None:
                    continue
                _run(cmd + [str(src), str(dst)])
        got = str(pydicom.dcmread(dst, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        assert got == syntax, f"{name}: {cmd} wrote {got}, wanted {syntax}"
        result.append(Transcoded(dst, src, syntax, lossless, tool))
    return result


def with_new_uids(src: Path, dst: Path, study: str | None = None, series: str | None = None) -> Path:
    """A copy with fresh UIDs, so Orthanc stores every test object separately."""
    ds = pydicom.dcmread(src)
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(dst)
    return dst


def dcmtk_decompress(src: Path, dst: Path) -> Path | None:
    """Decompress with dcmtk (an independent decoder); None if dcmtk cannot do this syntax."""
    ts = str(pydicom.dcmread(src, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    tool = {
        "1.2.840.10008.1.2.4.50": "dcmdjpeg", "1.2.840.10008.1.2.4.51": "dcmdjpeg",
        "1.2.840.10008.1.2.4.53": "dcmdjpeg", "1.2.840.10008.1.2.4.55": "dcmdjpeg",
        "1.2.840.10008.1.2.4.57": "dcmdjpeg", "1.2.840.10008.1.2.4.70": "dcmdjpeg",
        "1.2.840.10008.1.2.4.80": "dcmdjpls", "1.2.840.10008.1.2.4.81": "dcmdjpls",
        "1.2.840.10008.1.2.5": "dcmdrle",
    }.get(ts)
    if tool is None or shutil.which(tool) is None:
        return None
    try:
        _run([tool, str(src), str(dst)])  # dcmdjpeg converts YCbCr to RGB, as medstream does
    except subprocess.CalledProcessError:
        return None
    return dst


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)
