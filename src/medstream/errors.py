"""Typed errors. Every load failure names the image ID and the cause so a user can act on it."""

from __future__ import annotations


class MedstreamError(Exception):
    """Base class of every error medstream raises on purpose."""


class ImageLoadError(MedstreamError):
    """Loading one image ID failed; ``cause`` says why in words, ``__cause__`` keeps the original."""

    def __init__(self, image_id: str, cause: str) -> None:
        from .redact import redact_text

        self.image_id = image_id
        self.cause = redact_text(cause)
        super().__init__(f"{redact_text(image_id)}: {self.cause}")

    def __reduce__(self):  # keep picklable across processes (Dask workers)
        return (self.__class__, (self.image_id, self.cause))


class UnknownSchemeError(ImageLoadError):
    """No loader is registered for the ID's scheme and no fallback loader is set."""

    def __init__(self, image_id: str, scheme: str | None = None) -> None:
        self.scheme = scheme if scheme is not None else image_id.split(":", 1)[0]
        ImageLoadError.__init__(
            self, image_id, f"no loader registered for scheme {self.scheme!r}"
        )

    def __reduce__(self):
        return (self.__class__, (self.image_id, self.scheme))


class DicomParseError(ImageLoadError):
    """The bytes are not a readable DICOM object (truncated, not DICOM, broken header)."""


class MissingPixelDataError(ImageLoadError):
    """The object parsed but has no (usable) pixel data or a required image tag is missing."""


class UnsupportedTransferSyntaxError(ImageLoadError):
    """No decoder is available for the object's transfer syntax; names the UID."""

    def __init__(self, image_id: str, transfer_syntax_uid: str, detail: str = "") -> None:
        self.transfer_syntax_uid = transfer_syntax_uid
        name = _uid_name(transfer_syntax_uid)
        msg = f"unsupported transfer syntax {transfer_syntax_uid}{name}"
        self.detail = detail
        ImageLoadError.__init__(self, image_id, msg + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return (self.__class__, (self.image_id, self.transfer_syntax_uid, self.detail))


class DecodeError(ImageLoadError):
    """A codestream could not be decoded (corrupt or truncated compressed data)."""


class HTTPStatusError(ImageLoadError):
    """The server answered with an error status. The URL never carries credentials."""

    def __init__(self, image_id: str, status_code: int, url: str, detail: str = "") -> None:
        self.status_code = status_code
        self.url = url
        self.detail = detail
        msg = f"HTTP {status_code} from {url}" + (f": {detail}" if detail else "")
        ImageLoadError.__init__(self, image_id, msg)

    def __reduce__(self):
        return (self.__class__, (self.image_id, self.status_code, self.url, self.detail))


class NetworkError(ImageLoadError):
    """The request did not complete: connection refused or reset, timeout, truncated body."""


class ResourceLimitError(ImageLoadError):
    """A size claimed by the input (header, Content-Length, codestream, inflated stream) is over
    the byte budget or does not fit the bytes actually there; raised before allocating."""

    def __init__(self, image_id: str, what: str, size: int, limit: int, detail: str = "",
                 unit: str = "bytes") -> None:
        self.what = what
        self.size = int(size)
        self.limit = int(limit)
        self.detail = detail
        self.unit = unit
        show = _mb if unit == "bytes" else (lambda n: f"{n} {unit}")
        ImageLoadError.__init__(
            self, image_id,
            f"{what}: {show(self.size)} over the limit of {show(self.limit)}"
            + (f" ({detail})" if detail else ""))

    def __reduce__(self):
        return (self.__class__,
                (self.image_id, self.what, self.size, self.limit, self.detail, self.unit))


class LoadTimeoutError(MedstreamError, TimeoutError):
    """``result(timeout)`` returned before the load finished (the load itself goes on)."""

    def __init__(self, key: str, timeout: float | None) -> None:
        from .redact import redact_text

        self.image_id = key
        self.timeout = timeout
        super().__init__(f"{redact_text(key)}: not finished within {timeout:g} s"
                         if timeout is not None else f"{redact_text(key)}: timed out")

    def __reduce__(self):
        return (self.__class__, (self.image_id, self.timeout))


def _mb(n: int) -> str:
    return f"{n} bytes" if n < 10 * 1024**2 else f"{n / 1024**2:.0f} MiB"


class CacheSizeExceededError(MedstreamError):
    """An item cannot fit in the cache even after evicting everything that may be evicted."""

    def __init__(self, key: str, size: int, max_size: int, detail: str = "") -> None:
        self.key = key
        self.size = size
        self.max_size = max_size
        self.detail = detail
        super().__init__(
            f"{key}: {size} bytes do not fit in the cache (limit {max_size} bytes)"
            + (f"; {detail}" if detail else "")
        )

    def __reduce__(self):
        return (self.__class__, (self.key, self.size, self.max_size, self.detail))


class VolumeError(MedstreamError):
    """A set of images cannot form one volume, or a volume load failed; names the volume or the
    offending image IDs (``image_ids``) and the cause."""

    def __init__(self, message: str, image_ids: list[str] | tuple[str, ...] = ()) -> None:
        from .redact import redact_text

        self.image_ids = list(image_ids)
        super().__init__(redact_text(message))

    def __reduce__(self):
        return (self.__class__, (str(self), self.image_ids))


class GeometryError(VolumeError):
    """Slices do not form a volume under the chosen policy: mixed series, size or orientation,
    duplicate positions, missing or irregular spacing, gantry tilt (with ``tilt="raise"``)."""


def _uid_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return f" ({name})" if name and name != uid else ""
    except Exception:  # pragma: no cover - naming is best effort
        return ""


class PixelRangeError(DecodeError):
    """A frame's values do not fit the dtype its header implies (e.g. CT values beyond int16):
    raised for that frame instead of silently wrapping or changing the dtype."""
