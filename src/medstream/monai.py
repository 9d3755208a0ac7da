"""A MONAI ``ImageReader`` backed by medstream: ``LoadImage(reader=MedstreamReader())``.

Reads what ``ms.open_volume`` reads — a DICOM folder, a list of DICOM files (one volume), a
DICOMweb study/series URL, a NIfTI file or URL — with medstream's slice ordering and geometry
checks, and hands MONAI the ``(x, y, z)`` array with the RAS affine, as its ITK reader does.

Needs MONAI (and torch): ``pip install 'medstream[interop]' monai``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader

from .interop import monai_meta

# MONAI's LoadImage passes names through pathlib, which folds "https://h" into "https:/h".
_FOLDED_URL = re.compile(r"^((?:wadors:)?https?):/(?!/)")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", "")


def _source(name: Any) -> str:
    return _FOLDED_URL.sub(r"\1://", os.fspath(name))


def _is_dicom_file(src: str) -> bool:
    return os.path.isfile(src) and os.path.splitext(src)[1].lower() in _DICOM_SUFFIXES


def _is_segmentation(src: str) -> bool:
    """A local SEG or RTSTRUCT (its header says so)."""
    if not os.path.isfile(src):
        return False
    import pydicom

    try:
        return pydicom.dcmread(src, stop_before_pixels=True).get("Modality") in ("SEG", "RTSTRUCT")
    except Exception:
        return False


class MedstreamReader(ImageReader):
    """``options`` go to :func:`medstream.open_volume` (``series``, ``spacing``, ``tilt``,
    ``prescale``, ``token``, ``headers``...), e.g. ``MedstreamReader(series="largest")``.
    ``reference``: the series (folder or DICOMweb URL) a SEG or RTSTRUCT is read onto; such a
    file then loads as its labelmap on that grid (0 background, else segment numbers)."""

    def __init__(self, reference: Any = None, **options: Any) -> None:
        super().__init__()
        from .options import check_options

        check_options("MedstreamReader", options, "open_volume")
        self.options = options
        self.reference = reference

    def verify_suffix(self, filename: Sequence[Any] | Any) -> bool:
        from .discovery.source import dicomweb_url, is_nifti

        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        for name in names:
            src = _source(name)
            if not (os.path.isdir(src) or is_nifti(src) or dicomweb_url(src) is not None
                    or _is_dicom_file(src)):
                return False
        return True

    def read(self, data: Sequence[Any] | Any, **kwargs: Any) -> Any:
        """A volume, or a list of volumes for several folders / NIfTI files / URLs (stacked as
        channels by ``get_data``); several DICOM files together make one volume."""
        from .discovery.source import open_volume

        options = {**self.options, **kwargs}
        if isinstance(data, (str, os.PathLike)) and _is_segmentation(_source(data)):
            from .segmentation import open_segmentation

            grid = None if self.reference is None else open_volume(_source(self.reference),
                                                                   **options)
            return open_segmentation(_source(data), reference=grid).labelmap
        if isinstance(data, (str, os.PathLike)):
            return open_volume(_source(data), **options)
        sources = [_source(d) for d in data]
        if sources and all(_is_dicom_file(s) for s in sources):
            return open_volume(sources, **options)
        volumes = [open_volume(s, **options) for s in sources]
        return volumes if len(volumes) != 1 else volumes[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict[str, Any]]:
        if not isinstance(img, (list, tuple)):
            return monai_meta(img)
        arrays, metas = zip(*(monai_meta(v) for v in img))
        first = metas[0]
        for m in metas[1:]:
            if not np.allclose(m["affine"], first["affine"], atol=1e-4) or tuple(
                    m["spatial_shape"]) != tuple(first["spatial_shape"]):
                raise ValueError("volumes read together are stacked as channels and must share "
                                 "one grid (shape and affine)")
        meta = dict(first, original_channel_dim=0)
        return np.stack(arrays), meta


__all__ = ["MedstreamReader"]
