"""One volume's values on another's grid (a dose grid on its CT, a label map on a new image),
by world coordinates: trilinear interpolation, values outside the source filled.

Pure numpy, slice by slice (memory: a few slices of coordinates, never the whole grid at once).
"""

from __future__ import annotations

import numpy as np

from .geometry import VolumeGeometry


def resample_array(data: np.ndarray, source: VolumeGeometry, target: VolumeGeometry,
                   fill: float = 0.0, nearest: bool = False) -> np.ndarray:
    """``data`` (z, y, x) on ``source`` sampled at every voxel of ``target`` (float32; the
    source dtype with ``nearest``, for labels)."""
    to_source = np.linalg.inv(np.asarray(source.affine, dtype=float)) @ np.asarray(
        target.affine, dtype=float)
    nz, ny, nx = target.shape[:3]
    sz, sy, sx = data.shape[:3]
    out = np.empty((nz, ny, nx), dtype=data.dtype if nearest else np.float32)
    jj, ii = np.mgrid[0:ny, 0:nx].astype(np.float64)
    for k in range(nz):
        x = to_source[0, 0] * ii + to_source[0, 1] * jj + to_source[0, 2] * k + to_source[0, 3]
        y = to_source[1, 0] * ii + to_source[1, 1] * jj + to_source[1, 2] * k + to_source[1, 3]
        z = to_source[2, 0] * ii + to_source[2, 1] * jj + to_source[2, 2] * k + to_source[2, 3]
        inside = ((x > -0.5) & (x < sx - 0.5) & (y > -0.5) & (y < sy - 0.5)
                  & (z > -0.5) & (z < sz - 0.5))
        if nearest:
            xi, yi, zi = (np.clip(np.rint(c), 0, n - 1).astype(np.intp)
                          for c, n in ((x, sx), (y, sy), (z, sz)))
            out[k] = np.where(inside, data[zi, yi, xi], fill)
            continue
        x, y, z = np.clip(x, 0, sx - 1), np.clip(y, 0, sy - 1), np.clip(z, 0, sz - 1)
        x0, y0, z0 = (np.minimum(np.floor(c).astype(np.intp), max(n - 2, 0))
                      for c, n in ((x, sx), (y, sy), (z, sz)))
        x1, y1, z1 = (np.minimum(c0 + 1, n - 1) for c0, n in ((x0, sx), (y0, sy), (z0, sz)))
        fx, fy, fz = x - x0, y - y0, z - z0
        v = data.astype(np.float64, copy=False)
        c00 = v[z0, y0, x0] * (1 - fx) + v[z0, y0, x1] * fx
        c01 = v[z0, y1, x0] * (1 - fx) + v[z0, y1, x1] * fx
        c10 = v[z1, y0, x0] * (1 - fx) + v[z1, y0, x1] * fx
        c11 = v[z1, y1, x0] * (1 - fx) + v[z1, y1, x1] * fx
        value = (c00 * (1 - fy) + c01 * fy) * (1 - fz) + (c10 * (1 - fy) + c11 * fy) * fz
        out[k] = np.where(inside, value, fill)
    return out
