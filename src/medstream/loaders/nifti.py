"""``nifti:/path.nii[.gz]`` or ``nifti:https://...`` — NIfTI-1/2 as a volume and as slice images.

The volume ID is ``nifti:<source>`` (``?volume=T`` picks a volume of a 4D file, default 0); slice
image IDs are ``nifti:<source>?slice=K`` (0-based, in the volume's slice order). The RAS affine is
turned into LPS like DICOM, scl_slope/scl_inter are applied in the smallest exact dtype, and the
array is (slices, rows, columns) like every medstream volume.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codecs.pixels import rescale
from ..core.image import Image
from ..core.runtime import runtime
from ..dicom.regular import is_regular, open_regular
from ..dicom.store import module_store
from ..errors import ImageLoadError, VolumeError
from ..limits import check_size, inflate
from ..storage import is_remote, storage
from ..volumes.geometry import LPS_TO_RAS, VolumeGeometry
from .http import fetch, http_config
from .shared import SharedResults

SCHEME = "nifti"


@dataclass
class NiftiData:
    source: str
    image: Any  # nibabel image (header + lazy data)
    geometry: VolumeGeometry
    volume_index: int
    n_volumes: int
    slope: float
    inter: float
    key: str = ""  # source and credentials digest: what the shared results are keyed by


_OWN_PARAMS = ("slice", "volume")


def parse_id(item_id: str) -> tuple[str, dict[str, int]]:
    """(source, medstream's own parameters). Any other query parameter (the signature of a
    pre-signed URL) stays in the source, byte for byte and in order."""
    rest = item_id[len(SCHEME) + 1 :] if item_id.startswith(SCHEME + ":") else item_id
    base, _, query = rest.partition("?")
    params: dict[str, int] = {}
    kept: list[str] = []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        if key not in _OWN_PARAMS:
            kept.append(item)
            continue
        try:
            params[key] = int(value)
        except ValueError as exc:
            raise ImageLoadError(item_id, f"invalid {key} {value!r}") from exc
    return base + ("?" + "&".join(kept) if kept else ""), params


def with_param(source: str, key: str, value: int) -> str:
    return f"{source}{'&' if '?' in source else '?'}{key}={value}"


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


_GZIP = b"\x1f\x8b"
_SLACK = 64 * 1024  # extensions and padding a header does not count


def claimed_size(item_id: str, prefix: bytes) -> int:
    """Bytes a NIfTI header says its file holds (vox_offset + voxels x voxel size), checked
    against the budget; ``ImageLoadError`` if ``prefix`` holds no NIfTI header."""
    import io

    import nibabel as nib

    for cls in (nib.Nifti1Header, nib.Nifti2Header):
        try:
            hdr = cls.from_fileobj(io.BytesIO(prefix), check=False)
            shape = hdr.get_data_shape()
            itemsize = hdr.get_data_dtype().itemsize
            offset = int(hdr.get_data_offset())
        except Exception:
            continue
        voxels = 1
        for n in shape:
            voxels *= max(int(n), 0)
        size = offset + voxels * itemsize
        check_size(item_id, f"NIfTI data {'x'.join(map(str, shape))} claimed by the header", size)
        return size
    raise ImageLoadError(item_id, "not a NIfTI-1 or NIfTI-2 file")


def _gunzip_head(item_id: str, data: bytes) -> bytes:
    try:
        return zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data, 1024)
    except zlib.error as exc:
        raise ImageLoadError(item_id, f"not a readable .nii.gz ({exc})") from exc


def _check_holds(item_id: str, claimed: int, have: int) -> None:
    if have < claimed:
        raise ImageLoadError(item_id, f"truncated NIfTI: the header claims {claimed} bytes, "
                                      f"there are {have}")


def _open_bytes(item_id: str, data: bytes) -> Any:
    """A NIfTI from a body: gunzipped only up to the size its header claims (no bomb), and the
    claim compared with what arrived before nibabel allocates anything."""
    import nibabel as nib

    if data[:2] == _GZIP:
        claimed = claimed_size(item_id, _gunzip_head(item_id, data))
        data = inflate(item_id, data, claimed + _SLACK, wbits=zlib.MAX_WBITS | 16,
                       what="gunzipped NIfTI")
    else:
        claimed = claimed_size(item_id, data[:1024])
    _check_holds(item_id, claimed, len(data))
    for cls in (nib.Nifti1Image, nib.Nifti2Image):
        try:
            return cls.from_bytes(data)
        except Exception:
            continue
    raise ImageLoadError(item_id, "not a NIfTI-1 or NIfTI-2 file")


def _open_path(item_id: str, path: str) -> Any:
    import nibabel as nib

    if not os.path.exists(path):
        raise ImageLoadError(item_id, f"no such file or folder: {path}")
    if not is_regular(path):
        raise ImageLoadError(item_id, f"not a regular file: {path}")
    with open_regular(item_id, path) as f:
        head = f.read(1024)
    if head[:2] == _GZIP:
        claimed_size(item_id, _gunzip_head(item_id, head))  # the budget; nibabel reads what is really there
    else:
        _check_holds(item_id, claimed_size(item_id, head), os.path.getsize(path))
    try:
        img = nib.load(path)
    except Exception as exc:
        raise ImageLoadError(item_id, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageLoadError(item_id, f"not a NIfTI file ({type(img).__name__})")
    return img


def nifti_geometry(item_id: str, img: Any, source: str) -> VolumeGeometry:
    shape = img.shape
    if len(shape) < 2:
        raise VolumeError(f"{item_id}: NIfTI with {len(shape)} dimension(s) is not an image")
    ni, nj = shape[0], shape[1]
    nk = shape[2] if len(shape) > 2 else 1
    affine = LPS_TO_RAS @ np.asarray(img.affine, dtype=float)  # RAS -> LPS (its own inverse)
    cols = affine[:3, :3]
    spacing = tuple(float(np.linalg.norm(cols[:, a])) or 1.0 for a in range(3))
    direction = cols / np.array(spacing)
    normal = np.cross(direction[:, 0], direction[:, 1])
    positions = affine[:3, 3] + np.outer(np.arange(nk), cols[:, 2])
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(direction[:, 2] @ normal))))))
    return VolumeGeometry(
        image_ids=[f"{SCHEME}:{with_param(source, 'slice', k)}" for k in range(nk)],
        shape=(nk, nj, ni), origin=affine[:3, 3].copy(), spacing=spacing,  # type: ignore[arg-type]
        direction=direction, affine=affine, positions=positions, offsets=positions @ normal,
        normal=normal, tilt_degrees=tilt, regular=True,
    )


async def open_nifti(item_id: str, **http: Any) -> NiftiData:
    """Header and lazy data; a URL is fetched once (shared by its volume and slice IDs)."""
    source, params = parse_id(item_id)
    creds = http_config(**http).credentials_key() if _is_url(source) else ""

    async def get() -> NiftiData:
        if _is_url(source):
            body = (await fetch(source, item_id, config=http_config(**http))).content
            img = await runtime.to_thread(_open_bytes, item_id, body)
            del body
        elif is_remote(source):  # an object store: read whole (the byte budget is checked first)
            img = await runtime.to_thread(
                lambda: _open_bytes(item_id, storage.read_range(
                    item_id, source, 0, storage.info(source, item_id).size)))
        else:
            img = await runtime.to_thread(_open_path, item_id, source)
        geometry = nifti_geometry(item_id, img, source)
        n_vol = int(np.prod(img.shape[3:])) if len(img.shape) > 3 else 1
        if n_vol > 1:
            geometry.warnings.append(
                f"4D NIfTI with {n_vol} volumes; volume 0 used unless ?volume=T is given")
        slope, inter = img.dataobj.slope, img.dataobj.inter
        data = NiftiData(source, img, geometry, 0, n_vol,
                         1.0 if slope is None or not np.isfinite(slope) else float(slope),
                         0.0 if inter is None or not np.isfinite(inter) else float(inter))
        data.key = f"{source}\n{creds}"
        _register_slice_metadata(data)
        return data

    data = await _opened.get(f"{source}\n{creds}", get)  # never shared across credentials
    t = params.get("volume", 0)
    if not 0 <= t < data.n_volumes:
        raise ImageLoadError(item_id, f"volume {t} out of range 0..{data.n_volumes - 1}")
    return data


_opened: SharedResults[NiftiData] = SharedResults("NIfTI headers", max_items=16)
_arrays: SharedResults[np.ndarray] = SharedResults(
    "NIfTI arrays", max_items=4, size_of=lambda a: int(a.nbytes), max_bytes=1024**3)


def _register_slice_metadata(data: NiftiData) -> None:
    g = data.geometry
    row_dir, col_dir = g.direction[:, 0], g.direction[:, 1]
    dtype = np.dtype(data.image.get_data_dtype())
    for k, image_id in enumerate(g.image_ids):
        module_store.put(image_id, {
            "imagePlaneModule": {
                "rows": g.shape[1], "columns": g.shape[2],
                "image_position_patient": [float(x) for x in g.positions[k]],
                "image_orientation_patient": [float(x) for x in (*row_dir, *col_dir)],
                "row_cosines": [float(x) for x in row_dir],
                "column_cosines": [float(x) for x in col_dir],
                "pixel_spacing": [g.spacing[1], g.spacing[0]],
                "row_pixel_spacing": g.spacing[1], "column_pixel_spacing": g.spacing[0],
                "slice_thickness": g.spacing[2], "frame_of_reference_uid": None,
            },
            "imagePixelModule": {"samples_per_pixel": 1, "photometric_interpretation": "MONOCHROME2",
                                 "rows": g.shape[1], "columns": g.shape[2],
                                 "bits_allocated": dtype.itemsize * 8,
                                 "bits_stored": dtype.itemsize * 8,
                                 "pixel_representation": int(dtype.kind == "i")},
            "modalityLutModule": {"rescale_slope": data.slope, "rescale_intercept": data.inter},
            "generalSeriesModule": {"series_instance_uid": f"nifti:{data.source}",
                                    "modality": None},
        })


def read_volume(data: NiftiData, t: int = 0) -> np.ndarray:
    """The scaled volume ``t`` as (slices, rows, columns): a transposed view of nibabel's array."""
    raw = np.asanyarray(data.image.dataobj.get_unscaled())
    if raw.ndim > 3:
        raw = raw.reshape(raw.shape[:3] + (-1,))[..., t]
    elif raw.ndim == 2:
        raw = raw[:, :, None]
    if raw.dtype.kind == "V" or raw.dtype.names:
        raise ImageLoadError(f"{SCHEME}:{data.source}", f"unsupported NIfTI data type {raw.dtype}")
    return np.transpose(rescale(raw, data.slope, data.inter), (2, 1, 0))


async def volume_array(item_id: str, **http: Any) -> tuple[NiftiData, np.ndarray]:
    data = await open_nifti(item_id, **http)
    t = parse_id(item_id)[1].get("volume", 0)

    async def get() -> np.ndarray:
        return await runtime.to_thread(read_volume, data, t)

    return data, await _arrays.get(f"{data.key}#{t}", get)  # per source and credentials


async def load_nifti_slice(image_id: str, **http: Any) -> Image:
    source, params = parse_id(image_id)
    if "slice" not in params:
        raise ImageLoadError(image_id, "a NIfTI image ID needs ?slice=K (or load it as a volume)")
    data, arr = await volume_array(image_id, **http)
    k = params["slice"]
    if not 0 <= k < arr.shape[0]:
        raise ImageLoadError(image_id, f"slice {k} out of range 0..{arr.shape[0] - 1}")
    g = data.geometry
    return Image.from_array(
        image_id, np.ascontiguousarray(arr[k]), slope=data.slope, intercept=data.inter,
        row_pixel_spacing=g.spacing[1], column_pixel_spacing=g.spacing[0],
    )


async def preload_nifti_metadata(image_ids: list[str], **http: Any) -> None:
    sources = {parse_id(i)[0]: i for i in image_ids}
    for item_id in sources.values():
        await open_nifti(item_id, **http)


def clear() -> None:
    _opened.clear()
    _arrays.clear()


__all__ = ["load_nifti_slice", "preload_nifti_metadata"]
