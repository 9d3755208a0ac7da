"""Plain paths and object URLs as image IDs: ``/x.dcm`` becomes ``dicomfile:/x.dcm``, ``a.nii.gz``
``nifti:a.nii.gz?slice=0``. Registered with the core (``core.hooks``), so ``load_image(path)``
works without the core knowing these schemes."""

from __future__ import annotations

import os

from ..core.hooks import register_path_resolver
from ..core.registry import image_loaders, scheme_of
from ..errors import ImageLoadError
from ..storage import is_store_url
from .dicomfile import image_id_for


def as_image_id(item: str | os.PathLike[str]) -> str:
    """An image ID for ``item``: IDs with a registered scheme unchanged; a path (``/x.dcm``,
    ``scan/IM1``, a ``Path``) or an object URL (``s3://b/x.dcm``) becomes ``dicomfile:``
    (``nifti:...?slice=0`` for NIfTI).

    A missing path raises ``ImageLoadError`` saying "no such file or folder" — not "no loader for
    scheme ''". Without a scheme and not on disk, an ID still goes to the unknown-scheme
    loader when one is registered.
    """
    path_like = isinstance(item, os.PathLike)
    text = os.fspath(item)
    if not path_like and is_store_url(text) and scheme_of(text) not in image_loaders.schemes():
        if text.lower().endswith((".nii", ".nii.gz")):  # an object URL: a file in a bucket
            return f"nifti:{text}?slice=0"
        return image_id_for(text)
    if not path_like:
        scheme = scheme_of(text)
        if scheme and (scheme in image_loaders.schemes() or len(scheme) > 1 and not
                       text.startswith(("/", ".", "~"))):
            return text
    path = os.path.expanduser(text)
    if not os.path.exists(path):
        if not path_like and image_loaders.has_unknown():
            return text  # the fallback loader may know what this is
        raise ImageLoadError(text, "no such file or folder" + (f": {path}" if path != text else ""))
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise ImageLoadError(text, f"{path} is a folder, not an image: open it with "
                                   "ms.open_volume() or list it with ms.scan_folder()")
    if path.lower().endswith((".nii", ".nii.gz")):
        return f"nifti:{path}?slice=0"
    return image_id_for(path)


register_path_resolver(as_image_id)
