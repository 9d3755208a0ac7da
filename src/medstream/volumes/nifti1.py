"""NIfTI-1 single files (.nii, .nii.gz) of grayscale volumes, written without nibabel.

Why: importing nibabel (which imports pydicom) took 0.4 s of a ``medstream volume DIR -o x.nii``
run, three times what dcm2niix needs for a whole 120-slice CT (0.13 s on a shared 2-core machine).
The header here is the one nibabel writes for ``export.to_nifti``: the same fields, the sform as
given, the qform quaternion by nibabel's own polar decomposition and eigenvector method, every
value stored as the same float32. tests/test_nifti1.py checks the files byte for byte against
nibabel's and reads them back with nibabel. What this does not cover (colour, 64-bit integers,
non-native byte order) is written by nibabel, as before.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any

import numpy as np

# dtype -> NIfTI-1 datatype code (nibabel's table, without the 64-bit integers it warns about)
DATATYPES: dict[np.dtype, int] = {
    np.dtype(np.uint8): 2, np.dtype(np.int16): 4, np.dtype(np.int32): 8,
    np.dtype(np.float32): 16, np.dtype(np.float64): 64, np.dtype(np.int8): 256,
    np.dtype(np.uint16): 512, np.dtype(np.uint32): 768,
}
XYZT_UNITS = 2 | 8  # millimetres, seconds
VOX_OFFSET = 352  # the 348-byte header and an empty extension block
GZIP_LEVEL = 1  # nibabel's default for .nii.gz
_CHUNK = 64 * 1024**2  # bytes handed to gzip at a time

_HEADER = struct.Struct(
    "<i10s18sihcB8h3fhhhh8ffffhcBffffii80s24shh6f4f4f4f16s4s")


def can_write(data: np.ndarray, time_axis: bool) -> bool:
    """Whether this writer gives nibabel's file: a 3D grayscale volume, or a 4D one with a time
    axis, of a native-order dtype in ``DATATYPES``."""
    return (data.ndim == (4 if time_axis else 3) and data.dtype.isnative
            and sys.byteorder == "little" and data.dtype in DATATYPES
            and max(data.shape) <= 32767)  # dim[] is int16; nibabel says what is wrong


def quaternion(rotation: np.ndarray) -> np.ndarray:
    """(w, x, y, z) of a 3x3 rotation, nibabel's ``quaternions.mat2quat`` (Bar-Itzhack: the
    eigenvector of the largest eigenvalue of a symmetric 4x4 matrix; w >= 0)."""
    qxx, qyx, qzx, qxy, qyy, qzy, qxz, qyz, qzz = rotation.flat
    k = np.array([
        [qxx - qyy - qzz, 0, 0, 0],
        [qyx + qxy, qyy - qxx - qzz, 0, 0],
        [qzx + qxz, qzy + qyz, qzz - qxx - qyy, 0],
        [qyz - qzy, qzx - qxz, qxy - qyx, qxx + qyy + qzz],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    if q[0] < 0:
        q *= -1
    return q


def qform(affine: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(qfac, zooms, quaternion b c d, offset) of an affine, as nibabel's ``set_qform`` makes
    them (shears stripped: the closest orthogonal matrix)."""
    trans = affine[:3, 3]
    rzs = affine[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    r = rzs / zooms
    if np.linalg.det(r) > 0:
        qfac = 1.0
    else:
        qfac = -1.0
        r[:, -1] *= -1
    p, _, qs = np.linalg.svd(r)
    quat = quaternion(np.dot(p, qs))
    return qfac, zooms, quat[1:], trans


def header_bytes(shape: tuple[int, ...], dtype: np.dtype, affine: np.ndarray, sform_code: int,
                 qform_code: int) -> bytes:
    """The 348-byte NIfTI-1 header and the 4-byte extension flag (none) of a single file."""
    affine = np.asarray(affine, dtype=np.float64)
    qfac, zooms, quat, trans = qform(affine)
    dim = [len(shape), *shape] + [1] * (7 - len(shape))
    pixdim = np.ones(8, dtype=np.float32)
    pixdim[0] = qfac
    pixdim[1:4] = zooms
    f32 = np.float32
    fields = (
        348, b"", b"", 0, 0, b"\0", 0,  # sizeof_hdr .. dim_info
        *dim,
        0.0, 0.0, 0.0, 0,  # intent_p1..p3, intent_code
        DATATYPES[dtype], dtype.itemsize * 8, 0,  # datatype, bitpix, slice_start
        *(float(v) for v in pixdim),
        float(VOX_OFFSET), 1.0, 0.0,  # vox_offset, scl_slope, scl_inter (values as stored)
        0, b"\0", XYZT_UNITS,  # slice_end, slice_code, xyzt_units
        0.0, 0.0, 0.0, 0.0, 0, 0,  # cal_max, cal_min, slice_duration, toffset, glmax, glmin
        b"", b"",  # descrip, aux_file
        qform_code, sform_code,
        *(float(f32(v)) for v in (*quat, *trans)),
        *(float(f32(v)) for v in affine[:3, :].flat),
        b"", b"n+1\0",
    )
    return _HEADER.pack(*fields) + b"\0\0\0\0"


def write_nifti(path: str | os.PathLike[str], data: np.ndarray, affine: np.ndarray, *,
                sform_code: int, qform_code: int) -> None:
    """Write ``data`` ((z, y, x) or (t, z, y, x), C order: NIfTI's x-fastest order on disk) with
    the RAS ``affine``; gzip-compressed when the name ends in .gz."""
    shape = tuple(int(n) for n in data.shape[::-1])
    head = header_bytes(shape, data.dtype, affine, sform_code, qform_code)
    body = np.ascontiguousarray(data).data.cast("B")
    if os.fspath(path).lower().endswith(".gz"):
        import gzip

        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                    compresslevel=GZIP_LEVEL, mtime=0) as f:
            _write(f, head, body)
    else:
        with open(path, "wb") as f:
            _write(f, head, body)


def _write(f: Any, head: bytes, body: memoryview) -> None:
    f.write(head)
    for start in range(0, len(body), _CHUNK):
        f.write(body[start : start + _CHUNK])
