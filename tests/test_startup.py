"""``medstream volume DIR -o x.nii`` on classic uncompressed files, as a user runs it: what the
process imports (no pydicom, nibabel, httpx, rich, imagecodecs: each took start-up time that
made the whole conversion 5x slower than dcm2niix), and that the file it writes is the one the
library's nibabel path writes, with the values pydicom reads and dcm2niix's geometry."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

import medstream as ms
from needs import need_tool
from series import expected_stack, oblique, write_series

HEAVY = ("pydicom", "nibabel", "httpx", "rich", "imagecodecs", "PIL", "fsspec", "requests",
         "dask", "scipy")
_IMPORTTIME = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s*(\S+)\s*$", re.M)


def _implicit_copy(paths: list[Path], out: Path) -> list[Path]:
    """The series rewritten as implicit VR little endian (VRs from the dictionary only)."""
    out.mkdir()
    copies = []
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        dst = out / p.name
        ds.save_as(dst, implicit_vr=True, little_endian=True, enforce_file_format=True)
        copies.append(dst)
    return copies


def _convert(folder: Path, out: Path) -> set[str]:
    """Run the command line's entry point (``python -m medstream``) and return every module
    the process imported (``-X importtime``)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "medstream", "volume",
                           str(folder), "-o", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"wrote {out}" in proc.stdout
    return set(_IMPORTTIME.findall(proc.stderr))


@pytest.mark.parametrize("encoding", ["explicit", "implicit"])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_volume_command_imports_no_heavy_module(tmp_path: Path, encoding: str, suffix: str):
    paths = write_series(tmp_path / "explicit", 12, orientation=oblique(), size=48, columns=40)
    if encoding == "implicit":
        paths = _implicit_copy(paths, tmp_path / "implicit")
    out = tmp_path / f"out{suffix}"
    imported = _convert(paths[0].parent, out)
    assert "medstream.dicom.fastheader" in imported and "numpy" in imported  # it did the work
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    assert heavy == [], heavy

    img = nib.load(str(out))
    data = np.asarray(img.dataobj)
    assert img.get_data_dtype() == np.int16
    assert np.array_equal(data.transpose(2, 1, 0), expected_stack(paths))  # pydicom's values
    ref = ms.open_volume(paths[0].parent).to_nifti()  # the library's nibabel path
    assert ref.shape == img.shape
    np.testing.assert_array_equal(data, np.asarray(ref.dataobj))
    np.testing.assert_array_equal(img.affine, ref.affine)
    for name in ("qform", "sform"):
        mine, code = getattr(img, f"get_{name}")(coded=True)
        want, want_code = getattr(ref, f"get_{name}")(coded=True)
        assert int(code) == int(want_code) == 1
        np.testing.assert_allclose(mine, want, rtol=0, atol=1e-5)


def test_volume_command_matches_dcm2niix(tmp_path: Path):
    need_tool("dcm2niix", "dcm2niix")
    paths = write_series(tmp_path / "s", 10, orientation=oblique(25, -8), size=40, columns=36,
                         spacing=1.5)
    out = tmp_path / "ours.nii"
    _convert(paths[0].parent, out)
    (tmp_path / "ref").mkdir()
    subprocess.run(["dcm2niix", "-z", "n", "-b", "n", "-f", "ref", "-o", str(tmp_path / "ref"),
                    str(paths[0].parent)], check=True, capture_output=True, timeout=120)
    ref = nib.as_closest_canonical(nib.load(str(tmp_path / "ref" / "ref.nii")))
    ours = nib.as_closest_canonical(nib.load(str(out)))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    assert np.array_equal(np.asarray(ours.dataobj), ref.get_fdata().astype(np.int16))


def test_compressed_series_still_convert_through_the_full_path(tmp_path: Path):
    """What the light path leaves (here JPEG-LS) imports what it needs and gives the same
    volume."""
    need_tool("dcmcjpls", "dcmtk")
    from series import transcode

    paths = write_series(tmp_path / "raw", 8, size=32)
    packed = transcode(paths, tmp_path / "jls", ["dcmcjpls", "+el"])
    out = tmp_path / "jls.nii"
    imported = _convert(packed[0].parent, out)
    assert "imagecodecs" in imported or "pydicom" in imported
    assert np.array_equal(np.asarray(nib.load(str(out)).dataobj).transpose(2, 1, 0),
                          expected_stack(paths))
