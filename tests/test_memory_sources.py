"""In-memory sources (bytes, file-like objects, pydicom Datasets) give the pixels, metadata and
volume geometry of the same files, as pydicom reads them from disk (never medstream's own reading
of the files: see reference.py)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset

import medstream as ms
from corpus import find
from reference import (expected_affine, expected_enhanced, expected_image, header_value,
                       keyword_of, matches)
from series import expected_stack, write_series


def _is_volume(vol, voxels: np.ndarray, affine: np.ndarray) -> None:
    """Element-wise voxels (so no order, flip or transpose passes) and the affine."""
    assert vol.shape == voxels.shape and vol.dtype == np.int16
    assert np.array_equal(vol.scalar_data, voxels)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-4)


@pytest.mark.parametrize("form", ["bytes", "file", "dataset"])
def test_a_series_in_memory_is_the_series_on_disk(tmp_path, form):
    paths = write_series(tmp_path / "s", 6, size=24, orientation="coronal")
    items = {"bytes": lambda p: p.read_bytes(),
             "file": lambda p: io.BytesIO(p.read_bytes()),
             "dataset": lambda p: pydicom.dcmread(p)}[form]
    memory = ms.open_volume([items(p) for p in paths])  # shuffled files: ordered by position
    _is_volume(memory, expected_stack(paths), expected_affine(paths))
    assert all(i.startswith("dicombytes:") for i in memory.image_ids)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm", "US1_UNCR.dcm"])
def test_one_image_from_bytes_equals_the_file(name, tmp_path):
    path = find(name)
    ident = ms.register_bytes(path.read_bytes())
    assert ident.startswith("dicombytes:") and ms.registered_image_ids(ident) == [ident]
    image = ms.load_image(ident).result(30)
    assert matches(image.pixel_data, expected_image(path, None, tmp_path)["pixels"])
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    checked = 0
    for module in ("imagePlaneModule", "imagePixelModule", "modalityLutModule"):
        values = ms.metadata.get(module, ident)
        for key, value in values.items():
            keyword = keyword_of(key)
            if keyword is not None:  # an attribute of the header, not a derived value
                assert value == header_value(ds, keyword), (module, key)
                checked += 1
    assert checked >= 15


def test_multiframe_gives_one_id_per_frame(tmp_path):
    path = find("emri_small.dcm")  # 10 frames
    ident = ms.register_bytes(path.read_bytes())
    ids = ms.registered_image_ids(ident)
    assert ids == [f"{ident}?frame={k}" for k in range(1, 11)]
    frames = pydicom.dcmread(path).pixel_array
    for k in (1, 7, 10):
        got = ms.load_image(ids[k - 1]).result(30).pixel_data
        assert matches(got, frames[k - 1]), k
    assert not np.array_equal(frames[0], frames[6])  # the frames differ: the index matters
    enhanced = find("eCT_Supplemental.dcm")  # an enhanced CT: one object, a volume
    _is_volume(ms.open_volume(enhanced.read_bytes()), *expected_enhanced(enhanced))


def test_registering_again_reuses_the_id_and_the_cached_volume(tmp_path):
    paths = write_series(tmp_path / "s", 3, size=16)
    data = paths[0].read_bytes()
    assert ms.register_bytes(data) == ms.register_bytes(bytearray(data))
    ds = pydicom.dcmread(paths[0])
    assert ms.register_dataset(ds) == ms.register_dataset(ds)
    blobs = [p.read_bytes() for p in paths]
    assert ms.open_volume(blobs) is ms.open_volume(blobs)


def test_a_dataset_without_file_meta_is_taken_as_native(tmp_path):
    path = find("CT_small.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta = FileMetaDataset()
    image = ms.load_image(ms.register_dataset(ds)).result(30)
    assert matches(image.pixel_data, expected_image(path, None, tmp_path)["pixels"])


def test_unregister_and_the_byte_bound():
    path = find("CT_small.dcm")  # 32 kB of pixels
    ident = ms.register_bytes(path.read_bytes())
    assert ms.unregister(ident) and not ms.unregister(ident)
    with pytest.raises(ms.ImageLoadError, match="not registered"):
        ms.load_image(ident).result(30)
    old = ms.memory_sources.max_bytes
    try:
        ms.memory_sources.set_max_bytes(70_000)  # room for two
        ids = [ms.register_dataset(pydicom.dcmread(path)) for _ in range(3)]
        assert ms.memory_sources.nbytes <= 70_000
        with pytest.raises(ms.ImageLoadError, match="evicted"):
            ms.load_image(ids[0]).result(30)
        assert ms.load_image(ids[2]).result(30).shape == (128, 128)
        ms.memory_sources.set_max_bytes(1)  # a lower bound evicts at once
        assert len(ms.memory_sources) == 0 and ms.memory_sources.nbytes == 0
        one = ms.register_bytes(path.read_bytes())  # one object over the bound still loads
        assert len(ms.memory_sources) == 1
        assert ms.load_image(one).result(30).shape == (128, 128)
    finally:
        ms.memory_sources.set_max_bytes(old)


def test_what_is_not_dicom_says_so():
    with pytest.raises(TypeError):
        ms.register_bytes(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ms.register_dataset(b"...")  # type: ignore[arg-type]
    with pytest.raises(ms.DicomParseError):
        ms.register_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(ms.ImageLoadError, match="not a dicombytes ID"):
        ms.load_image("dicombytes:x").result(30)
