"""Every error type survives pickle (Dask, multiprocessing and concurrent.futures process pools
send errors between processes): the type, the message and every attribute come back. The error
types with their own __init__ in medstream.errors are found by inspection, so a new one without
an example here fails the test rather than going unchecked."""

from __future__ import annotations

import inspect
import pickle

import pytest

import medstream.errors as errors
from medstream.dicom.mosaic import MosaicError
from medstream.gpu.backend import GpuMemoryError, GpuUnavailableError
from medstream.volumes.streaming import VolumeLoadError

# One instance of each type, every optional argument given (a value left out of __reduce__
# would be lost on the way back).
EXAMPLES: dict[type, BaseException] = {
    errors.ImageLoadError: errors.ImageLoadError("wadouri:http://h/x?token=abc", "HTTP timeout"),
    errors.UnknownSchemeError: errors.UnknownSchemeError("zzz:/x", "zzz"),
    errors.UnsupportedTransferSyntaxError: errors.UnsupportedTransferSyntaxError(
        "dicomfile:/a.dcm", "1.2.840.10008.1.2.4.110", "no JPEG XL decoder"),
    errors.HTTPStatusError: errors.HTTPStatusError(
        "wadors:http://h/f/1", 503, "http://h/f/1", "Orthanc: busy"),
    errors.ResourceLimitError: errors.ResourceLimitError(
        "dicomfile:/b.dcm", "decoded frame", 10**10, 2**31, "J2K header", "bytes"),
    errors.LoadTimeoutError: errors.LoadTimeoutError("wadors:y", 0.5),
    errors.CacheSizeExceededError: errors.CacheSizeExceededError(
        "volume:v1", 5000, 4000, "3000 bytes are pinned by loading volumes"),
    errors.VolumeError: errors.VolumeError("v: slices of two sizes",
                                           ["dicomfile:/1", "dicomfile:/2"]),
}

# Types that inherit their __init__ (and __reduce__): built with the parent's arguments.
INHERITING: list[BaseException] = [
    errors.DicomParseError("dicomfile:/c.dcm", "not DICOM"),
    errors.MissingPixelDataError("dicomfile:/d.dcm", "no Pixel Data"),
    errors.DecodeError("dicomfile:/e.dcm", "corrupt JPEG"),
    errors.NetworkError("wadors:http://h/x", "connection reset"),
    errors.PixelRangeError("dicomfile:/f.dcm", "values do not fit int16"),
    errors.GeometryError("v: two orientations", ["dicomfile:/1"]),
    errors.ResourceLimitError("dicomfile:/g.dcm", "frames", 10**6, 10**5, unit="frames"),
    errors.UnknownSchemeError("abc:/x"),  # scheme taken from the ID
    errors.LoadTimeoutError("wadors:z", None),
    # Outside medstream.errors, raised across processes all the same.
    MosaicError("dicomfile:/m.dcm", "mosaic without ImagePositionPatient"),
    VolumeLoadError("volume:v2", {"dicomfile:/1": "HTTP 404", "dicomfile:/2": "timed out"}, 10),
    GpuUnavailableError(["CuPy is not installed", "no CUDA device"]),
    GpuMemoryError("v: 40 GiB do not fit in 8 GiB of free GPU memory", ["dicomfile:/1"]),
]


def _own_init_types() -> set[type]:
    return {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
            and "__init__" in cls.__dict__}


def test_every_error_type_with_its_own_init_has_an_example():
    assert _own_init_types() == set(EXAMPLES)


def _assert_round_trip(err: BaseException) -> None:
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is type(err)
    assert str(back) == str(err)
    assert vars(back) == vars(err)  # image_id, cause, status_code, failed, ...
    assert vars(err), "an error without attributes: nothing checked"


KNOWN_LOSSY: dict[type, str] = {}  # error types whose pickling is known to lose something


@pytest.mark.parametrize("cls", [
    pytest.param(cls, marks=pytest.mark.xfail(strict=True, reason=KNOWN_LOSSY[cls]))
    if cls in KNOWN_LOSSY else cls for cls in EXAMPLES], ids=lambda c: c.__name__)
def test_error_with_its_own_init_survives_pickle(cls):
    _assert_round_trip(EXAMPLES[cls])


@pytest.mark.parametrize("err", INHERITING, ids=lambda e: type(e).__name__)
def test_inheriting_error_survives_pickle(err):
    _assert_round_trip(err)


def test_pickled_errors_stay_redacted_and_catchable():
    err = errors.ImageLoadError("wadouri:http://h/x?token=s3cr3t", "failed for token=s3cr3t")
    back = pickle.loads(pickle.dumps(err))
    assert "s3cr3t" not in str(back) and "s3cr3t" not in back.cause
    assert isinstance(pickle.loads(pickle.dumps(EXAMPLES[errors.LoadTimeoutError])), TimeoutError)
    mosaic = next(e for e in INHERITING if isinstance(e, MosaicError))
    assert isinstance(pickle.loads(pickle.dumps(mosaic)), errors.DicomParseError)
