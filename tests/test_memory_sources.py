"""In-memory sources (bytes, file-like objects, pydicom Datasets) give the same pixels, metadata
and volume geometry as the same files loaded from disk."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset

import medstream as ms
from corpus import find
from series import write_series


def _same_volume(a, b) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.scalar_data, b.scalar_data)
    ga, gb = a.geometry, b.geometry
    np.testing.assert_allclose(ga.origin, gb.origin)
    np.testing.assert_allclose(ga.spacing, gb.spacing)
    np.testing.assert_allclose(ga.direction, gb.direction)


@pytest.mark.parametrize("form", ["bytes", "file", "dataset"])
def test_a_series_in_memory_is_the_series_on_disk(tmp_path, form):
    paths = write_series(tmp_path / "s", 6, size=24, orientation="coronal")
    disk = ms.open_volume(tmp_path / "s")
    items = {"bytes": lambda p: p.read_bytes(),
             "file": lambda p: io.BytesIO(p.read_bytes()),
             "dataset": lambda p: pydicom.dcmread(p)}[form]
    memory = ms.open_volume([items(p) for p in paths])  # shuffled files: ordered by position
    _same_volume(memory, disk)
    assert all(i.startswith("dicombytes:") for i in memory.image_ids)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_jp2klossless.dcm", "US1_UNCR.dcm"])
def test_one_image_from_bytes_equals_the_file(name):
    path = find(name)
    ident = ms.register_bytes(path.read_bytes())
    assert ident.startswith("dicombytes:") and ms.registered_image_ids(ident) == [ident]
    image = ms.load_image(ident).result(30)
    ref = ms.load_image(ms.dicomfile_image_id(path)).result(30)
    assert np.array_equal(image.pixel_data, ref.pixel_data)
    for module in ("imagePlaneModule", "imagePixelModule", "modalityLutModule"):
        assert ms.metadata.get(module, ident) == ms.metadata.get(module, ms.dicomfile_image_id(path))


def test_multiframe_gives_one_id_per_frame():
    path = find("emri_small.dcm")  # 10 frames
    ident = ms.register_bytes(path.read_bytes())
    ids = ms.registered_image_ids(ident)
    assert ids == [f"{ident}?frame={k}" for k in range(1, 11)]
    for k in (1, 7, 10):
        got = ms.load_image(ids[k - 1]).result(30).pixel_data
        want = ms.load_image(ms.dicomfile_image_id(path, k)).result(30).pixel_data
        assert np.array_equal(got, want)
    enhanced = find("eCT_Supplemental.dcm")  # an enhanced CT: one object, a volume
    _same_volume(ms.open_volume(enhanced.read_bytes()), ms.open_volume(str(enhanced)))


def test_registering_again_reuses_the_id_and_the_cached_volume(tmp_path):
    paths = write_series(tmp_path / "s", 3, size=16)
    data = paths[0].read_bytes()
    assert ms.register_bytes(data) == ms.register_bytes(bytearray(data))
    ds = pydicom.dcmread(paths[0])
    assert ms.register_dataset(ds) == ms.register_dataset(ds)
    blobs = [p.read_bytes() for p in paths]
    assert ms.open_volume(blobs) is ms.open_volume(blobs)


def test_a_dataset_without_file_meta_is_taken_as_native():
    path = find("CT_small.dcm")
    ds = pydicom.dcmread(path)
    ds.file_meta = FileMetaDataset()
    image = ms.load_image(ms.register_dataset(ds)).result(30)
    ref = ms.load_image(ms.dicomfile_image_id(path)).result(30)
    assert np.array_equal(image.pixel_data, ref.pixel_data)


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
