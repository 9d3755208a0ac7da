"""Where file bytes come from: local paths, or fsspec URLs (``s3://``, ``gs://``, ``az://``...).

Public imaging datasets sit as DICOM objects in buckets. A remote object is read the way a local
file is: its first block for the header (one ranged GET; more only for a header longer than
that), then just the pixel bytes a header read located, many ranges in flight at once (fsspec's
concurrent ``cat_ranges``), never the whole object where a range suffices. Objects a compact
header read cannot address (multi-frame, mosaics, deflated) are read whole, once, under the
byte budget.

Options (endpoint, credentials, ``anon``) are configured per bucket prefix with
:func:`configure_storage`, so they are only ever used for the objects under that prefix; image
IDs stay plain strings (``dicomfile:s3://bucket/ct/1.dcm``). Objects are read as immutable
during a load: a pixel range must come back whole, or the frame fails with a typed error.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .core.kept import KeptMap
from .core.scope import current as current_scope
from .errors import ImageLoadError, MedstreamError, NetworkError
from .limits import check_size
from .redact import redact_text, redact_url

HEAD_BYTES = 64 * 1024  # one GET holds the header of nearly every single-frame file
TIMEOUT = 60.0  # seconds: a deadline for each batch of remote reads
LIST_TIMEOUT = 600.0  # seconds for listing a whole prefix (pages of 1000 keys)
INFO_TTL = 10.0  # seconds an object's size and version are trusted before asking again
_LOCAL = ("file", "local")
#: Object stores read through fsspec: async clients with deadlines (S3, GCS, Azure) and the
#: in-process memory store. Other fsspec protocols (ftp, sftp, smb...) are not taken: their
#: clients block without deadlines and their URLs carry passwords.
STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})


def protocol_of(path: str) -> str | None:
    """The URL scheme of ``path`` (``s3``, ``gs``...), or None for a plain path."""
    head, sep, _ = path.partition("://")
    if not sep or not head or not all(c.isalnum() or c in "+-." for c in head):
        return None
    return head.lower()


def is_remote(path: str) -> bool:
    """Whether a file path names a remote object: an object store (``STORE_PROTOCOLS``) or a
    file on an HTTP(S) server read by ranges. Local paths and ``file://`` URLs are not."""
    return is_store_url(path) or _is_http(path)


def is_store_url(path: str) -> bool:
    """An object-store URL (``s3://``...) as a source; ``http(s)://`` sources stay with the
    DICOMweb, WADO-URI and web image loaders (``dicomfile:https://...`` reads a file by ranges),
    and other schemes with their image loaders. Chained fsspec URLs (``a::b``) are not taken."""
    return protocol_of(path) in STORE_PROTOCOLS and "::" not in path


def _is_http(url: str) -> bool:
    return protocol_of(url) in ("http", "https")


def local_path(path: str) -> str:
    """``file:///x/y`` (or ``file://localhost/x/y``) -> ``/x/y``; anything else unchanged (a
    ``file://`` URL naming another host is not a local path)."""
    if protocol_of(path) in _LOCAL and urlsplit(path).netloc in ("", "localhost"):
        return unquote(urlsplit(path).path)
    return path


@dataclass(frozen=True)
class ObjectInfo:
    url: str
    size: int
    version: str  # ETag, generation or mtime: part of every cache key of the object
    seen: float = field(default=0.0, compare=False)  # time.monotonic() when it was read

    @property
    def version_key(self) -> int:
        """The version as a number (where a local file's mtime goes), the same in every process."""
        import hashlib  # here: remote objects only

        return int.from_bytes(hashlib.blake2b(self.version.encode(), digest_size=7).digest(), "big")


class _PerClient(KeptMap[Any, Any]):
    """Object info and bytes kept per ``ms.Client``: one client's credentials never serve
    another's reads (the default client's key is "")."""

    def get(self, key: Any) -> Any:
        return super().get((current_scope().key, key))

    def put(self, key: Any, value: Any, nbytes: int | None = None) -> bool:
        return super().put((current_scope().key, key), value, nbytes)

    def pop(self, key: Any) -> Any:
        return super().pop((current_scope().key, key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__((current_scope().key, key))


# Ranged reads of plain web servers through medstream's HTTP stack: a function giving an object
# with ``head`` and ``ranges`` (the loaders register one that imports loaders/httpranges, and
# with it httpx, only when a URL is read).
_http_ranges: list[Callable[[], Any]] = []


def register_http_ranges(reader: Callable[[], Any]) -> None:
    """``reader()`` gives the HTTP(S) reader for ``dicomfile:https://...`` files (the loaders
    register theirs)."""
    _http_ranges[:] = [reader]


class Storage:
    """Remote objects through fsspec: per-prefix options, object info, ranged and whole reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._options: dict[str, dict[str, Any]] = {}
        self._info = _PerClient("object info", max_items=200_000, size_of=lambda _v: 512)
        self._heads = _PerClient("object heads", max_items=4096, max_bytes=64 * 1024**2,
                                 size_of=len)
        self._whole = _PerClient("whole objects", max_items=64, max_bytes=512 * 1024**2,
                                 size_of=len)
        self.bytes_read = 0  # transferred from remote objects (for benchmarks and tests)
        self.requests = 0

    # -- configuration -------------------------------------------------------------------------
    def configure(self, prefix: str, **options: Any) -> None:
        """Use ``options`` (fsspec/s3fs keyword arguments: ``endpoint_url``, ``key``,
        ``secret``, ``anon``, ``client_kwargs``...) for every object under ``prefix``."""
        if protocol_of(prefix) is None:
            raise MedstreamError(f"configure_storage: {redact_url(prefix)!r} is not an object-store "
                                 f"prefix (s3://bucket; {', '.join(sorted(STORE_PROTOCOLS))})")
        with self._lock:
            self._options[prefix.rstrip("/")] = dict(options)
            self._info.clear()
            self._heads.clear()
            self._whole.clear()

    def options_for(self, url: str) -> dict[str, Any]:
        with self._lock:
            best = max((p for p in self._options if url == p or url.startswith(p + "/")),
                       key=len, default=None)
            return dict(self._options[best]) if best is not None else {}

    def filesystem(self, url: str) -> tuple[Any, str]:
        """(fsspec filesystem, path inside it) for ``url``; fsspec caches the instances."""
        try:
            import fsspec
        except ImportError as exc:  # pragma: no cover - fsspec comes with the package
            raise MedstreamError("reading URLs needs fsspec (pip install fsspec)") from exc
        options = self.options_for(url)
        proto = protocol_of(url)
        if proto in ("s3", "s3a"):  # deadlines, and enough connections for many ranges at once
            options["config_kwargs"] = {"connect_timeout": 10, "read_timeout": 30,
                                        "retries": {"max_attempts": 3},
                                        "max_pool_connections": 64,
                                        **options.get("config_kwargs", {})}
        try:
            fs, path = fsspec.core.url_to_fs(url, **options)
        except Exception as exc:
            raise MedstreamError(f"{redact_url(url)}: no filesystem for {proto}:// "
                                 f"({type(exc).__name__}); for S3 pip install s3fs, for GCS "
                                 "gcsfs, for Azure adlfs") from exc
        return fs, path

    # -- object info and listing -----------------------------------------------------------
    def info(self, url: str, item_id: str | None = None,
             max_age: float | None = INFO_TTL) -> ObjectInfo:
        """Size and version of an object, as last seen at most ``max_age`` seconds ago (None:
        any age; a load trusts what its scan saw). An object replaced since is seen anew, and
        every cache of its bytes is keyed by the new version."""
        with self._lock:
            hit = self._info.get(url)
        if hit is not None and (max_age is None or time.monotonic() - hit.seen <= max_age):
            return hit  # type: ignore[no-any-return]
        if _is_http(url):  # one ranged GET gives the size and the head
            detail, head, whole = self._http().head(item_id or url, url, HEAD_BYTES)
            found = self._remember(url, detail)
            with self._lock:
                self._heads.put((url, found.version), head)
                if whole:
                    self._whole.put((url, found.version), head)
            return found
        fs, path = self.filesystem(url)
        if hit is not None and hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache(path)  # s3fs & co. keep listings: ask the store itself
        detail = self._call(item_id or url, url, fs.info, path)
        if detail.get("type") == "directory":
            raise ImageLoadError(item_id or url, f"is a folder, not an object: {redact_url(url)}")
        found = self._remember(url, detail)
        return found

    def _remember(self, url: str, detail: dict[str, Any]) -> ObjectInfo:
        version = next((str(detail[k]) for k in ("ETag", "etag", "generation", "md5Hash",
                                                   "LastModified", "mtime", "last_modified")
                        if detail.get(k) is not None), "")
        found = ObjectInfo(url, int(detail.get("size") or 0), version, time.monotonic())
        with self._lock:
            self._info.put(url, found)
        return found

    @staticmethod
    def _http() -> Any:
        if not _http_ranges:
            raise MedstreamError("reading files over HTTP needs medstream's loaders: "
                                 "import medstream")
        return _http_ranges[0]()

    def isdir(self, url: str) -> bool:
        if _is_http(url):
            return False
        fs, path = self.filesystem(url)
        try:
            return bool(self._call(url, url, fs.isdir, path))
        except ImageLoadError:
            return False

    def listing(self, url: str, recursive: bool = True) -> list[str]:
        """Object URLs under a prefix (sorted; hidden names and DICOMDIR left out)."""
        if _is_http(url):
            raise MedstreamError(f"{redact_url(url)}: an HTTP(S) URL cannot be listed; give the "
                                 "files' URLs (dicomfile:https://...) or a DICOMweb series URL")
        fs, path = self.filesystem(url)
        proto = protocol_of(url) or ""
        found = self._call(url, url, fs.find, path.rstrip("/"), timeout=LIST_TIMEOUT,
                           maxdepth=None if recursive else 1, detail=True)
        out = []
        for name, detail in sorted(found.items()):
            base = name.rsplit("/", 1)[-1]
            if detail.get("type") == "directory" or base.startswith(".") or base == "DICOMDIR":
                continue
            if any(part.startswith(".") for part in name[len(path.rstrip("/")):].split("/")):
                continue
            full = f"{proto}://{name}"  # the caller's scheme: its options are found again
            self._remember(full, detail)
            out.append(full)
        return out

    # -- reads -------------------------------------------------------------------------------
    def read_ranges(self, item_id: str, ranges: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """``[start, end)`` of each object, fetched concurrently; each must come back whole."""
        out = self.try_ranges(item_id, ranges)
        for data in out:
            if isinstance(data, ImageLoadError):
                raise data
        return out  # type: ignore[return-value]

    def try_ranges(self, item_id: str | None, ranges: Sequence[tuple[str, int, int]],
                   ) -> list[bytes | ImageLoadError]:
        """:meth:`read_ranges` with each range's failure in its place, not raised (named by
        ``item_id``, or by its own URL where that is None)."""
        if not ranges:
            return []
        for url, start, end in ranges:
            check_size(item_id or url, f"a range of {redact_url(url)}", end - start)
        known = [self._cached(*r) for r in ranges]  # what cached heads hold already
        todo = [(url, start + len(have), end) for (url, start, end), have in zip(ranges, known)]
        out: list[Any] = list(known)
        by_fs: dict[int, tuple[Any, list[int]]] = {}
        paths: list[str] = []
        for n, (url, start, end) in enumerate(todo):
            fs, path = (None, url) if _is_http(url) else self.filesystem(url)
            paths.append(path)
            if start < end:
                by_fs.setdefault(id(fs), (fs, []))[1].append(n)
        fetched = [n for _, idx in by_fs.values() for n in idx]
        for fs, idx in by_fs.values():
            if fs is None:
                got = self._http().ranges(item_id or todo[idx[0]][0], [
                    (*todo[i], self.info(todo[i][0], item_id, None).size) for i in idx])
            else:
                got = self._call(item_id or todo[idx[0]][0], todo[idx[0]][0], fs.cat_ranges,
                                 [paths[i] for i in idx], [todo[i][1] for i in idx],
                                 [todo[i][2] for i in idx], on_error="return")
            for i, data in zip(idx, got):
                out[i] = data if isinstance(data, BaseException) or not known[i] \
                    else known[i] + data
        with self._lock:
            self.requests += len(fetched)
            self.bytes_read += sum(len(out[n]) - len(known[n]) for n in fetched
                                   if not isinstance(out[n], BaseException))
        for n, ((url, start, end), data) in enumerate(zip(ranges, out)):
            if isinstance(data, ImageLoadError) and item_id is None and data.image_id != url:
                out[n] = ImageLoadError(url, data.cause)  # named by its own object
            elif isinstance(data, BaseException):
                out[n] = _typed(item_id or url, url, data)
            elif len(data) != end - start:
                out[n] = ImageLoadError(item_id or url, f"{redact_url(url)}: asked bytes "
                                        f"{start}..{end}, got {len(data)} (object changed or "
                                        "truncated)")
        return out

    def _cached(self, url: str, start: int, end: int) -> bytes:
        """The leading part of ``[start, end)`` that a cached head holds (maybe all, or none)."""
        with self._lock:
            info = self._info.get(url)
            key = None if info is None else (url, info.version)
            head = None if key is None else (self._whole.get(key) or self._heads.get(key))
        return head[start : min(end, len(head))] if head is not None and start < len(head) else b""

    def read_range(self, item_id: str, url: str, start: int, end: int) -> bytes:
        return self.read_ranges(item_id, [(url, start, end)])[0]

    def head(self, item_id: str, url: str) -> bytes:
        """The first ``HEAD_BYTES`` of an object (cached: a scan and the load share them)."""
        info = self.info(url, item_id)
        with self._lock:
            hit = self._heads.get((url, info.version))
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        data = self.read_range(item_id, url, 0, min(info.size, HEAD_BYTES))
        with self._lock:
            self._heads.put((url, info.version), data)
        return data

    def prefetch_heads(self, urls: Sequence[str]) -> dict[str, MedstreamError]:
        """Fetch the heads of many objects concurrently; url -> error for those that failed."""
        failed: dict[str, MedstreamError] = {}
        todo: list[tuple[str, int, int]] = []
        versions: dict[str, str] = {}
        infos = self._infos(urls)
        for url in urls:
            info = infos[url]
            if isinstance(info, MedstreamError):
                failed[url] = info
                continue
            with self._lock:
                if (url, info.version) in self._heads:
                    continue
            versions[url] = info.version
            todo.append((url, 0, min(info.size, HEAD_BYTES)))
        for i in range(0, len(todo), 256):
            part = todo[i : i + 256]
            got = self.try_ranges(None, part)  # each failure named by its own object
            with self._lock:
                for (url, _, _), data in zip(part, got):
                    if isinstance(data, ImageLoadError):
                        failed[url] = data
                    else:
                        self._heads.put((url, versions[url]), data)
        return failed

    def _infos(self, urls: Sequence[str]) -> dict[str, ObjectInfo | MedstreamError]:
        """Object info for many URLs: from the cache (a listing), else asked for concurrently
        (with their heads, for HTTP), on a few short-lived threads."""
        from concurrent.futures import ThreadPoolExecutor

        def one(url: str) -> ObjectInfo | MedstreamError:
            try:
                return self.info(url)
            except MedstreamError as exc:
                return exc

        with self._lock:
            missing = [u for u in urls if u not in self._info]
        found: dict[str, ObjectInfo | MedstreamError] = {}
        if len(missing) > 1:
            with ThreadPoolExecutor(min(16, len(missing)), "medstream-info") as pool:
                found = dict(zip(missing, pool.map(one, missing)))
        return {u: found[u] if u in found else one(u) for u in urls}

    def read_all(self, item_id: str, url: str) -> bytes:
        """The whole object, under the byte budget (kept for a header read and its load)."""
        info = self.info(url, item_id)
        check_size(item_id, f"object {url}", info.size)
        with self._lock:
            hit = self._whole.get((url, info.version))
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        data = self.read_range(item_id, url, 0, info.size)
        with self._lock:
            self._whole.put((url, info.version), data)
        return data

    def open(self, item_id: str, url: str, limit: int | None = None) -> RemoteFile:
        return RemoteFile(self, item_id, url, limit)

    def clear(self) -> None:
        with self._lock:
            self._info.clear()
            self._heads.clear()
            self._whole.clear()

    def _call(self, item_id: str, url: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            if getattr(fn, "__self__", None) is not None and getattr(fn.__self__, "async_impl",
                                                                      False):
                kwargs.setdefault("timeout", TIMEOUT)  # fsspec's sync bridge: a deadline
            return fn(*args, **kwargs)
        except MedstreamError:
            raise
        except Exception as exc:
            raise _typed(item_id, url, exc) from exc


def _typed(item_id: str, url: str, exc: BaseException) -> ImageLoadError:
    """An fsspec/botocore failure as a typed error naming the object (never the options)."""
    if isinstance(exc, ImageLoadError):
        return exc
    safe = redact_url(url)
    if isinstance(exc, FileNotFoundError):
        return ImageLoadError(item_id, f"no such object: {safe}")
    if isinstance(exc, PermissionError):
        return ImageLoadError(item_id, f"access denied: {safe}")
    return NetworkError(item_id, f"{safe}: {type(exc).__name__}: {redact_text(str(exc))[:200]}")


class RemoteFile(io.RawIOBase):
    """A read-only, seekable view of an object: its cached head, then ranged reads, so a
    header parser reads a remote object as it reads a local file."""

    def __init__(self, storage: Storage, item_id: str, url: str,
                 limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit  # reading past this offset is an OSError (a bounded probe)
        self._storage, self._item_id, self.url = storage, item_id, url
        self._info = storage.info(url, item_id)
        self._head = storage.head(item_id, url)
        self._pos = 0
        self._ahead: tuple[int, bytes] = (0, b"")

    @property
    def size(self) -> int:
        return self._info.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        end = self.size if size is None or size < 0 else min(self.size, self._pos + size)
        if end <= self._pos:
            return b""
        if self.limit is not None and end > self.limit:
            raise OSError(f"read past the first {self.limit} bytes of {redact_url(self.url)}")
        for base, buf in ((0, self._head), self._ahead):
            if base <= self._pos and end <= base + len(buf):
                data = buf[self._pos - base : end - base]
                break
        else:  # a ranged read, with another head's worth ahead, as a local file reads ahead
            fetch = max(end, min(self.size, self._pos + HEAD_BYTES))
            self._ahead = (self._pos, self._storage.read_range(self._item_id, self.url,
                                                               self._pos, fetch))
            data = self._ahead[1][: end - self._pos]
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


storage = Storage()


def file_version(path: str, item_id: str | None = None) -> tuple[int, int]:
    """(version, size) of a local file (its mtime) or a remote object (its version, as a
    number): what every cache of the file's bytes is keyed by. Raises ``OSError`` for a local
    file that cannot be stat'ed, ``ImageLoadError`` for an object that cannot be asked about."""
    if is_remote(path):
        info = storage.info(path, item_id)
        return info.version_key, info.size
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size


def configure_storage(prefix: str, **options: Any) -> None:
    """Options for the objects under a URL prefix, e.g. ``configure_storage("s3://bucket",
    endpoint_url="https://minio.local:9000", key=..., secret=...)`` or ``anon=True`` for a
    public bucket. Without one, fsspec's defaults apply (environment, config files)."""
    storage.configure(prefix, **options)


__all__ = ["HEAD_BYTES", "ObjectInfo", "RemoteFile", "Storage", "configure_storage",
           "file_version", "is_remote", "is_store_url", "local_path", "protocol_of", "storage"]
