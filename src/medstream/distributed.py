"""Load and convert many series on a Dask distributed cluster (``pip install medstream[distributed]``).

Each series is loaded on a worker by medstream itself (its loaders, request pools and cache), so
a worker decodes in parallel and cancels like a local load. Two limits keep a PACS from being
flooded: ``max_requests`` caps the frame requests one worker has in flight (its prefetch pool),
and ``max_series`` caps the series loading at once across the whole cluster (a
``distributed.Semaphore``). One series failing never fails the batch: it lands in the manifest
with its cause.

    from dask.distributed import Client
    import medstream.distributed as msd

    manifest = msd.convert_many(["ct1/", "https://pacs/dicom-web/studies/1/series/2"], "out/",
                                client=Client("tcp://scheduler:8786"))
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ManifestRow:
    source: str
    output: str | None = None
    shape: list[int] | None = None
    dtype: str | None = None
    spacing: list[float] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def output_name(source: str, fmt: str) -> str:
    """A file name that is safe (no separators, no ``..``) and unique per source."""
    base = source.rstrip("/").split("?")[0].rsplit("/", 1)[-1] or "series"
    for suffix in (".nii.gz", ".nii"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    base = _SAFE.sub("_", base).strip("._")[:60] or "series"
    digest = hashlib.sha1(source.encode()).hexdigest()[:10]
    return f"{base}-{digest}.{fmt.lstrip('.')}"


def _limit_requests(max_requests: int | None) -> None:
    if max_requests:
        from .core.request_pools import RequestType, request_pools

        request_pools.set_max_simultaneous_requests(RequestType.PREFETCH, max_requests)
        request_pools.set_max_per_host(max_requests)  # the budget is for the one PACS


def convert_one(source: str, out_dir: str, fmt: str = "nii.gz",
                max_requests: int | None = None, series_timeout: float | None = None,
                **options: Any) -> dict[str, Any]:
    """Load one series and write it to ``out_dir`` (runs on a worker; never raises).

    ``series_timeout`` bounds the pixel load (the metadata is bounded by the HTTP timeout); a
    series not complete by then is a failure, and nothing partial is written."""
    import time

    import medstream as ms

    row = ManifestRow(source=source, worker=_worker_name())
    t0 = time.perf_counter()
    try:
        _limit_requests(max_requests)
        volume = ms.open_volume(source, load=False, **options)
        volume.load(timeout=series_timeout).result()
        path = os.path.join(out_dir, output_name(source, fmt))
        volume.save(path)
        row.output = path
        row.shape = list(volume.shape)
        row.dtype = str(volume.dtype)
        row.spacing = [float(s) for s in volume.spacing]
        row.warnings = list(volume.geometry.warnings)
        ms.cache.remove(volume.volume_id)  # the file is written: free the worker's memory
    except Exception as exc:  # one series' failure is reported, never raised
        row.error = " ".join(f"{type(exc).__name__}: {exc}".split())
    row.seconds = time.perf_counter() - t0
    return row.to_dict()


def _worker_name() -> str | None:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def _guarded(fn: Callable[..., Any], max_series: int | None, *args: Any, **kwargs: Any) -> Any:
    if not max_series:
        return fn(*args, **kwargs)
    from distributed import Semaphore

    with Semaphore(max_leases=max_series, name="medstream-series"):
        return fn(*args, **kwargs)


def _client(client: Any) -> tuple[Any, bool]:
    if client is not None:
        return client, False
    from distributed import Client, LocalCluster

    return Client(LocalCluster(processes=True, threads_per_worker=2)), True


def convert_many(
    sources: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    client: Any = None,
    fmt: str = "nii.gz",
    max_requests: int | None = 6,
    max_series: int | None = None,
    series_timeout: float | None = None,
    on_done: Callable[[dict[str, Any]], Any] | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Convert every source (folder, DICOMweb series URL, NIfTI) to ``out_dir``; returns the
    manifest in ``sources`` order. ``client`` defaults to a LocalCluster made (and closed) here.
    A source given twice is converted once (one writer per output file); ``series_timeout``
    is each series' deadline.
    """
    from distributed import as_completed

    out = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out, exist_ok=True)
    client, owned = _client(client)
    try:
        unique = list(dict.fromkeys(os.fspath(s) for s in sources))
        futures = [
            client.submit(_guarded, convert_one, max_series, s, out, fmt, max_requests,
                          series_timeout, pure=False,
                          key=f"medstream-convert-{i}-{output_name(s, fmt)}", **options)
            for i, s in enumerate(unique)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        done: dict[str, dict[str, Any]] = {}
        for future in as_completed(futures):
            source = unique[index[future.key]]
            try:
                row = future.result()
            except Exception as exc:  # the worker itself died
                row = ManifestRow(source=source, error=f"{type(exc).__name__}: {exc}").to_dict()
            done[source] = row
            if on_done is not None:
                on_done(row)
        return [dict(done[os.fspath(s)]) for s in sources if os.fspath(s) in done]
    finally:
        if owned:
            cluster = client.cluster
            client.close()
            cluster.close()


def describe_one(source: str, **options: Any) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of a source's volume, from metadata only (runs on a worker)."""
    import medstream as ms

    volume = ms.open_volume(source, load=False, **options)
    shape, dtype = volume.shape, str(volume.dtype)
    ms.cache.remove(volume.volume_id)
    return shape, dtype


def load_one(source: str, max_requests: int | None = None, **options: Any) -> np.ndarray:
    import medstream as ms

    _limit_requests(max_requests)
    volume = ms.open_volume(source, **options)
    data = volume.scalar_data
    ms.cache.remove(volume.volume_id)
    return data


def lazy_arrays(sources: Sequence[str], *, client: Any = None, max_requests: int | None = 6,
                **options: Any) -> dict[str, Any]:
    """One lazy ``dask.array`` per source (shape and dtype known now, pixels loaded on compute
    by a worker). Sources whose metadata cannot be read are left out and raise on lookup."""
    import dask.array as da
    from dask import delayed

    client, _ = _client(client)  # a LocalCluster made here stays up for later computes
    futures = {os.fspath(s): client.submit(describe_one, os.fspath(s), pure=False, **options)
               for s in sources}
    found: dict[str, tuple[tuple[int, ...], str]] = {}
    for s, future in futures.items():
        try:
            found[s] = future.result()
        except Exception:
            continue
    return {
        s: da.from_delayed(delayed(load_one, pure=True)(s, max_requests, **options),
                           shape=shape, dtype=np.dtype(dtype))
        for s, (shape, dtype) in found.items()
    }


__all__ = ["ManifestRow", "convert_many", "convert_one", "lazy_arrays", "output_name"]
