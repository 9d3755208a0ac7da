"""Conversions of loaded volumes to the Python imaging stack: SimpleITK, torch, MONAI, TorchIO.

They read only a volume's array and geometry, so the volume classes call them without importing
anything above their layer (``medstream.interop`` builds volumes from those libraries' objects).
Axis order: medstream arrays are ``(z, y, x)``; ``volume.affine`` maps ``(x, y, z)`` to LPS mm,
``geometry.affine_ras`` to RAS; nibabel, MONAI and TorchIO get ``(x, y, z)`` with the RAS affine.
Each optional library is imported only by the function that needs it
(``pip install 'medstream[interop]'``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# dtypes torch stores but cannot compute on (no arithmetic kernels): converted by default
_TORCH_UNSUPPORTED = ("uint16", "uint32", "uint64")


def require_module(module: str, extra: str = "interop") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]  # monai.data comes with the monai package
        raise ImportError(f"{package} is needed for this conversion: "
                          f"pip install 'medstream[{extra}]' (or pip install {package})") from exc


# -- SimpleITK -------------------------------------------------------------------------------
def to_sitk(volume: Any) -> Any:
    """A ``SimpleITK.Image`` (a copy) with LPS origin, spacing and direction.

    A sheared geometry (gantry tilt) is written with a non-orthogonal direction, which ITK
    stores but some ITK filters refuse; resample it first for those.
    """
    sitk = require_module("SimpleITK")
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


def torch_dtype(np_dtype: Any, dtype: Any = None) -> Any:
    """The torch dtype for a conversion: ``dtype`` if given (a torch or numpy dtype, or its
    name), else the array's own, except unsigned 16/32/64-bit, which torch stores but cannot
    compute on: float32 (exact for 16-bit values)."""
    torch = require_module("torch")
    if dtype is None:
        return torch.float32 if np.dtype(np_dtype).name in _TORCH_UNSUPPORTED else None
    if isinstance(dtype, torch.dtype):
        return dtype
    name = np.dtype(dtype).name
    return getattr(torch, {"bool": "bool", "float64": "float64"}.get(name, name))


def _tensor(volume: Any, array: np.ndarray, dtype: Any = None) -> Any:
    torch = require_module("torch")
    want = torch_dtype(array.dtype, dtype)
    on_device = getattr(volume, "device", "cpu") != "cpu"
    to_torch = getattr(volume, "to_torch", None)
    if on_device and callable(to_torch):  # the GPU package's conversion: stays on the device
        t = to_torch()
        t = t.permute(*reversed(range(t.ndim))) if t.ndim == array.ndim else torch.as_tensor(array)
        return t if want is None else t.to(want)
    t = torch.as_tensor(np.ascontiguousarray(array))
    return t if want is None else t.to(want)


def to_torch(volume: Any, dtype: Any = None) -> Any:
    """A torch tensor ``(z, y, x)`` (``(t, z, y, x)``, ``(z, y, x, 3)``), sharing the volume's
    memory when the dtype stays; uint16/32/64 become float32 unless ``dtype`` says otherwise."""
    torch = require_module("torch")
    data = volume.scalar_data
    if not isinstance(data, np.ndarray):  # a GPU array: DLPack, it stays on the device
        t = torch.from_dlpack(data)
        want = torch_dtype(np.dtype(str(data.dtype)), dtype)
        return t if want is None else t.to(want)
    want = torch_dtype(data.dtype, dtype)
    t = torch.from_numpy(data) if data.flags.writeable else torch.as_tensor(data.copy())
    return t if want is None else t.to(want)


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


def to_metatensor(volume: Any, *, channel_first: bool = True, dtype: Any = None) -> Any:
    """A MONAI ``MetaTensor``: ``(1, x, y, z)`` (``(3, x, y, z)`` for RGB; without the channel
    axis with ``channel_first=False``) carrying the RAS affine, as ``LoadImage`` gives it;
    ``dtype`` as for :func:`to_torch` (uint16 becomes float32 by default)."""
    monai_data = require_module("monai.data")
    arr, meta = monai_meta(volume)
    tensor = _tensor(volume, arr, dtype)
    if channel_first and _no_channel(meta):
        tensor = tensor[None]
    elif channel_first and meta["original_channel_dim"] == -1:  # 4D: time becomes the channel
        tensor = tensor.permute(3, 0, 1, 2)
    return monai_data.MetaTensor(tensor, meta=meta)  # the affine travels in meta, once


def to_torchio(volume: Any, *, label: bool = False, dtype: Any = None) -> Any:
    """A TorchIO ``ScalarImage`` (``LabelMap`` with ``label=True``): ``(C, x, y, z)`` tensor
    with the RAS affine."""
    tio = require_module("torchio")
    arr, meta = monai_meta(volume)
    tensor = _tensor(volume, arr, dtype if dtype is not None or not label else "int32")
    if _no_channel(meta):
        tensor = tensor[None]
    elif meta["original_channel_dim"] == -1:
        tensor = tensor.permute(3, 0, 1, 2)
    cls = tio.LabelMap if label else tio.ScalarImage
    return cls(tensor=tensor, affine=meta["affine"])
