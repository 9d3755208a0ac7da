"""The NIfTI writer without nibabel (volumes/nifti1.py) against nibabel itself: the same file,
byte for byte, for oblique, flipped, sheared (gantry tilt) and position-less geometries, every
dtype it takes, 3D and 4D; and read back by nibabel, an independent reader, with the same data,
affines, codes, dtype, scaling, units, dims and pixdims."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medstream.volumes.export import save_volume, to_nifti
from medstream.volumes.geometry import SliceInfo, VolumeGeometry, compute_geometry
from medstream.volumes.nifti1 import DATATYPES, can_write

RNG = np.random.default_rng(7)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _geometry(rng: np.random.Generator, *, tilt: float = 0.0, positions: bool = True,
              n: int = 5, rows: int = 4, cols: int = 6) -> VolumeGeometry:
    """A stack of ``n`` slices in a random orientation; ``tilt`` shears the stack direction
    (gantry tilt, in mm per mm); without ``positions`` a single slice with none."""
    rot = _rotation(rng)
    row, col = rot[:, 0], rot[:, 1]
    normal = np.cross(row, col)
    stack = normal + tilt * col
    step = float(rng.uniform(0.5, 4.0))
    origin = rng.uniform(-200, 200, 3)
    spacing = (float(rng.uniform(0.3, 2)), float(rng.uniform(0.3, 2)))
    slices = [SliceInfo(image_id=f"s{k}", rows=rows, columns=cols,
                        position=tuple(origin + k * step * stack) if positions else None,
                        orientation=tuple(np.concatenate([row, col])), pixel_spacing=spacing)
              for k in range(n if positions else 1)]
    return compute_geometry(slices, warn=False)


def _cases() -> list[tuple[str, VolumeGeometry, np.dtype, bool]]:
    dtypes = list(DATATYPES)
    out = []
    for k in range(24):
        kind = ["oblique", "tilted", "no-position"][k % 3] if k else "axial"
        if kind == "axial":
            geometry = compute_geometry([SliceInfo(f"a{z}", 4, 6, (-120.0, -95.5, 40.0 + z),
                                                   (1, 0, 0, 0, 1, 0), (0.7, 0.7))
                                         for z in range(5)])
        else:
            geometry = _geometry(RNG, tilt=0.3 if kind == "tilted" else 0.0,
                                 positions=kind != "no-position")
        out.append((kind, geometry, dtypes[k % len(dtypes)], k % 4 == 3))
    return out


def _data(geometry: VolumeGeometry, dtype: np.dtype, time_axis: bool) -> np.ndarray:
    shape = ((3,) if time_axis else ()) + tuple(geometry.shape)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    low, high = (info.min, info.max) if info else (-1e6, 1e6)
    data = RNG.uniform(max(low, -1e6), min(high, 1e6), shape).astype(dtype)
    if dtype.kind == "f":
        data.flat[:3] = [np.nan, np.inf, -0.0]
    return data


@pytest.mark.parametrize("case", range(24))
def test_fast_writer_gives_nibabels_file(tmp_path: Path, case: int) -> None:
    kind, geometry, dtype, time_axis = _cases()[case]
    data = _data(geometry, dtype, time_axis)
    assert can_write(data, time_axis)
    assert kind != "tilted" or geometry.sheared
    assert kind != "no-position" or not geometry.position_known
    ours = save_volume(data, geometry, tmp_path / "ours.nii", time_axis=time_axis)
    ours_gz = save_volume(data, geometry, tmp_path / "ours.nii.gz", time_axis=time_axis)
    theirs = tmp_path / "nibabel.nii"
    nib.save(to_nifti(data, geometry, time_axis=time_axis), str(theirs))

    assert ours.read_bytes() == theirs.read_bytes()
    assert gzip.decompress(ours_gz.read_bytes()) == theirs.read_bytes()

    ref = nib.load(str(theirs))
    for path in (ours, ours_gz):
        img = nib.load(str(path))
        h, r = img.header, ref.header
        assert img.get_data_dtype() == ref.get_data_dtype() == dtype
        assert img.shape == ref.shape
        np.testing.assert_array_equal(np.asanyarray(img.dataobj), np.asanyarray(ref.dataobj))
        np.testing.assert_array_equal(img.affine, ref.affine)
        for name in ("qform", "sform"):
            mine, code = getattr(img, f"get_{name}")(coded=True)
            want, want_code = getattr(ref, f"get_{name}")(coded=True)
            assert int(code) == int(want_code)
            np.testing.assert_array_equal(mine, want)
        assert img.dataobj.slope == ref.dataobj.slope and img.dataobj.inter == ref.dataobj.inter
        for field in ("dim", "pixdim", "xyzt_units", "datatype", "bitpix", "vox_offset",
                      "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                      "qoffset_z", "srow_x", "srow_y", "srow_z", "magic", "cal_min", "cal_max"):
            np.testing.assert_array_equal(h[field], r[field], err_msg=field)
        assert h.get_xyzt_units() == ("mm", "sec")
        codes = (1, 0) if geometry.sheared else (1, 1)
        if not geometry.position_known:
            codes = (0, 0)
        assert (int(h["sform_code"]), int(h["qform_code"])) == codes
    # the affine is the geometry's (RAS), within the float32 the header stores
    np.testing.assert_allclose(nib.load(str(ours)).header.get_sform(), geometry.affine_ras,
                               rtol=1e-6, atol=1e-4)


def test_colour_and_64_bit_volumes_still_go_through_nibabel(tmp_path: Path) -> None:
    geometry = _geometry(RNG)
    rgb = RNG.integers(0, 255, (*geometry.shape, 3), dtype=np.uint8)
    wide = RNG.integers(-5, 5, geometry.shape, dtype=np.int64)
    assert not can_write(rgb, False) and not can_write(wide, False)
    assert not can_write(wide.astype(">i2"), False)
    out = save_volume(rgb, geometry, tmp_path / "rgb.nii")
    assert nib.load(str(out)).shape == (*geometry.shape[::-1], 1, 3)
