"""One call from a source to a loaded volume: a folder, a DICOM file, a DICOMweb study or series
URL, a NIfTI file or URL, or a list of image IDs.

The HTTP and DICOMweb code (and httpx) is imported only for URLs: opening a folder does not
wait for it.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..core.loading import create_and_cache_volume
from ..core.runtime import runtime
from ..errors import MedstreamError, VolumeError
from ..loaders.dicomfile import absolute, read_file_header, read_file_modules
from ..storage import is_remote, local_path, storage
from ..volumes.dynamic import DynamicVolume
from ..volumes.streaming import StreamingImageVolume, VolumeProgress
from .folder import SeriesInfo, scan_folder_async

_SERIES_RE = re.compile(r"/studies/[^/]+/series/[^/]+/?$")
_STUDY_RE = re.compile(r"/studies/[^/]+/?$")


def is_nifti(source: str) -> bool:
    plain = source.split("?", 1)[0].lower()
    return source.startswith("nifti:") or plain.endswith((".nii", ".nii.gz"))


def is_root_url(url: str) -> bool:
    """Whether an http(s) URL looks like a DICOMweb root (``.../dicom-web``): no
    ``/studies/`` path, no file name with an extension, not a WADO-URI query."""
    path, _, query = url.partition("?")
    path = path.split("://", 1)[-1]
    last = path.rstrip("/").rsplit("/", 1)[-1] if "/" in path else ""
    return ("/studies" not in path and "." not in last and "requesttype=" not in query.lower()
            and "/instances" not in path and "/series" not in path)


def dicomweb_url(source: str) -> tuple[str, str] | None:
    """(kind, URL) for an http(s) source, ``wadors:`` prefix allowed: kind is "study",
    "series" or "other"; None for anything that is not a URL."""
    url = source[len("wadors:"):] if source.startswith("wadors:") else source
    if not url.startswith(("http://", "https://")):
        return None
    from ..loaders.wadors import url_join

    url = url_join(url, "")  # no trailing slash; a query (access_token=...) is kept
    path = url.split("?", 1)[0]
    kind = "study" if _STUDY_RE.search(path) else "series" if _SERIES_RE.search(path) else "other"
    return kind, url


def _pick(candidates: list[tuple[str, int]], series: str | int | None, where: str) -> int:
    """Index of the chosen (name, images) series: the only one, ``"largest"``, a UID/key, or
    an index."""
    names = [name for name, _ in candidates]
    sizes = [size for _, size in candidates]
    if not names:
        raise VolumeError(f"{where}: no image series found")
    if series is None:
        if len(names) == 1:
            return 0
        listing = "; ".join(f"{n} ({s} images)" for n, s in zip(names, sizes))
        raise VolumeError(f"{where}: {len(names)} series found, choose one with series=UID, "
                          f"an index or 'largest': {listing}")
    if series == "largest":
        return max(range(len(names)), key=lambda i: sizes[i])
    if isinstance(series, int):
        if not 0 <= series < len(names):
            raise VolumeError(f"{where}: series index {series} out of range 0..{len(names) - 1}")
        return series
    exact = [i for i, n in enumerate(names) if n == series]
    if exact:
        return exact[0]
    matches = [i for i, n in enumerate(names) if n.split("#")[0] == series]
    if not matches:
        raise VolumeError(f"{where}: series {series!r} not found")
    if len(matches) > 1:  # one UID split into stacks: never silently the first
        listing = "; ".join(f"{names[i]} ({sizes[i]} images)" for i in matches)
        raise VolumeError(f"{where}: series {series!r} is split into {len(matches)} stacks "
                          f"(size, orientation or acquisition differ); choose one: {listing}")
    return matches[0]


def _in_memory(source: Any) -> bool:
    if isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        return True
    dataset = sys.modules.get("pydicom.dataset")  # a Dataset exists only once pydicom is loaded
    return dataset is not None and isinstance(source, dataset.Dataset)


async def resolve_source(source: str | os.PathLike[str] | Sequence[Any], *,
                         series: str | int | None = None, dynamic: bool = False,
                         **http: Any) -> tuple[str, list[str] | None]:
    """(volume ID, image IDs) for a source; image IDs are None for a NIfTI volume.

    With ``dynamic``, a folder's series is chosen by SeriesInstanceUID and every acquisition
    of it (all its "#n" parts) is returned, for a 4D volume.
    """
    prefix = "dynamic:" if dynamic else "volume:"
    if _in_memory(source):  # one multi-frame object in memory
        source = [source]  # type: ignore[list-item]
    if not isinstance(source, (str, os.PathLike)):
        from ..loaders.memory import as_image_ids
        from ..loaders.paths import as_image_id

        ids = [i for s in source for i in (as_image_ids(s) or [as_image_id(s)])]
        import hashlib

        digest = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
        return f"{prefix}{digest}", ids
    src = local_path(os.fspath(source))
    if is_nifti(src):
        vid = src if src.startswith("nifti:") else (
            "nifti:" + (src if src.startswith(("http://", "https://")) else absolute(src)))
        return vid, None
    web = dicomweb_url(src)
    if web is not None:
        from ..loaders.wadors import url_join, wadors_image_ids_async

        kind, url = web
        if kind == "study":
            listing = await _study_series(url, **http)
            url = url_join(url, f"/series/{listing[_pick(listing, series, url)][0]}")
        elif kind != "series":
            raise VolumeError(f"{src}: not a DICOMweb study or series URL "
                              f"(<root>/studies/S[/series/Se]){_root_hint(url)}")
        return _series_volume_id(prefix, url), await wadors_image_ids_async(url, **http)
    if await _is_folder(src):
        scan = await scan_folder_async(src)
        if dynamic:
            by_uid: dict[str, list[str]] = {}
            for s in scan.series:
                by_uid.setdefault(s.key.split("#")[0], []).extend(s.image_ids)
            names = list(by_uid)
            k = _pick([(n, len(by_uid[n])) for n in names], series, src)
            return f"{prefix}{absolute(src)}#{names[k]}", by_uid[names[k]]
        k = _pick([(s.key, s.n_images) for s in scan.series], series, src)
        chosen = scan.series[k]
        return f"{prefix}{absolute(src)}#{chosen.key}", chosen.image_ids
    if is_remote(src) or os.path.isfile(src):
        ids, _ = await runtime.to_thread(read_file_header, src)
        return f"{prefix}{absolute(src)}", ids
    if "://" not in src:
        raise MedstreamError(f"{src}: no such file or folder")
    raise MedstreamError(f"{src}: not a folder, file, NIfTI or DICOMweb URL")


async def _is_folder(src: str) -> bool:
    return await runtime.to_thread(is_folder, src)


def is_folder(src: str) -> bool:
    """A local folder, or an object-store prefix (a name ending in "/", or a "directory")."""
    src = local_path(src)
    if is_remote(src):
        return src.endswith("/") or storage.isdir(src)
    return os.path.isdir(src)


def _root_hint(url: str) -> str:
    return ("; it looks like a DICOMweb root: find its studies and series with "
            "ms.dicomweb.search_studies() or `medstream find`") if is_root_url(url) else ""


async def describe_source_async(source: str | os.PathLike[str], **http: Any) -> list[SeriesInfo]:
    """The series a folder, file or DICOMweb study/series URL holds, with geometry reports."""
    from ..core.metadata import metadata
    from ..volumes.geometry import SliceInfo
    from .folder import group_slices

    src = local_path(os.fspath(source))
    web = dicomweb_url(src)
    if web is not None:
        from ..loaders.wadors import url_join, wadors_image_ids_async

        kind, url = web
        if kind == "study":
            urls = [url_join(url, f"/series/{uid}") for uid, _ in await _study_series(url, **http)]
        elif kind == "series":
            urls = [url]
        else:
            raise VolumeError(f"{src}: not a DICOMweb study or series URL{_root_hint(url)}")
        ids = [i for u in urls for i in await wadors_image_ids_async(u, **http)]
    elif await _is_folder(src):
        return (await scan_folder_async(src)).series
    elif is_remote(src) or os.path.isfile(src):
        found, _ = await runtime.to_thread(read_file_modules, src)
        return await runtime.to_thread(
            group_slices, [SliceInfo.from_modules(i, m) for i, m in found.items()])
    else:
        raise MedstreamError(f"{src}: not a folder, file or DICOMweb URL")
    slices = [SliceInfo.from_modules(i, metadata.get("all", i) or {}) for i in ids]
    return await runtime.to_thread(group_slices, slices)


async def _study_series(study_url: str, **http: Any) -> list[tuple[str, int]]:
    """(SeriesInstanceUID, number of instances) of a study, via QIDO-RS."""
    from ..loaders.http import fetch, http_config
    from ..loaders.wadors import url_join

    resp = await fetch(url_join(study_url, "/series"), f"wadors:{study_url}",
                       accept="application/dicom+json", config=http_config(**http))
    out = []
    for item in resp.json() or []:
        uid = (item.get("0020000E") or {}).get("Value", [None])[0]
        count = (item.get("00201209") or {}).get("Value", [0])[0]
        if uid:
            out.append((str(uid), int(count or 0)))
    return out


async def open_volume_async(
    source: str | os.PathLike[str] | Sequence[Any],
    *,
    series: str | int | None = None,
    dynamic: bool = False,
    load: bool = True,
    order: str = "interleaved",
    on_progress: Callable[[VolumeProgress], Any] | None = None,
    device: str = "cpu",
    stages: Any = None,
    **options: Any,
) -> StreamingImageVolume | DynamicVolume:
    """Resolve ``source``, create (or reuse) its cached volume and, with ``load``, stream it.

    ``source`` may also be a list of image IDs, paths, DICOM bytes, file-like objects or
    pydicom ``Dataset`` s (those are registered as in-memory sources, see ``ms.register_bytes``).

    ``dynamic=True`` returns a :class:`DynamicVolume` (t, z, y, x) holding every acquisition
    of the series (time points, echoes, directions) in acquisition order.

    ``options`` go to the volume loader (``spacing``, ``tilt``, ``prescale``) and to HTTP
    (``token``, ``headers``, ``verify``, ``timeout``). Cancelling the caller cancels the load.
    ``device="cuda"``: the array is a CuPy array on the GPU, frames decoded there in batches
    (``pip install 'medstream[gpu]'``; raises ``GpuUnavailableError`` at once without it).
    ``stages="progressive"`` (or a list of ``ms.Stage``) loads in stages (see
    ``volume.load``); ``decimate=(kx, ky, kz)`` reads every kz-th slice, reduced in-plane.
    """
    from ..options import HTTP_OPTIONS, check_options

    check_options("open_volume", dict(options, series=series, dynamic=dynamic, load=load,
                                      order=order), "open_volume")
    if stages is not None and dynamic:
        raise VolumeError("stages= is for 3D volumes; a dynamic volume loads its frames whole")
    if stages is not None and options.get("decimate") is not None:
        raise VolumeError("stages= and decimate= do not combine: a decimated volume is the "
                          "quick look itself")
    if device != "cpu":
        from ..gpu import check_device

        device = check_device(device)
    http = {k: v for k, v in options.items() if k in HTTP_OPTIONS}
    early = _series_request(source, options, http) if (
        load and not dynamic and stages is None and device == "cpu") else None
    try:
        return await _open_volume(source, series, dynamic, load, order, on_progress, device,
                                  stages, http, options)
    finally:
        if early is not None:  # closed if no load claimed it (it failed, or took another path)
            await early.release()


def _series_request(source: Any, options: dict[str, Any], http: dict[str, Any]) -> Any:
    """The whole-series request of a DICOMweb series volume, sent now, beside its metadata
    request (see ``loaders/early.py``); None where the load would not make it (a volume
    already cached, frame requests asked for, a decimated volume, another event loop)."""
    from ..core.scope import current_cache
    from ..options import variant_suffix

    web = dicomweb_url(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else None
    if (web is None or web[0] != "series" or not runtime.in_loop_thread()
            or options.get("retrieve", "auto") != "auto" or options.get("decimate") is not None):
        return None
    if current_cache().get_live(_series_volume_id("volume:", web[1]) + variant_suffix(options),
                                "volume") is not None:
        return None
    from ..loaders.wadors import begin_series_request

    return begin_series_request(web[1], **http)


def _series_volume_id(prefix: str, url: str) -> str:
    return f"{prefix}wadors:{url}"


async def _open_volume(source: str | os.PathLike[str] | Sequence[Any], series: str | int | None,
                       dynamic: bool, load: bool, order: str,
                       on_progress: Callable[[VolumeProgress], Any] | None, device: str,
                       stages: Any, http: dict[str, Any], options: dict[str, Any],
                       ) -> StreamingImageVolume | DynamicVolume:
    from ..options import variant_suffix

    volume_id, image_ids = await resolve_source(source, series=series, dynamic=dynamic, **http)
    if image_ids is not None:  # result-changing options make a different cached volume
        volume_id += variant_suffix(options)
        options = dict(options, image_ids=image_ids)
    if device != "cpu":
        if image_ids is None:
            raise VolumeError(f"{volume_id}: device={device!r} is for DICOM series (files, "
                              "DICOMweb); load a NIfTI volume on the CPU and copy it")
        volume_id, options = f"{volume_id}@{device}", dict(options, device=device)
    created = create_and_cache_volume(volume_id, **options)
    volume: StreamingImageVolume | DynamicVolume = await created
    if load:
        extra = {"stages": stages} if stages is not None else {}  # 3D volumes only
        job = volume.load(on_progress, order=order, **extra)  # type: ignore[arg-type]
        try:
            await job
        except asyncio.CancelledError:
            job.cancel()
            raise
    return volume


def describe_source(source: str | os.PathLike[str], **http: Any) -> list[SeriesInfo]:
    """Blocking :func:`describe_source_async`."""
    return runtime.run_sync(describe_source_async(source, **http))


def open_volume(source: str | os.PathLike[str] | Sequence[Any],
                **kwargs: Any) -> StreamingImageVolume | DynamicVolume:
    """Blocking :func:`open_volume_async`: ``ms.open_volume("ct_folder/")`` -> loaded volume."""
    return runtime.run_sync(open_volume_async(source, **kwargs))
