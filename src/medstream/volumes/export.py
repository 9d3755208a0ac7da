"""Write volumes out: NIfTI (RAS affine via nibabel), .npy, .npz."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import VolumeGeometry


def to_nifti(data: np.ndarray, geometry: VolumeGeometry) -> Any:
    """A ``nibabel.Nifti1Image`` sharing ``data``'s memory (a transposed view, no copy).

    The sform carries the exact affine (sheared under gantry tilt); the qform, which cannot hold a
    shear, is set only when the affine is orthogonal.
    """
    import nibabel as nib

    if data.ndim == 4:  # RGB: NIfTI wants the components in a 5th dimension
        arr = np.transpose(data, (2, 1, 0, 3))[:, :, :, None, :]
    else:
        arr = np.transpose(data, (2, 1, 0))
    affine = geometry.affine_ras
    img = nib.Nifti1Image(arr, affine)
    img.set_sform(affine, code=1)
    if geometry.sheared:
        img.set_qform(None, code=0)
    else:
        img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


def save_volume(data: np.ndarray, geometry: VolumeGeometry, path: str | os.PathLike[str]) -> Path:
    """Format by suffix: .nii / .nii.gz, .npy (array only), .npz (array, affine, spacing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        nib.save(to_nifti(data, geometry), str(path))
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
