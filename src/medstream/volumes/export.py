"""Write volumes out: NIfTI (RAS affine; grayscale without nibabel, see ``nifti1``), .npy, .npz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError
from .geometry import VolumeGeometry
from .nifti1 import can_write, write_nifti


def check_writable(geometry: VolumeGeometry, what: str = "NIfTI") -> None:
    """An irregular stack has no single affine: refuse rather than misplace slices."""
    if not geometry.regular:
        raise GeometryError(
            f"irregular slice spacing cannot be written as one {what}: its affine would put "
            "slices where they were not acquired. Load with spacing='resample' for a regular "
            "grid, or save as .npz, which keeps the true slice positions.", [])


def to_nifti(data: np.ndarray, geometry: VolumeGeometry, *, time_axis: bool = False) -> Any:
    """A ``nibabel.Nifti1Image`` sharing ``data``'s memory (a transposed view, no copy).

    The sform carries the exact affine (sheared under gantry tilt); the qform, which cannot hold a
    shear, is set only when the affine is orthogonal.
    """
    import nibabel as nib

    if time_axis and data.ndim == 5:  # RGB (t, z, y, x, c) -> (x, y, z, t, c)
        arr = np.transpose(data, (3, 2, 1, 0, 4))
    elif time_axis:  # (t, z, y, x) -> (x, y, z, t)
        arr = np.transpose(data, (3, 2, 1, 0))
    elif data.ndim == 4:  # RGB: NIfTI wants the components in a 5th dimension
        arr = np.transpose(data, (2, 1, 0, 3))[:, :, :, None, :]
    else:
        arr = np.transpose(data, (2, 1, 0))
    check_writable(geometry)
    affine = geometry.affine_ras
    img = nib.Nifti1Image(arr, affine)
    sform_code, qform_code = _nifti_codes(geometry)  # no ImagePositionPatient: space unknown
    img.set_sform(affine, code=sform_code)
    img.set_qform(affine, code=qform_code)
    img.header.set_xyzt_units("mm", "sec")
    return img


def _nifti_codes(geometry: VolumeGeometry) -> tuple[int, int]:
    """(sform code, qform code) of ``to_nifti``: scanner space when positions are known
    (unknown otherwise); no qform for a sheared affine, which it cannot hold."""
    known = 1 if geometry.position_known else 0
    return known, 0 if geometry.sheared else known


def save_volume(data: np.ndarray, geometry: VolumeGeometry, path: str | os.PathLike[str], *,
                time_axis: bool = False) -> Path:
    """Format by suffix: .nii / .nii.gz, .npy (array only), .npz (array, affine, spacing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")) and can_write(data, time_axis):
        check_writable(geometry)
        sform_code, qform_code = _nifti_codes(geometry)
        write_nifti(path, data, geometry.affine_ras, sform_code=sform_code, qform_code=qform_code)
    elif name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        nib.save(to_nifti(data, geometry, time_axis=time_axis), str(path))
    elif name.endswith(".npy"):
        np.save(path, data)
    elif name.endswith(".npz"):
        np.savez(path, data=data, affine_lps=geometry.affine, affine_ras=geometry.affine_ras,
                 spacing=np.array(geometry.spacing), positions=geometry.positions)
    else:
        raise ValueError(f"{path}: unknown volume format (use .nii, .nii.gz, .npy or .npz)")
    return path


def save_partial(path: Path, loaded_mask: np.ndarray) -> Path:
    """Write the per-slice mask of a partially loaded volume beside its output."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npy", ".npz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    mask = path.with_name(name + ".mask.npy")
    np.save(mask, np.asarray(loaded_mask, dtype=bool))
    return mask
