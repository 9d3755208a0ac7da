"""Mosaics whose tiles cannot be located raise MosaicError (a DicomParseError naming the file),
never one big wrong slice: one test per cause in medstream.dicom.mosaic, each on a real Siemens
MOSAIC (or UIH VFRAME) file from tests/data/qa-dev with one header value broken by pydicom."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

import medstream as ms
from corpus import qa
from medstream.dicom.mosaic import MosaicError

warnings.filterwarnings("ignore", category=UserWarning)

CSA_IMAGE = 0x00291010  # Siemens CSA Image Header Info (SV10)


def siemens() -> Dataset:
    """A real 384x384 MOSAIC of 35 tiles of 64x64 (6x6 grid), uncompressed."""
    ds = pydicom.dcmread(sorted(qa("siemens-mosaic", "ax", "axasc35").glob("MR.*"))[0])
    assert "MOSAIC" in ds.ImageType and (ds.Rows, ds.Columns) == (384, 384)
    return ds


def uih() -> Dataset:
    """A real 256x320 UIH VFRAME: 20 tiles of 64x64 (AcquisitionMatrix), each with its own
    position in the private sequence (0065,1051)."""
    ds = pydicom.dcmread(qa("uih-vframe", "dti_tra_dir16_AP_SaveBySlc__140028") / "00000001.dcm")
    assert "VFRAME" in ds.ImageType and list(ds.AcquisitionMatrix) == [64, 0, 0, 64]
    return ds


def set_mosaic_count(ds: Dataset, text: bytes) -> None:
    """Rewrite NumberOfImagesInMosaic ("35" in this file) in the CSA header, in place: the value
    is a space-padded string of 8 bytes."""
    raw = ds[CSA_IMAGE].value
    start = raw.index(b"NumberOfImagesInMosaic")
    at = raw.index(b"35      ", start)
    assert at - start < 200  # the item of this tag, not a later one
    ds[CSA_IMAGE].value = raw[:at] + text.ljust(8) + raw[at + 8:]


def uih_items(ds: Dataset):
    return ds.private_block(0x0065, "Image Private Header")[0x51].value


def assert_mosaic_error(tmp_path: Path, ds: Dataset, match: str) -> None:
    """Every way in refuses the file with the cause: a volume of the file, one tile by ID, and
    a folder scan (which lists the file as skipped with the reason)."""
    folder = tmp_path / "m"
    folder.mkdir()
    path = folder / "mosaic.dcm"
    ds.save_as(path)
    with pytest.raises(MosaicError, match=match) as err:
        ms.open_volume(str(path))
    assert isinstance(err.value, ms.DicomParseError) and str(path) in str(err.value)
    with pytest.raises(MosaicError, match=match):
        ms.load_image(f"dicomfile:{path}?tile=1").result(30)
    scan = ms.scan_folder(folder)
    assert not scan.series and list(scan.skipped) == [str(path)]
    assert re.search(match, scan.skipped[str(path)])


SIEMENS: dict[str, tuple[Callable[[Dataset], None], str]] = {
    # 49 tiles make a 7x7 grid: 384 / 7 is no whole tile.
    "tiles-do-not-divide-the-image": (lambda ds: set_mosaic_count(ds, b"49"),
                                      r"tiles of 54x54 do not divide the 384x384 image"),
    # More tiles than pixels: the grid is wider than the image, the tile size 0.
    "more-tiles-than-pixels": (lambda ds: set_mosaic_count(ds, b"999999"),
                               r"tiles of 0x0 do not divide the 384x384 image"),
    "zero-tiles": (lambda ds: set_mosaic_count(ds, b"0"), r"without NumberOfImagesInMosaic"),
    "no-csa-header": (lambda ds: ds.__delitem__(CSA_IMAGE), r"without NumberOfImagesInMosaic"),
    "csa-header-truncated": (lambda ds: setattr(ds[CSA_IMAGE], "value", ds[CSA_IMAGE].value[:20]),
                             r"unreadable CSA header"),
    "csa-header-garbage": (lambda ds: setattr(ds[CSA_IMAGE], "value",
                                              b"SV10\x04\x03\x02\x01" + b"\xff" * 100),
                           r"unreadable CSA header"),
    "tile-count-not-a-number": (lambda ds: set_mosaic_count(ds, b"ab"), r"unreadable CSA header"),
    "no-orientation": (lambda ds: ds.__delitem__("ImageOrientationPatient"),
                       r"without ImageOrientationPatient/PixelSpacing"),
    "no-pixel-spacing": (lambda ds: ds.__delitem__("PixelSpacing"),
                         r"without ImageOrientationPatient/PixelSpacing"),
    "no-position": (lambda ds: ds.__delitem__("ImagePositionPatient"),
                    r"without ImagePositionPatient"),
    "no-slice-spacing": (lambda ds: (ds.__delitem__("SpacingBetweenSlices"),
                                     ds.__delitem__("SliceThickness")),
                         r"without SpacingBetweenSlices/SliceThickness"),
}


@pytest.mark.parametrize("case", list(SIEMENS))
def test_siemens_mosaic_that_does_not_add_up_is_refused(tmp_path, case):
    ds = siemens()
    breaks, match = SIEMENS[case]
    breaks(ds)
    assert_mosaic_error(tmp_path, ds, match)


def test_the_intact_mosaic_loads(tmp_path):
    """The control: the same file, unbroken, splits into its 35 tiles."""
    path = tmp_path / "mosaic.dcm"
    siemens().save_as(path)
    assert ms.open_volume(str(path)).shape == (35, 64, 64)


def test_negative_tile_count_is_a_mosaic_error(tmp_path):
    ds = siemens()
    set_mosaic_count(ds, b"-1")
    path = tmp_path / "mosaic.dcm"
    ds.save_as(path)
    with pytest.raises(MosaicError):
        ms.open_volume(str(path))


def _drop_uih_sequence(ds: Dataset) -> None:
    block = ds.private_block(0x0065, "Image Private Header")
    del ds[block.get_tag(0x51)]


def _drop_tile_position(ds: Dataset) -> None:
    del uih_items(ds)[2].ImagePositionPatient


UIH: dict[str, tuple[Callable[[Dataset], None], str]] = {
    "no-per-slice-sequence": (_drop_uih_sequence, r"without its per-slice sequence \(0065,1051\)"),
    "no-acquisition-matrix": (lambda ds: ds.__delitem__("AcquisitionMatrix"),
                              r"without AcquisitionMatrix"),
    "tile-without-position": (_drop_tile_position, r"tile 3 has no ImagePositionPatient"),
    # 60x60 tiles: 256 rows are no whole number of them.
    "tiles-do-not-divide-the-image": (lambda ds: setattr(ds, "AcquisitionMatrix", [60, 0, 0, 60]),
                                      r"tiles of 60x60 do not divide the 256x320 image"),
    # 128x160 tiles divide the image, but a 2x2 grid holds 4 of the 20 tiles.
    "tiles-do-not-fit-the-grid": (lambda ds: setattr(ds, "AcquisitionMatrix", [128, 0, 0, 160]),
                                  r"20 mosaic tiles do not fit a 2x2 grid of 128x160"),
}


@pytest.mark.parametrize("case", list(UIH))
def test_uih_vframe_that_does_not_add_up_is_refused(tmp_path, case):
    ds = uih()
    breaks, match = UIH[case]
    breaks(ds)
    assert_mosaic_error(tmp_path, ds, match)
