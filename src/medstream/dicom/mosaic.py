"""Mosaic images: one 2D image holding a grid of slices (Siemens MOSAIC, United Imaging VFRAME).

A mosaic is split into one image per tile (``dicomfile:/f.dcm?tile=K``, 1-based), each with its
true position, so a mosaic series becomes a real volume (and a run of mosaics a 4D series):

- Siemens: ``ImageType`` has MOSAIC; the CSA image header gives NumberOfImagesInMosaic and the
  SliceNormalVector. ImagePositionPatient names the corner of the whole mosaic, so the first
  tile's position is shifted by half the unused grid (as dcm2niix and nibabel do) and tile k
  lies k slice spacings along the CSA normal.
- UIH: ``ImageType`` has VFRAME; a private sequence (0065,1051) holds each tile's own
  ImagePositionPatient and acquisition time; the tile size comes from AcquisitionMatrix.

A layout that does not add up (tiles that do not fit the image, a missing CSA header) raises
``MosaicError`` instead of returning one big wrong slice.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DicomParseError
from .enhanced import HeaderLike, seconds_of


class MosaicError(DicomParseError):
    """The image is a mosaic, but its tiles cannot be located reliably."""


@dataclass(frozen=True)
class MosaicLayout:
    vendor: str
    tiles: int
    tile_rows: int
    tile_columns: int
    grid_columns: int
    positions: tuple[tuple[float, float, float], ...]  # ImagePositionPatient of each tile
    acquisition_times: tuple[float | None, ...]

    def module(self, tile: int) -> dict[str, Any]:
        return {"vendor": self.vendor, "tile": tile, "tiles": self.tiles,
                "tile_rows": self.tile_rows, "tile_columns": self.tile_columns,
                "grid_columns": self.grid_columns}


def cut_tile(mosaic: np.ndarray, module: dict[str, Any], tile: int) -> np.ndarray:
    """Tile ``tile`` (1-based) of a decoded mosaic, as a view, by its ``mosaicModule``."""
    r, c = divmod(tile - 1, module["grid_columns"])
    rows, cols = module["tile_rows"], module["tile_columns"]
    return mosaic[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols]


def is_mosaic(ds: HeaderLike) -> bool:
    image_type = ds.get("ImageType") or ()
    types = {str(t).upper() for t in (image_type if not isinstance(image_type, str)
                                      else [image_type])}
    return bool(types & {"MOSAIC", "VFRAME"})


def mosaic_layout(image_id: str, ds: HeaderLike) -> MosaicLayout | None:
    """The tile layout of a mosaic image, None for any other image."""
    if not is_mosaic(ds) or int(ds.get("NumberOfFrames") or 1) > 1:
        return None
    try:
        if str(ds.get("Manufacturer") or "").upper().startswith("UIH") or \
                _uih_items(ds) is not None:
            layout = _uih(image_id, ds)
        else:
            layout = _siemens(image_id, ds)
    except (ValueError, TypeError, OverflowError, IndexError) as exc:  # values of the wrong kind
        raise MosaicError(image_id, f"mosaic geometry unreadable ({type(exc).__name__}: {exc})") \
            from exc
    if not all(np.isfinite(p).all() for p in layout.positions):
        raise MosaicError(image_id, "mosaic tile positions are not finite")
    return layout


def _geometry(image_id: str, ds: HeaderLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    iop, ps = ds.get("ImageOrientationPatient"), ds.get("PixelSpacing")
    if not iop or len(iop) < 6 or not ps:
        raise MosaicError(image_id, "mosaic without ImageOrientationPatient/PixelSpacing: its "
                                    "slices cannot be placed")
    cos = np.array([float(x) for x in iop[:6]])
    return cos[:3], cos[3:], np.cross(cos[:3], cos[3:]), float(ps[0]), float(ps[1])


def _check_grid(image_id: str, ds: HeaderLike, tiles: int, tile_rows: int, tile_cols: int) -> int:
    rows, cols = int(ds.Rows), int(ds.Columns)
    if tile_rows <= 0 or tile_cols <= 0 or rows % tile_rows or cols % tile_cols:
        raise MosaicError(image_id, f"mosaic tiles of {tile_rows}x{tile_cols} do not divide the "
                                    f"{rows}x{cols} image")
    grid_cols = cols // tile_cols
    if tiles <= 0 or grid_cols * (rows // tile_rows) < tiles:
        raise MosaicError(image_id, f"{tiles} mosaic tiles do not fit a {rows // tile_rows}x"
                                    f"{grid_cols} grid of {tile_rows}x{tile_cols}")
    return grid_cols


def _siemens(image_id: str, ds: HeaderLike) -> MosaicLayout:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom warns that its readers are experimental
        from nibabel.nicom import csareader

        try:
            csa = csareader.get_csa_header(ds, "image")
        except Exception as exc:  # a broken CSA header is a broken mosaic
            raise MosaicError(image_id, f"mosaic with an unreadable CSA header ({exc})") from exc
    n = csareader.get_n_mosaic(csa) if csa else None
    normal_csa = csareader.get_slice_normal(csa) if csa else None
    if not n:
        raise MosaicError(image_id, "MOSAIC image without NumberOfImagesInMosaic in its CSA "
                                    "header: the tiles cannot be separated")
    n = int(n)
    grid = math.ceil(math.sqrt(n))
    rows, cols = int(ds.Rows), int(ds.Columns)
    tile_rows, tile_cols = rows // grid, cols // grid
    grid_cols = _check_grid(image_id, ds, n, tile_rows, tile_cols)
    row_dir, col_dir, normal, dr, dc = _geometry(image_id, ds)
    if normal_csa is not None and np.linalg.norm(normal_csa) > 0:
        normal = np.asarray(normal_csa, dtype=float) / np.linalg.norm(normal_csa)
    ipp = ds.get("ImagePositionPatient")
    if not ipp or len(ipp) < 3:
        raise MosaicError(image_id, "mosaic without ImagePositionPatient")
    # IPP is the corner of the whole mosaic: move to the corner of a centred tile.
    first = (np.array([float(x) for x in ipp[:3]]) + row_dir * dc * (cols - tile_cols) / 2
             + col_dir * dr * (rows - tile_rows) / 2)
    dz = float(ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 0)
    if dz <= 0:
        raise MosaicError(image_id, "mosaic without SpacingBetweenSlices/SliceThickness")
    positions = tuple(tuple(float(v) for v in first + k * dz * normal) for k in range(n))
    time = seconds_of(ds.get("AcquisitionTime"))
    return MosaicLayout("siemens", n, tile_rows, tile_cols, grid_cols, positions, (time,) * n)


def _uih_items(ds: HeaderLike) -> Any:
    try:
        block = ds.private_block(0x0065, "Image Private Header")
        return block[0x51].value if 0x51 in block else None
    except (KeyError, ValueError):
        return None


def _uih(image_id: str, ds: HeaderLike) -> MosaicLayout:
    items = _uih_items(ds)
    if not items:
        raise MosaicError(image_id, "UIH VFRAME image without its per-slice sequence (0065,1051)")
    matrix = [int(x) for x in (ds.get("AcquisitionMatrix") or [])]
    if len(matrix) != 4:
        raise MosaicError(image_id, "UIH VFRAME image without AcquisitionMatrix: unknown tile size")
    tile_rows, tile_cols = matrix[0] or matrix[2], matrix[1] or matrix[3]
    n = len(items)
    grid_cols = _check_grid(image_id, ds, n, tile_rows, tile_cols)
    positions = []
    for k, item in enumerate(items):
        ipp = item.get("ImagePositionPatient")
        if not ipp or len(ipp) < 3:
            raise MosaicError(image_id, f"UIH VFRAME tile {k + 1} has no ImagePositionPatient")
        positions.append(tuple(float(x) for x in ipp[:3]))
    times = tuple(seconds_of(item.get("AcquisitionDateTime") or item.get("AcquisitionTime"))
                  for item in items)
    return MosaicLayout("uih", n, tile_rows, tile_cols, grid_cols, tuple(positions), times)


def tile_modules(modules: dict[str, Any], layout: MosaicLayout, tile: int) -> dict[str, Any]:
    """The metadata modules of tile ``tile`` (1-based), derived from the mosaic's."""
    out = {name: dict(mod) if isinstance(mod, dict) else mod for name, mod in modules.items()}
    for name in ("imagePlaneModule", "imagePixelModule"):
        out[name]["rows"], out[name]["columns"] = layout.tile_rows, layout.tile_columns
    out["imagePlaneModule"]["image_position_patient"] = list(layout.positions[tile - 1])
    when = layout.acquisition_times[tile - 1]
    if when is not None:
        out["generalImageModule"]["acquisition_time"] = when
    out["mosaicModule"] = layout.module(tile)
    return out
