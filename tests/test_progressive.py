"""Progressive loading: retrieve stages, per-slice status, HTJ2K frames in two ranges, decimated
volumes. References are independent: the uncompressed originals read with pydicom (the HTJ2K
codec is lossless), and OpenJPH's own full decode for the codestream helpers."""

from __future__ import annotations

import concurrent.futures
import time

import imagecodecs
import numpy as np
import pytest

import medstream as ms
from medstream.codecs.htj2k import decode_leading, resolutions
from medstream.codecs.frame import FrameInfo
from reference import expected_affine
from series import expected_stack, htj2k_series, write_series
from static_dicomweb import StaticDicomWeb

N = 16


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """(uncompressed files, HTJ2K RPCL+TLM files) of a 16 x 256^2 real-CT-based series."""
    root = tmp_path_factory.mktemp("prog")
    raw = write_series(root / "raw", N, size=256, spacing=1.5, pixel_spacing=(0.7, 0.7))
    return raw, htj2k_series(raw, root / "htj2k", noise=12)


@pytest.fixture
def served(ct):
    server = StaticDicomWeb(ct[1][0].parent)
    yield server
    server.close()


SMALL = (ms.Stage("initial", positions=(0.5, 0, -1), fill=2),
         ms.Stage("quarter", decimate=4, retrieve="leading", leading_bytes=4096, fill=2),
         ms.Stage("half", decimate=4, offset=2, retrieve="leading", leading_bytes=4096, fill=1),
         ms.Stage("final"))


# -- plans ---------------------------------------------------------------------------------------
def test_stage_slices_and_plans():
    assert ms.Stage("a", positions=(0.5, 0, -1)).slices(9) == [4, 0, 8]
    assert ms.Stage("a", decimate=4, offset=1).slices(10) == [1, 5, 9]
    assert ms.Stage("a", positions=(1.0, 3, 3, 99)).slices(5) == [4, 3]
    with pytest.raises(ValueError):
        ms.Stage("a", decimate=0)
    with pytest.raises(ValueError):
        ms.Stage("a", retrieve="thumbnail")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ms.Stage("a", positions=(1.5,)).slices(4)
    from medstream.volumes.stages import plan_of, uncovered

    assert plan_of("progressive") == ms.PROGRESSIVE
    assert plan_of([{"name": "x", "decimate": 2}])[0] == ms.Stage("x", decimate=2)
    with pytest.raises(ValueError):
        plan_of("fast")
    assert uncovered([ms.Stage("x", decimate=2)], 5) == [1, 3]


# -- codestream helpers --------------------------------------------------------------------------
def _info(px: np.ndarray, bits: int) -> FrameInfo:
    return FrameInfo(rows=px.shape[0], columns=px.shape[1], samples_per_pixel=1,
                     bits_allocated=16, bits_stored=bits, pixel_representation=0,
                     photometric_interpretation="MONOCHROME2",
                     transfer_syntax_uid="1.2.840.10008.1.2.4.202")


def test_resolutions_from_tlm_and_reduced_decodes_equal_openjph():
    rng = np.random.default_rng(3)
    px = (rng.normal(200, 60, (128, 160)).clip(0, 4095)).astype(np.uint16)
    px[:20] = 0  # background next to zero: a reduced decode overshoots below it
    code = bytes(imagecodecs.htj2k_encode(px, reversible=True, tlm=True,
                                          tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS))
    found = resolutions(code[:400])
    assert found is not None and found.levels == 6 and found.ends[-1] == len(code) - 2  # EOC
    info = _info(px, 12)
    assert np.array_equal(decode_leading("x", code, info), px)
    for skip in (1, 2, 3):
        want = imagecodecs.htj2k_decode(code, skipres=skip).astype(np.int64)
        want[want >= 32768] -= 65536  # OpenJPH wraps the overshoot below 0 in uint16
        got = decode_leading("x", code[: found.end_for(skip)], info, skip)
        assert got.shape == (-(-128 // 2**skip), -(-160 // 2**skip))
        assert np.array_equal(got, want.clip(0, 4095))
        assert got.max() <= 4095
    assert resolutions(code[:40]) is None  # inside the main header: read more
    plain = bytes(imagecodecs.htj2k_encode(px, reversible=True))
    assert resolutions(plain).ends == ()  # no TLM: where resolutions end is unknown


def test_leading_bytes_decode_close_and_improve():
    raw = expected_stack(write_series(__import__("pathlib").Path(
        __import__("tempfile").mkdtemp()), 1, size=256))[0].astype(np.int32) + 1024
    px = raw.astype(np.uint16)
    code = bytes(imagecodecs.htj2k_encode(px, reversible=True))
    errors = [np.abs(decode_leading("x", code[:n], _info(px, 12)).astype(float) - px).mean()
              for n in (len(code) // 10, len(code) // 3, len(code))]
    assert errors[0] > errors[1] > errors[2] == 0
    assert errors[0] < 60  # a tenth of the bytes: a recognisable slice, not noise


# -- staged loads ----------------------------------------------------------------------------------
def _record(volume_progress: list):
    return lambda p: volume_progress.append((p.stage, p.index, int(p.quality)))


@pytest.mark.parametrize("where", ["files", "web"])
def test_staged_load_statuses_and_final_identity(ct, served, where):
    raw, coded = ct
    want = expected_stack(raw)
    src = str(coded[0].parent) if where == "files" else served.series_url
    stages: list = []
    handler = lambda e: stages.append((e.detail["stage"], e.detail["status"]))  # noqa: E731
    ms.events.add_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", handler)
    try:
        seen: list = []
        vol = ms.open_volume(src, load=False)
        assert (vol.slice_status == ms.SliceStatus.NONE).all()
        vol.load(_record(seen), stages=SMALL).result(60)
    finally:
        ms.events.remove_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", handler)
    assert np.array_equal(vol.scalar_data, want)  # bit-identical to the lossless originals
    assert (vol.slice_status == ms.SliceStatus.FINAL).all()
    assert [s for s, _ in stages] == ["initial", "quarter", "half", "final"]
    # After the quarter stage every slice shows something (final, lossy or filled).
    after_quarter = dict(stages)["quarter"]
    assert after_quarter[ms.SliceStatus.NONE] == 0 and after_quarter[ms.SliceStatus.LOSSY] > 0
    # Slice 4: lossy in the quarter stage, final in the last; never final twice.
    four = [(s, q) for s, k, q in seen if k == 4]
    assert four == [("quarter", ms.SliceStatus.LOSSY), ("final", ms.SliceStatus.FINAL)]
    assert sorted(k for s, k, q in seen if q == ms.SliceStatus.FINAL) == list(range(N))
    if where == "web":  # leading bytes, then the rest from where they stopped: one more range
        ranges = [r for _, r, _ in served.log if r]
        # 4, 12 (quarter; 0 and 8 came whole in the initial stage), 2, 6, 10, 14 (half)
        assert ranges.count("bytes=0-4095") == 6
        assert sum(1 for r in ranges if r.startswith("bytes=4096-")) == 6


def test_staged_bytes_equal_a_plain_load(ct, served):
    vol = ms.open_volume(served.series_url, stages="progressive")
    staged = served.bytes_sent()
    served.clear()
    ms.purge_cache()
    plain = ms.open_volume(served.series_url)
    assert np.array_equal(vol.scalar_data, plain.scalar_data)
    assert staged <= 1.02 * served.bytes_sent()  # each frame moved once, in two pieces


def test_server_without_range_still_loads(ct, orthanc):
    raw, coded = ct
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(orthanc.upload, coded))
    study, series, _ = orthanc.uids(infos[0]["ID"])
    seen: list = []
    vol = ms.open_volume(f"{orthanc.dicomweb}/studies/{study}/series/{series}",
                         stages=SMALL, on_progress=_record(seen))
    assert np.array_equal(vol.scalar_data, expected_stack(raw))
    # Orthanc answers a Range with the whole frame: nothing lossy, every frame final at once.
    assert not [q for _, _, q in seen if q == ms.SliceStatus.LOSSY]
    assert (vol.slice_status == ms.SliceStatus.FINAL).all()


def test_cancel_mid_stage_keeps_status_then_completes(ct, tmp_path):
    raw, coded = ct
    server = StaticDicomWeb(coded[0].parent, delay=0.15)
    try:
        vol = ms.open_volume(server.series_url, load=False)
        lossy = []
        job = vol.load(lambda p: lossy.append(p.index) if p.quality == ms.SliceStatus.LOSSY
                       else None, stages=SMALL)
        deadline = time.monotonic() + 20
        while not lossy and time.monotonic() < deadline:
            time.sleep(0.01)
        assert job.cancel()
        time.sleep(0.3)
        status = vol.slice_status.copy()
        assert (status == ms.SliceStatus.LOSSY).any() and (status < ms.SliceStatus.FINAL).any()
        assert vol.status.cancelled and not vol.status.loading
        with pytest.raises(ms.VolumeError, match="allow_lossy"):
            vol.save(tmp_path / "v.nii.gz", allow_partial=True)
        if (status == ms.SliceStatus.NONE).any():
            with pytest.raises(ms.VolumeError, match="allow_partial"):
                vol.save(tmp_path / "v.nii.gz", allow_lossy=True)
        out = vol.save(tmp_path / "v.nii.gz", allow_partial=True, allow_lossy=True)
        mask = np.load(str(out).replace(".nii.gz", ".mask.npy"))
        assert np.array_equal(mask, status == ms.SliceStatus.FINAL)
        server.delay = 0
        vol.load(stages=SMALL).result(60)  # resumes: what is final stays, the rest completes
        assert np.array_equal(vol.scalar_data, expected_stack(raw))
        vol.save(tmp_path / "done.nii.gz")
    finally:
        server.close()


def test_plain_codecs_degrade_to_final_loads(ct):
    raw, _ = ct
    seen: list = []
    vol = ms.open_volume(str(raw[0].parent), stages="progressive", on_progress=_record(seen))
    assert np.array_equal(vol.scalar_data, expected_stack(raw))
    assert {q for _, _, q in seen} == {ms.SliceStatus.FINAL}


# -- decimated volumes ---------------------------------------------------------------------------
def test_decimated_geometry_against_full_load_resampled(ct):
    raw, _ = ct
    full = ms.open_volume(str(raw[0].parent))
    dec = ms.open_volume(str(raw[0].parent), decimate=(2, 2, 4))
    assert dec.shape == (4, 128, 128) and dec.spacing == pytest.approx((1.4, 1.4, 6.0))
    np.testing.assert_allclose(dec.origin, full.origin)
    np.testing.assert_allclose(dec.affine[:3, :3], expected_affine(raw)[:3, :3] * [2, 2, 4])
    resampled = full.resample_to(dec, nearest=True)  # the full load on the decimated grid
    assert np.array_equal(dec.scalar_data, resampled.scalar_data)
    assert dec.volume_id != full.volume_id


def test_decimated_htj2k_reads_a_fraction(ct, served):
    raw, coded = ct
    full = expected_stack(raw)
    dec = ms.open_volume(served.series_url, decimate=(2, 2, 4))
    part = served.bytes_sent()
    # The reduced-resolution decode is the wavelet's low band: close to the full grid's samples.
    assert dec.shape == (4, 128, 128)
    assert np.abs(dec.scalar_data.astype(float) - full[::4, ::2, ::2]).mean() < 15
    served.clear()
    ms.purge_cache()
    ms.open_volume(served.series_url)
    assert part < 0.15 * served.bytes_sent()
    local = ms.open_volume(str(coded[0].parent), decimate=(2, 2, 4))
    assert np.array_equal(local.scalar_data, dec.scalar_data)
    with pytest.raises(ms.VolumeError, match="decimate"):
        ms.open_volume(served.series_url, decimate=(0, 1, 1))


def test_cli_preview_writes_a_stand_in_volume_then_the_final(ct, served, tmp_path):
    import nibabel as nib
    from test_cli import run

    raw, _ = ct
    out = tmp_path / "ct.nii.gz"
    proc = run("volume", served.series_url, "-o", str(out), "--preview")
    assert proc.returncode == 0, proc.stderr
    assert "ct.preview.nii.gz after stage 'quarter'" in proc.stdout
    preview = nib.load(str(tmp_path / "ct.preview.nii.gz"))
    final = nib.load(str(out))
    assert preview.shape == final.shape and np.allclose(preview.affine, final.affine)
    want = expected_stack(raw)  # (z, y, x); NIfTI holds (x, y, z) in RAS, so compare values
    assert np.array_equal(np.sort(final.get_fdata().ravel()), np.sort(want.ravel()))
    assert not np.array_equal(preview.get_fdata(), final.get_fdata())  # lossy and filled slices


def test_stages_refused_where_they_do_not_apply(ct):
    raw, _ = ct
    with pytest.raises(ms.VolumeError, match="stages"):
        ms.open_volume(str(raw[0].parent), dynamic=True, stages="progressive")


def test_rendered_stage_from_orthanc_stands_in_then_final(tmp_path, orthanc):
    """Orthanc renders frames as JPEG through the window asked for (the modality's range): the
    stand-ins map back to values within a few HU, then every slice is final and identical."""
    raw = write_series(tmp_path / "raw", 8, size=128)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(orthanc.upload, raw))
    study, series, _ = orthanc.uids(infos[0]["ID"])
    url = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
    shots: dict = {}
    handler = lambda e: shots.setdefault(e.detail["stage"], np.array(vol.scalar_data))  # noqa: E731
    vol = ms.open_volume(url, load=False)
    ms.events.add_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", handler)
    seen: list = []
    try:
        vol.load(_record(seen), stages=[
            ms.Stage("thumb", decimate=2, retrieve="rendered", fill=1),
            ms.Stage("thumb-small", decimate=2, offset=1, retrieve="rendered", shrink=2),
            ms.Stage("final")]).result(60)
    finally:
        ms.events.remove_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", handler)
    want = expected_stack(raw)
    assert np.array_equal(vol.scalar_data, want)
    lossy = sorted(k for s, k, q in seen if q == ms.SliceStatus.LOSSY)
    assert lossy == list(range(8))
    err = np.abs(shots["thumb"][::2].astype(float) - want[::2]).mean()
    bias = (shots["thumb"][::2].astype(float) - want[::2]).mean()
    assert err < 25 and abs(bias) < 4  # 4096 HU in 256 JPEG levels; no offset
    err_small = np.abs(shots["thumb-small"][1::2].astype(float) - want[1::2]).mean()
    assert err < err_small < 80  # rendered at half size and enlarged


def test_rendered_stage_without_a_renderer_loads_final(served, ct):
    raw, _ = ct
    seen: list = []
    vol = ms.open_volume(served.series_url, on_progress=_record(seen),
                         stages=[ms.Stage("thumb", decimate=2, retrieve="rendered")])
    assert np.array_equal(vol.scalar_data, expected_stack(raw))  # 404 for /rendered: no stand-in
    assert {q for _, _, q in seen} == {ms.SliceStatus.FINAL}


def test_frames_in_several_fragments_load_whole_and_identical(ct, tmp_path):
    """A frame split over fragments: its first fragment stands in, the completion reads the
    frame whole (as a plain load does) and the volume is identical."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    raw, coded = ct
    out = tmp_path / "frag"
    out.mkdir()
    for p in coded:
        ds = pydicom.dcmread(p)
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        ds.PixelData = encapsulate([frame], fragments_per_frame=3)
        ds.save_as(out / p.name, enforce_file_format=True)
    vol = ms.open_volume(str(out), stages=SMALL)
    assert np.array_equal(vol.scalar_data, expected_stack(raw))


@pytest.mark.parametrize("lie", ["total", "start"])
def test_lying_range_server_still_gives_the_right_volume(ct, lie):
    """A server whose Content-Range claims a terabyte, or answers from the wrong offset: the
    pieces are dropped and the frames load whole; the volume is identical."""
    raw, coded = ct
    server = StaticDicomWeb(coded[0].parent, lie=lie)
    try:
        vol = ms.open_volume(server.series_url, stages=SMALL, max_bytes=8 << 20)
        assert np.array_equal(vol.scalar_data, expected_stack(raw))
    finally:
        server.close()


def test_staged_load_awaited_in_a_client_with_a_timeout(ct, served):
    """The async API and a client's own scope; a load timeout bounds a staged load too."""
    import asyncio

    raw, _ = ct

    async def main():
        async with ms.Client() as client:
            vol = await client.open_volume_async(served.series_url, stages="progressive")
            assert np.array_equal(vol.scalar_data, expected_stack(raw))
            assert vol.scope is not ms.default_client()._scope

    asyncio.run(main())
    slow = StaticDicomWeb(ct[1][0].parent, delay=0.3)
    try:
        vol = ms.open_volume(slow.series_url, load=False)
        started = time.monotonic()
        with pytest.raises(ms.VolumeLoadError, match="load timeout"):
            vol.load(stages=SMALL, timeout=0.5).result(30)
        assert time.monotonic() - started < 5
        assert not vol.status.loading
    finally:
        slow.close()


# -- review findings: failures never abort the load, nothing wrong passes for final ------------
def test_a_corrupt_frame_fails_alone_in_a_staged_load(ct, tmp_path):
    """Served whole (no Range), a corrupt frame is listed in VolumeLoadError; every other slice
    is final, and no later write follows the load's end."""
    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    raw, coded = ct
    folder = tmp_path / "one-bad"
    folder.mkdir()
    for p in coded:
        (folder / p.name).write_bytes(p.read_bytes())
    want = expected_stack(raw)
    vol = ms.open_volume(str(folder), load=False)
    bad = vol.image_ids[4]
    path = folder / bad.split("dicomfile:", 1)[1].rsplit("/", 1)[-1]
    ds = pydicom.dcmread(path)
    code = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    code[200:600] = b"\xff" * 400  # packet data garbage, headers intact
    ds.PixelData = encapsulate([bytes(code)])
    ds.save_as(path, enforce_file_format=True)
    ms.purge_cache()
    server = StaticDicomWeb(folder, ranges=False)
    try:
        vol = ms.open_volume(server.series_url, load=False)
        with pytest.raises(ms.VolumeLoadError) as err:
            vol.load(stages=SMALL).result(60)
        assert len(err.value.failed) == 1
        k = vol.image_ids.index(next(iter(err.value.failed)))
        others = [j for j in range(N) if j != k]
        assert vol.loaded_mask[others].all() and not vol.loaded_mask[k]
        assert np.array_equal(vol.scalar_data[others], want[others])
        with pytest.raises(ms.VolumeError):
            vol.save(tmp_path / "v.nii.gz")
    finally:
        server.close()


@pytest.mark.parametrize("lie", ["garbage", "tlm"])
def test_decimated_load_never_keeps_a_slice_it_could_not_read(ct, tmp_path, lie):
    """A malformed Content-Range, or a TLM whose lengths do not match the tile-parts: the
    slice is read whole instead (never left empty, never decoded from the wrong bytes)."""
    import struct

    import pydicom
    from pydicom.encaps import encapsulate, generate_frames

    raw, coded = ct
    folder = coded[0].parent
    if lie == "tlm":  # halve every TLM length: a plausible header that lies
        folder = tmp_path / "tlm"
        folder.mkdir()
        for p in coded:
            ds = pydicom.dcmread(p)
            code = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
            at = bytes(code).find(b"\xff\x55")
            n = (struct.unpack(">H", code[at + 2 : at + 4])[0] - 4) // 5
            for i in range(n):
                o = at + 6 + 5 * i + 1
                code[o : o + 4] = struct.pack(">I", struct.unpack(">I", code[o : o + 4])[0] // 2)
            ds.PixelData = encapsulate([bytes(code)])
            ds.save_as(folder / p.name, enforce_file_format=True)
    server = StaticDicomWeb(folder, lie="garbage" if lie == "garbage" else None)
    try:
        dec = ms.open_volume(server.series_url, decimate=(2, 2, 4))
        assert dec.loaded_mask.all() and not dec.status.failed
        # read whole and subsampled: exactly the full grid's samples
        assert np.array_equal(dec.scalar_data, expected_stack(raw)[::4, ::2, ::2])
    finally:
        server.close()


def test_stages_and_decimate_do_not_combine(ct):
    with pytest.raises(ms.VolumeError, match="combine"):
        ms.open_volume(str(ct[1][0].parent), decimate=(2, 2, 2), stages="progressive")


def test_pieces_are_not_kept_after_the_load(ct, served):
    vol = ms.open_volume(served.series_url, load=False)
    with pytest.raises(ms.VolumeLoadError):
        vol.load(stages=SMALL[:2], timeout=0.0).result(30)
    vol.load().result(30)  # a plain load finishes it
    assert vol.loaded_mask.all() and not getattr(vol, "_kept_pieces", {})


def test_rendered_stand_ins_of_monochrome1_are_not_inverted(tmp_path, orthanc):
    raw = write_series(tmp_path / "m1", 4, size=128,
                       extra={"PhotometricInterpretation": "MONOCHROME1"})
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        infos = list(pool.map(orthanc.upload, raw))
    study, series, _ = orthanc.uids(infos[0]["ID"])
    shots: dict = {}
    vol = ms.open_volume(f"{orthanc.dicomweb}/studies/{study}/series/{series}", load=False)
    handler = lambda e: shots.setdefault(e.detail["stage"], np.array(vol.scalar_data))  # noqa: E731
    ms.events.add_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", handler)
    try:
        vol.load(stages=[ms.Stage("thumb", retrieve="rendered"), ms.Stage("final")]).result(60)
    finally:
        ms.events.remove_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", handler)
    want = expected_stack(raw)
    assert np.array_equal(vol.scalar_data, want)
    assert np.abs(shots["thumb"].astype(float) - want).mean() < 25
