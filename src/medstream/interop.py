"""Conversions between medstream volumes and the Python imaging stack.

Axis order is where users' bugs come from, so every function here keeps one rule:

* medstream arrays (``volume.scalar_data``, ``np.asarray(volume)``) are ``(z, y, x)`` =
  ``(slice, row, column)``, the order SimpleITK's ``GetArrayFromImage`` also uses;
* ``volume.affine`` maps the index ``(x, y, z) = (column, row, slice)`` to LPS millimetres
  (DICOM / ITK); ``volume.geometry.affine_ras`` maps the same index to RAS (NIfTI, MONAI,
  TorchIO);
* nibabel, MONAI and TorchIO index arrays as ``(x, y, z)``: they get the transposed array
  (a view, no copy) with the RAS affine.

SimpleITK, torch, MONAI and TorchIO are optional: each is imported only by the function that
needs it (``pip install 'medstream[interop]'``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .core.hooks import register_factory
from .core.image import as_array
from .core.loading import cache_loaded_volume
from .errors import GeometryError
from .volumes.convert import (
    monai_meta,
    ras_array,
    require_module,
    sitk_affine,
    to_metatensor,
    to_sitk,
    to_torch,
    to_torchio,
)
from .volumes.geometry import LPS_TO_RAS, TILT_TOL_DEG, VolumeGeometry

if TYPE_CHECKING:
    from .volumes.dynamic import DynamicVolume
    from .volumes.streaming import StreamingImageVolume

ORTHOGONAL_TOL = 1e-4  # in-plane axes (row and column directions) must be perpendicular




# -- geometry from an affine ---------------------------------------------------------------------
def geometry_from_affine(affine: Any, shape: tuple[int, ...], *, ras: bool = False,
                         image_ids: list[str] | None = None) -> VolumeGeometry:
    """The :class:`VolumeGeometry` of a ``(z, y, x)`` array whose 4x4 ``affine`` maps
    ``(x, y, z, 1)`` indices to LPS mm (RAS with ``ras=True``).

    A slice axis not perpendicular to the slices (gantry tilt) is kept as a shear; in-plane
    axes must be perpendicular, as in every DICOM image.
    """
    a = np.asarray(affine, dtype=float)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise GeometryError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    if ras:
        a = LPS_TO_RAS @ a
    if len(shape) < 3:
        raise GeometryError(f"a volume array is (z, y, x); got shape {tuple(shape)}")
    cols = a[:3, :3]
    spacing = tuple(float(np.linalg.norm(cols[:, k])) for k in range(3))
    if min(spacing) <= 0:
        raise GeometryError(f"affine has a zero axis (spacing {spacing})")
    direction = cols / np.array(spacing)
    row_dir, col_dir = direction[:, 0], direction[:, 1]
    if abs(float(row_dir @ col_dir)) > ORTHOGONAL_TOL:
        raise GeometryError("affine's row and column axes are not perpendicular: not an image "
                            "grid medstream can represent")
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    nk = int(shape[0])
    stack = cols[:, 2]
    positions = a[:3, 3] + np.outer(np.arange(nk), stack)
    tilt = math.degrees(math.acos(min(1.0, abs(float(direction[:, 2] @ normal)))))
    geometry = VolumeGeometry(
        image_ids=list(image_ids or []), shape=(nk, int(shape[1]), int(shape[2])),
        origin=a[:3, 3].copy(), spacing=(spacing[0], spacing[1], spacing[2]),
        direction=direction, affine=a, positions=positions, offsets=positions @ normal,
        normal=normal, tilt_degrees=tilt, regular=True)
    if tilt > TILT_TOL_DEG:
        geometry.warnings.append(f"slice axis {tilt:.2f} degrees off the slice normal (sheared)")
    return geometry


def _geometry_of(like: Any, shape: tuple[int, ...], ras: bool) -> VolumeGeometry:
    if like is None:
        return geometry_from_affine(np.eye(4), shape)
    geometry = getattr(like, "geometry", like)  # a volume: take its geometry
    if isinstance(geometry, VolumeGeometry):
        if tuple(geometry.shape) != tuple(shape[:3]):
            raise GeometryError(f"array shape {tuple(shape[:3])} does not match the geometry's "
                                f"{tuple(geometry.shape)}")
        return geometry_from_affine(geometry.affine, shape)
    return geometry_from_affine(like, shape, ras=ras)


# -- user arrays as volumes ------------------------------------------------------------------
_counter = iter(range(1, 1 << 62))


def volume_from_array(array: Any, affine: Any = None, *, ras: bool = False,
                      volume_id: str | None = None, cache: bool = True,
                      ) -> StreamingImageVolume:
    """A loaded volume made from data you already have (a model output, a derived map).

    ``array`` is ``(z, y, x)`` (``(z, y, x, 3)`` for RGB), as medstream and SimpleITK arrays
    are. ``affine`` is a 4x4 LPS affine (``volume.affine``; RAS with ``ras=True``), a
    :class:`VolumeGeometry`, or another volume whose grid the array shares; None: identity.
    The array is used as is (no copy). With ``cache`` the volume is put in the cache under
    ``volume_id`` (default ``array:N``), like Cornerstone's local volumes.
    """
    from .volumes.streaming import StreamingImageVolume

    arr = np.asarray(array)
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != 3):
        raise ValueError(f"a volume array is (z, y, x) or (z, y, x, 3); got shape {arr.shape}")
    geometry = _geometry_of(affine, arr.shape, ras)
    vid = volume_id or f"array:{next(_counter)}"
    volume = StreamingImageVolume(vid, geometry, arr.dtype, color=arr.ndim == 4)
    volume.scalar_data = arr
    n = arr.shape[0]
    volume.loaded_mask = np.ones(n, dtype=bool)
    volume.status.total = volume.status.frames_loaded = n
    volume.status.loaded = True
    if cache:
        cache_loaded_volume(vid, volume)
    return volume


def volume_from_sitk(img: Any, *, volume_id: str | None = None, cache: bool = True,
                     ) -> StreamingImageVolume:
    """A loaded volume from a 3D ``SimpleITK.Image`` (pixels copied, geometry exact)."""
    sitk = require_module("SimpleITK")
    if img.GetDimension() != 3:
        raise ValueError(f"a 3D SimpleITK image is needed, got {img.GetDimension()}D")
    return volume_from_array(sitk.GetArrayFromImage(img), sitk_affine(img),
                             volume_id=volume_id, cache=cache)


# -- nibabel ---------------------------------------------------------------------------------
def volume_from_nifti(img: Any, *, volume_id: str | None = None, cache: bool = True,
                      ) -> StreamingImageVolume | DynamicVolume:
    """A loaded volume from an in-memory nibabel NIfTI image (scl_slope/inter applied in the
    smallest exact dtype, as for NIfTI files); a 4D image gives a :class:`DynamicVolume`."""
    from .codecs.pixels import rescale

    dataobj = img.dataobj
    if hasattr(dataobj, "get_unscaled"):
        raw = np.asanyarray(dataobj.get_unscaled())
        slope, inter = dataobj.slope, dataobj.inter
        slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
        inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
        data = rescale(raw, slope, inter)
    else:
        data = np.asanyarray(dataobj)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim > 4:
        raise ValueError(f"NIfTI with {data.ndim} dimensions: only 3D and 4D are supported")
    affine = np.asarray(img.affine, dtype=float)
    vid = volume_id or f"array:{next(_counter)}"
    if data.ndim == 3:
        return volume_from_array(np.transpose(data, (2, 1, 0)), affine, ras=True,
                                 volume_id=vid, cache=cache)
    from .volumes.dynamic import DynamicVolume

    points = [volume_from_array(np.transpose(data[..., t], (2, 1, 0)), affine, ras=True,
                                volume_id=f"{vid}#t{t + 1}", cache=False)
              for t in range(data.shape[3])]
    dynamic = DynamicVolume(vid, points)
    if cache:
        cache_loaded_volume(vid, dynamic)
    return dynamic


register_factory("array", volume_from_array)
register_factory("sitk", volume_from_sitk)
register_factory("nifti", volume_from_nifti)

__all__ = [
    "as_array", "geometry_from_affine", "monai_meta", "ras_array", "sitk_affine", "to_metatensor",
    "to_sitk", "to_torch", "to_torchio", "volume_from_array", "volume_from_nifti",
    "volume_from_sitk",
]
