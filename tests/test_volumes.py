"""Streaming volumes from real DICOM series written by the tests: geometry in every orientation
(checked against dcm2niix), the never-silently-wrong cases, streaming, events, failures, cancel."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medstream as ms
from medstream.volumes.streaming import load_order
from needs import need_tool
from series import ORIENTATIONS, expected_stack, oblique, rotation, transcode, write_series

CASES = {
    "axial": ORIENTATIONS["axial"],
    "coronal": ORIENTATIONS["coronal"],
    "sagittal": ORIENTATIONS["sagittal"],
    "oblique": oblique(20, 12),
}


def ids_of(paths: list[Path]) -> list[str]:
    return [ms.dicomfile_image_id(p) for p in paths]


def volume_of(paths: list[Path], volume_id: str = "test-volume", **opts) -> ms.StreamingImageVolume:
    vol = ms.create_and_cache_volume(volume_id, image_ids=ids_of(paths), **opts).result(60)
    vol.load().result(60)
    return vol


def expected_affine(iop, pixel_spacing, spacing, origin) -> np.ndarray:
    iop = np.array(iop, dtype=float)
    a = np.eye(4)
    a[:3, 0] = iop[:3] * pixel_spacing[1]
    a[:3, 1] = iop[3:] * pixel_spacing[0]
    a[:3, 2] = np.cross(iop[:3], iop[3:]) * spacing
    a[:3, 3] = origin
    return a


def dcm2niix(folder: Path, out: Path) -> nib.Nifti1Image:
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcm2niix", "-z", "n", "-f", "ref", "-o", str(out), str(folder)],
                   check=True, capture_output=True, timeout=120)
    return nib.load(str(out / "ref.nii"))


PACKAGES = {"dcm2niix": "dcm2niix", "gdcmconv": "libgdcm-tools", "openssl": "openssl"}


def need(tool: str) -> None:
    """A command-line tool (dcmtk unless listed in PACKAGES): fails in CI, skips elsewhere."""
    need_tool(tool, PACKAGES.get(tool, "dcmtk"))


@pytest.mark.parametrize("name", list(CASES))
def test_orientations_match_pydicom_and_dcm2niix(tmp_path, name):
    iop = CASES[name]
    paths = write_series(tmp_path / name, 16, orientation=iop, spacing=2.5,
                         pixel_spacing=(0.8, 0.7), size=48, columns=40)
    vol = volume_of(paths)
    assert vol.shape == (16, 48, 40) and vol.dtype == np.int16
    assert np.array_equal(vol.scalar_data, expected_stack(paths))
    g = vol.geometry
    assert g.regular and not g.sheared and g.warnings == []
    origin = np.array([-120.0, -95.5, 40.0])
    np.testing.assert_allclose(g.affine, expected_affine(iop, (0.8, 0.7), 2.5, origin), atol=1e-5)
    np.testing.assert_allclose(g.spacing, (0.7, 0.8, 2.5), atol=1e-6)
    # Every voxel (0, 0, k) lands on its file's ImagePositionPatient.
    for k, image_id in enumerate(vol.image_ids):
        ipp = ms.metadata.get("imagePlaneModule", image_id)["image_position_patient"]
        np.testing.assert_allclose(g.affine @ [0, 0, k, 1], [*ipp, 1], atol=1e-4)

    need("dcm2niix")
    ref = nib.as_closest_canonical(dcm2niix(tmp_path / name, tmp_path / f"{name}-nii"))
    ours = nib.as_closest_canonical(vol.to_nifti())
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    assert ours.shape == ref.shape
    assert np.array_equal(np.asarray(ours.dataobj), ref.get_fdata().astype(np.int16))


@pytest.mark.parametrize("tool", [["dcmcjpls", "+el"], ["dcmcrle"], ["gdcmconv", "--j2k"],
                                  ["dcmcjpeg", "+e1"]])
def test_compressed_series_equal_uncompressed(tmp_path, tool):
    need(tool[0])
    paths = write_series(tmp_path / "raw", 10, orientation=oblique(), size=64)
    packed = transcode(paths, tmp_path / tool[0], tool)
    raw = volume_of(paths, "raw")
    vol = volume_of(packed, "packed")
    assert ms.metadata.get("transferSyntax", vol.image_ids[0])["transfer_syntax_uid"] != \
        "1.2.840.10008.1.2.1"
    assert np.array_equal(raw.scalar_data, vol.scalar_data)
    np.testing.assert_allclose(raw.affine, vol.affine)


def test_missing_slice_raises_by_default_keep_and_resample(tmp_path):
    offsets = [k * 2.0 for k in range(12) if k != 5]
    paths = write_series(tmp_path / "gap", offsets=offsets, size=32)
    with pytest.raises(ms.GeometryError) as err:
        ms.create_and_cache_volume("gap", image_ids=ids_of(paths)).result(30)
    msg = str(err.value)
    assert "irregular slice spacing" in msg and "4 mm" in msg and "1 slice(s) appear to be missing" in msg
    assert len(err.value.image_ids) == 1

    kept = volume_of(paths, "gap-keep", spacing="keep")
    assert any("missing" in w for w in kept.geometry.warnings)
    assert kept.shape[0] == 11 and not kept.geometry.regular
    np.testing.assert_allclose(np.diff(kept.geometry.offsets)[4], 4.0)

    res = volume_of(paths, "gap-resample", spacing="resample")
    assert res.shape[0] == 12 and res.geometry.regular
    # The missing slice is the average of its neighbours; the others are untouched.
    acquired = kept.scalar_data.astype(np.float32)
    np.testing.assert_allclose(res.scalar_data[5], np.round((acquired[4] + acquired[5]) / 2), atol=1)
    assert np.array_equal(res.scalar_data[6:], kept.scalar_data[5:])


def test_irregular_spacing_is_reported_with_numbers(tmp_path):
    offsets = [0, 2.5, 5, 7.5, 10.7, 13, 15.5, 18, 20.5]
    paths = write_series(tmp_path / "irr", offsets=offsets, size=32)
    with pytest.raises(ms.GeometryError, match=r"irregular slice spacing: typical 2.5 mm, but 3.2 mm"):
        ms.create_and_cache_volume("irr", image_ids=ids_of(paths)).result(30)


def test_gantry_tilt_keeps_the_shear_or_raises(tmp_path):
    tilt = 15.0
    r = rotation("x", tilt)
    iop = tuple(np.concatenate([r[:, 0], r[:, 1]]))  # image plane tilted about the x axis
    paths = write_series(tmp_path / "tilt", 12, orientation=iop, spacing=3.0, size=32,
                         stack_direction=(0, 0, 1))  # the table moves along z
    vol = volume_of(paths, "tilt")
    g = vol.geometry
    assert any("gantry tilt" in w for w in g.warnings)
    # Geometry computed in the caller's thread also raises a Python warning.
    slices = [ms.SliceInfo.from_modules(i, ms.metadata.get("all", i)) for i in vol.image_ids]
    with pytest.warns(ms.GeometryWarning, match="gantry tilt"):
        ms.compute_geometry(slices)
    assert abs(g.tilt_degrees - tilt) < 1e-3 and g.sheared
    # Sheared, not silently orthogonal: the slice axis is the table direction.
    np.testing.assert_allclose(g.affine[:3, 2], [0, 0, 3.0], atol=1e-5)
    for k, image_id in enumerate(vol.image_ids):
        ipp = ms.metadata.get("imagePlaneModule", image_id)["image_position_patient"]
        np.testing.assert_allclose(g.affine @ [5, 7, k, 1], [*(np.array(ipp) + r[:, 0] * 0.7 * 5
                                                               + r[:, 1] * 0.8 * 7), 1], atol=1e-4)
    img = vol.to_nifti()
    assert int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 1
    np.testing.assert_allclose(img.affine, np.diag([-1, -1, 1, 1]) @ g.affine, atol=1e-5)
    with pytest.raises(ms.GeometryError, match="gantry tilt"):
        ms.create_and_cache_volume("tilt-raise", image_ids=ids_of(paths), tilt="raise").result(30)


def test_two_interleaved_series_are_refused_and_scan_separates_them(tmp_path):
    a = write_series(tmp_path / "mix", 8, size=32, name_prefix="A")
    b = write_series(tmp_path / "mix", 8, size=32, name_prefix="B", offsets=[k * 2.5 + 1.25 for k in range(8)])
    ids = [i for pair in zip(ids_of(a), ids_of(b)) for i in pair]
    with pytest.raises(ms.GeometryError, match="2 series mixed") as err:
        ms.create_and_cache_volume("mix", image_ids=ids).result(30)
    assert set(err.value.image_ids) in (set(ids_of(a)), set(ids_of(b)))
    scan = ms.scan_folder(tmp_path / "mix")
    assert sorted(s.n_images for s in scan) == [8, 8]
    assert {frozenset(s.image_ids) for s in scan} == {frozenset(ids_of(a)), frozenset(ids_of(b))}


def test_duplicate_positions_refused_and_split_by_scan(tmp_path):
    uid = "1.2.3.4.5.6.7"
    e1 = write_series(tmp_path / "dup", 6, size=32, series_uid=uid, name_prefix="E1",
                      extra={"EchoNumbers": 1}, frame_of_reference="1.2.3.9")
    e2 = write_series(tmp_path / "dup", 6, size=32, series_uid=uid, name_prefix="E2",
                      extra={"EchoNumbers": 2}, frame_of_reference="1.2.3.9")
    with pytest.raises(ms.GeometryError, match="frames of 2 different acquisitions"):
        ms.create_and_cache_volume("dup", image_ids=ids_of(e1 + e2)).result(30)
    scan = ms.scan_folder(tmp_path / "dup")
    assert [s.n_images for s in scan] == [6, 6]
    assert {frozenset(s.image_ids) for s in scan} == {frozenset(ids_of(e1)), frozenset(ids_of(e2))}
    assert all(s.geometry is not None and s.geometry.regular for s in scan)
    # Without distinguishing tags, repeats are split by InstanceNumber, never interleaved.
    stacks = ms.split_series([ms.SliceInfo(f"x{k}{r}", 4, 4, position=(0, 0, float(k)),
                                           instance_number=r * 10 + k) for r in range(2)
                              for k in range(3)])
    assert [[s.image_id for s in st] for st in stacks] == [["x00", "x10", "x20"], ["x01", "x11", "x21"]]


def test_mixed_orientation_and_size_name_the_images(tmp_path):
    ax = write_series(tmp_path / "o", 6, size=32, series_uid="1.2.3", frame_of_reference="1.2.9")
    odd = write_series(tmp_path / "o2", 1, size=32, orientation="coronal", series_uid="1.2.3",
                       frame_of_reference="1.2.9")
    with pytest.raises(ms.GeometryError, match="mixed orientation") as err:
        ms.create_and_cache_volume("ori", image_ids=ids_of(ax + odd)).result(30)
    assert err.value.image_ids == ids_of(odd)
    small = write_series(tmp_path / "s2", 1, size=16, series_uid="1.2.3", frame_of_reference="1.2.9")
    with pytest.raises(ms.GeometryError, match="different sizes") as err:
        ms.create_and_cache_volume("size", image_ids=ids_of(ax + small)).result(30)
    assert err.value.image_ids == ids_of(small)


def test_events_progress_and_interleaved_order(tmp_path):
    paths = write_series(tmp_path / "ev", 13, size=32)
    ms.request_pools.set_max_simultaneous_requests("prefetch", 1)
    modified, completed, progress = [], [], []
    ms.events.on(ms.Events.IMAGE_VOLUME_MODIFIED, lambda e: modified.append(e.detail["index"]))
    ms.events.on(ms.Events.IMAGE_VOLUME_LOADING_COMPLETED, lambda e: completed.append(e.detail))
    vol = ms.create_and_cache_volume("ev", image_ids=ids_of(paths)).result(30)
    assert vol.status.frames_loaded == 0 and not vol.status.loaded
    vol.load(on_progress=progress.append).result(30)
    assert modified == load_order(13, "interleaved")
    assert [p.frames_loaded for p in progress] == list(range(1, 14)) and progress[-1].total == 13
    assert len(completed) == 1 and completed[0]["failed"] == {}
    assert vol.status.loaded and vol.status.frames_loaded == 13
    # A finished volume resolves at once and fires completion exactly once more.
    vol.load().result(5)
    assert len(completed) == 2 and len(modified) == 13
    assert ms.create_and_cache_volume("ev", image_ids=ids_of(paths)).result(5) is vol


def test_load_order():
    assert load_order(5, "sequential") == [0, 1, 2, 3, 4]
    order = load_order(17)
    assert order[:3] == [8, 0, 16] and order[3:7] == [4, 12, 2, 6]
    assert sorted(order) == list(range(17))
    assert load_order(1) == [0] and load_order(0) == []
    with pytest.raises(ValueError):
        load_order(3, "random")  # type: ignore[arg-type]


def test_failed_frames_are_listed_and_a_retry_completes(tmp_path):
    paths = write_series(tmp_path / "bad", 8, size=32)
    vol = ms.create_and_cache_volume("bad", image_ids=ids_of(paths)).result(30)
    victim = Path(vol.image_ids[3][len("dicomfile:"):])
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # truncated after the header was read
    with pytest.raises(ms.VolumeLoadError) as err:
        vol.load().result(30)
    assert list(err.value.failed) == [vol.image_ids[3]]
    assert "too short" in str(err.value) and vol.image_ids[3] in str(err.value)
    assert vol.status.frames_loaded == 7 and not vol.status.loaded
    assert vol.loaded_mask.sum() == 7 and not vol.loaded_mask[3]
    victim.write_bytes(good)
    vol.load().result(30)
    assert vol.status.loaded and vol.status.failed == {}
    assert np.array_equal(vol.scalar_data, expected_stack(paths))


def test_cancel_loading_stops_requests(tmp_path):
    paths = write_series(tmp_path / "c", 60, size=64)
    ms.request_pools.set_max_simultaneous_requests("prefetch", 1)
    vol = ms.create_and_cache_volume("c", image_ids=ids_of(paths)).result(30)
    started = threading.Event()
    vol_load = vol.load(on_progress=lambda p: started.set())
    assert started.wait(10)
    assert vol.cancel_loading()
    with pytest.raises(Exception) as err:
        vol_load.result(5)
    assert "Cancelled" in type(err.value).__name__
    assert vol.status.cancelled and 0 < vol.status.frames_loaded < 60
    assert sum(ms.request_pools.get_running().values()) == 0
    assert sum(ms.request_pools.get_request_pool().values()) == 0
    vol.load().result(30)  # resumes with only the missing frames
    assert vol.status.loaded and np.array_equal(vol.scalar_data, expected_stack(paths))


def test_async_volume_api(tmp_path):
    paths = write_series(tmp_path / "a", 6, size=32)

    async def main() -> ms.StreamingImageVolume:
        vol = await ms.create_and_cache_volume("async", image_ids=ids_of(paths))
        ticks = []
        hb = asyncio.create_task(_heartbeat(ticks))
        await vol.load()
        hb.cancel()
        return vol

    vol = asyncio.run(main())
    assert vol.status.loaded and np.array_equal(vol.scalar_data, expected_stack(paths))
    v2 = asyncio.run(ms.open_volume_async(tmp_path / "a"))
    assert np.array_equal(v2.scalar_data, vol.scalar_data)


async def _heartbeat(ticks: list[float]) -> None:
    while True:
        ticks.append(1)
        await asyncio.sleep(0.001)


def test_cache_accounts_volume_and_purge(tmp_path):
    paths = write_series(tmp_path / "p", 8, size=32)
    vol = volume_of(paths, "p")
    kept = ms.cache.stores()  # what the scan kept besides pixels: metadata, pixel locators
    assert kept["metadata"] > 0 and kept["pixel locators"] > 0
    assert ms.get_cache_size() == vol.size_in_bytes + sum(kept.values())
    assert vol.size_in_bytes == 8 * 32 * 32 * 2
    ms.purge_cache()
    assert ms.get_cache_size() == 0 and not any(ms.cache.stores().values())


def test_open_volume_folder_file_and_choice(tmp_path):
    write_series(tmp_path / "two" / "a", 5, size=32)
    write_series(tmp_path / "two" / "b", 9, size=32)
    with pytest.raises(ms.VolumeError, match="2 series found"):
        ms.open_volume(tmp_path / "two")
    vol = ms.open_volume(tmp_path / "two", series="largest")
    assert vol.shape == (9, 32, 32)
    (tmp_path / "two" / "notes.txt").write_text("not dicom")
    scan = ms.scan_folder(tmp_path / "two")
    assert len(scan) == 2 and scan.files == 15
    assert list(scan.skipped) == [str(tmp_path / "two" / "notes.txt")]
    assert "not a DICOM" in scan.skipped[str(tmp_path / "two" / "notes.txt")]
    single = ms.open_volume(sorted((tmp_path / "two" / "a").glob("*.dcm"))[0])
    assert single.shape == (1, 32, 32)


def test_save_formats(tmp_path):
    paths = write_series(tmp_path / "s", 6, orientation="sagittal", size=32)
    vol = volume_of(paths, "s")
    nii = vol.save(tmp_path / "out" / "v.nii.gz")
    back = nib.load(str(nii))
    np.testing.assert_allclose(back.affine, np.diag([-1, -1, 1, 1]) @ vol.affine, atol=1e-5)
    assert np.array_equal(np.asarray(back.dataobj).transpose(2, 1, 0), vol.scalar_data)
    assert np.array_equal(np.load(vol.save(tmp_path / "v.npy")), vol.scalar_data)
    z = np.load(vol.save(tmp_path / "v.npz"))
    np.testing.assert_allclose(z["affine_lps"], vol.affine)
    with pytest.raises(ValueError):
        vol.save(tmp_path / "v.tiff")


def test_geometry_warns_not_silently(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_series(tmp_path / "w", 5, size=16)
        volume_of(paths, "w")  # a regular series gives no warning at all


def test_a_users_own_dicomfile_loader_is_used_for_volume_frames(tmp_path):
    """The batched local-file path steps aside when the scheme's loader is not medstream's."""
    from medstream.loaders import load_dicomfile
    from medstream.loaders.dicomfile import load_sync

    paths = write_series(tmp_path / "own", 4, size=32)
    calls = []

    def mine(image_id, **options):
        calls.append(image_id)
        return load_sync(image_id)

    ms.register_image_loader("dicomfile", mine)
    try:
        vol = ms.open_volume(tmp_path / "own")
    finally:
        ms.register_image_loader("dicomfile", load_dicomfile)
    assert sorted(calls) == sorted(vol.image_ids) and vol.status.loaded
    assert np.array_equal(vol.scalar_data, expected_stack(paths))


def test_a_file_replaced_by_another_size_before_the_load_is_refused(tmp_path):
    """The header read again after the geometry was built: a frame of another size must not be
    read into the slice reshaped (the direct-read path checks the frame's size)."""
    import time as _time

    import pydicom

    from medstream.loaders.dicomfile import read_file_modules
    from series import write_series

    paths = write_series(tmp_path / "s", 4, size=16, shuffle=False)
    vol = ms.open_volume(str(tmp_path / "s"), load=False)
    target = next(p for p in paths if str(p) in vol.image_ids[2])
    ds = pydicom.dcmread(target)
    ds.Rows, ds.Columns = 8, 32
    ds.PixelData = np.arange(256, dtype=np.int16).tobytes()
    _time.sleep(0.01)
    ds.save_as(target)
    read_file_modules(str(target))
    with pytest.raises(ms.VolumeLoadError, match="shape"):
        vol.load().result(30)
    assert not vol.loaded_mask[2]
