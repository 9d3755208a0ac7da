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

from .errors import GeometryError
from .volumes.geometry import LPS_TO_RAS, TILT_TOL_DEG, VolumeGeometry

if TYPE_CHECKING:
    from .volumes.dynamic import DynamicVolume
    from .volumes.streaming import StreamingImageVolume

ORTHOGONAL_TOL = 1e-4  # in-plane axes (row and column directions) must be perpendicular


def _require(module: str, extra: str = "interop") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]  # monai.data comes with the monai package
        raise ImportError(f"{package} is needed for this conversion: "
                          f"pip install 'medstream[{extra}]' (or pip install {package})") from exc


# -- numpy -----------------------------------------------------------------------------------
def as_array(data: np.ndarray, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
    """``__array__`` for volumes and images: the array itself (no copy) unless asked."""
    if dtype is not None and np.dtype(dtype) != data.dtype:
        return data.astype(dtype)
    return data.copy() if copy else data


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
        _put_in_cache(vid, volume)
    return volume


def _put_in_cache(volume_id: str, volume: Any) -> None:
    from .core.cache import cache
    from .core.loading import _make_volume_load

    async def ready(_: str, **__: Any) -> Any:
        return volume

    from .core.runtime import runtime

    with cache._lock:
        cache.remove(volume_id)
        obj = _make_volume_load(volume_id, ready, {}, cached=True)
        cache.put(volume_id, "volume", obj)
    if not runtime.in_loop_thread():  # resolves at once; on the loop itself it cannot be waited on
        obj.result(30)


# -- SimpleITK -------------------------------------------------------------------------------
def to_sitk(volume: Any) -> Any:
    """A ``SimpleITK.Image`` (a copy) with LPS origin, spacing and direction.

    A sheared geometry (gantry tilt) is written with a non-orthogonal direction, which ITK
    stores but some ITK filters refuse; resample it first for those.
    """
    sitk = _require("SimpleITK")
    data = np.asarray(volume.scalar_data)
    if data.ndim == 4 and not getattr(volume, "color", False):
        raise ValueError("a 4D (t, z, y, x) volume: convert its time_points one by one")
    img = sitk.GetImageFromArray(data, isVector=data.ndim == 4)
    g = volume.geometry
    img.SetOrigin(tuple(float(x) for x in g.origin))
    img.SetSpacing(tuple(float(s) for s in g.spacing))
    img.SetDirection(tuple(float(x) for x in np.asarray(g.direction).ravel()))
    return img


def sitk_affine(img: Any) -> np.ndarray:
    """The 4x4 LPS affine of a 3D SimpleITK image (index (x, y, z) -> mm)."""
    direction = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = direction @ np.diag(np.array(img.GetSpacing(), dtype=float))
    a[:3, 3] = img.GetOrigin()
    return a


def volume_from_sitk(img: Any, *, volume_id: str | None = None, cache: bool = True,
                     ) -> StreamingImageVolume:
    """A loaded volume from a 3D ``SimpleITK.Image`` (pixels copied, geometry exact)."""
    sitk = _require("SimpleITK")
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
        _put_in_cache(vid, dynamic)
    return dynamic


# -- torch / MONAI / TorchIO ---------------------------------------------------------------------
def ras_array(volume: Any) -> np.ndarray:
    """The voxels as ``(x, y, z)`` (``(x, y, z, t)`` for a 4D volume), matching
    ``geometry.affine_ras`` — the layout nibabel, MONAI and TorchIO use. A view, no copy."""
    data = np.asarray(volume.scalar_data)
    if getattr(volume, "color", False):  # (z, y, x, 3) -> (3, x, y, z): channel first
        return np.transpose(data, (3, 2, 1, 0))
    if data.ndim == 4:  # (t, z, y, x) -> (x, y, z, t)
        return np.transpose(data, (3, 2, 1, 0))
    return np.transpose(data, (2, 1, 0))


def _tensor(volume: Any, array: np.ndarray) -> Any:
    torch = _require("torch")
    to_torch = getattr(volume, "to_torch", None)
    if callable(to_torch):  # the GPU package's conversion, when present
        t = to_torch()
        return t.permute(*reversed(range(t.ndim))) if t.ndim == array.ndim else torch.as_tensor(array)
    return torch.as_tensor(np.ascontiguousarray(array))


def monai_meta(volume: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """(array, meta) as MONAI's readers return them: ``(x, y, z)`` array (channel first for
    RGB), RAS ``affine``, ``spatial_shape``, ``original_channel_dim`` and ``space``."""
    arr = ras_array(volume)
    color = bool(getattr(volume, "color", False))
    spatial = arr.shape[1:] if color else arr.shape[:3]
    affine = np.asarray(volume.geometry.affine_ras, dtype=np.float64)
    meta: dict[str, Any] = {
        "affine": affine.copy(),
        "original_affine": affine.copy(),
        "spatial_shape": np.asarray(spatial),
        # MONAI's own readers write NaN for "no channel axis" (older ones "no_channel")
        "original_channel_dim": 0 if color else (-1 if arr.ndim == 4 else float("nan")),
        "space": "RAS",
        "spacing": np.asarray(volume.geometry.spacing),
        "filename_or_obj": getattr(volume, "volume_id", ""),
    }
    return arr, meta


def _no_channel(meta: dict[str, Any]) -> bool:
    dim = meta["original_channel_dim"]
    return isinstance(dim, float) and math.isnan(dim)


def to_metatensor(volume: Any, *, channel_first: bool = True) -> Any:
    """A MONAI ``MetaTensor``: ``(1, x, y, z)`` (``(3, x, y, z)`` for RGB; without the channel
    axis with ``channel_first=False``) carrying the RAS affine, as ``LoadImage`` gives it."""
    monai_data = _require("monai.data")
    arr, meta = monai_meta(volume)
    tensor = _tensor(volume, arr)
    if channel_first and _no_channel(meta):
        tensor = tensor[None]
    elif channel_first and meta["original_channel_dim"] == -1:  # 4D: time becomes the channel
        tensor = tensor.permute(3, 0, 1, 2)
    return monai_data.MetaTensor(tensor, meta=meta)  # the affine travels in meta, once


def to_torchio(volume: Any, *, label: bool = False) -> Any:
    """A TorchIO ``ScalarImage`` (``LabelMap`` with ``label=True``): ``(C, x, y, z)`` tensor
    with the RAS affine."""
    tio = _require("torchio")
    arr, meta = monai_meta(volume)
    tensor = _tensor(volume, arr)
    if _no_channel(meta):
        tensor = tensor[None]
    elif meta["original_channel_dim"] == -1:
        tensor = tensor.permute(3, 0, 1, 2)
    cls = tio.LabelMap if label else tio.ScalarImage
    return cls(tensor=tensor, affine=meta["affine"])


__all__ = [
    "as_array", "geometry_from_affine", "monai_meta", "ras_array", "sitk_affine", "to_metatensor",
    "to_sitk", "to_torchio", "volume_from_array", "volume_from_nifti", "volume_from_sitk",
]
