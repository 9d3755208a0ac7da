"""device="cuda": GPU volumes equal the CPU ones bit for bit, with the same streaming behaviour.

Two stacks run the same tests:

- ``real-gpu`` (CuPy + nvImageCodec on a CUDA GPU; skipped where there is none, as in CI). Only
  these runs are evidence about the GPU: its decoders, its kernels, its results.
- ``fake-logic-only`` (``fake_gpu.py``: NumPy arrays for CuPy, imagecodecs for nvImageCodec and
  NumPy copies of the kernels' arithmetic). Here the "GPU" volume is the CPU decode run through a
  NumPy copy of the same arithmetic, so "equal to the CPU" compares the CPU with itself. These
  runs check the batching, the CPU fallback, cancel, failure listing and caching logic only;
  they never show that anything works on a GPU, and a pass here is not GPU evidence.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import fake_gpu
import gpu_series
import medstream as ms
from medstream.gpu import backend, gpu_available

HAS_GPU = gpu_available()
NO_GPU = ("no CUDA GPU with CuPy and nvImageCodec here (pip install 'medstream[gpu]'); "
          "the real-GPU tests run on a GPU machine")
ON_GPU = {"uncompressed", "j2k", "htj2k"}  # lossless syntaxes the batched path takes


@pytest.fixture(params=["real", "fake"], ids=["real-gpu", "fake-logic-only"])
def stack(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``real``: the CUDA stack (skips without one). ``fake``: the NumPy stand-in, which checks the
    batching and fallback logic only (its kernels are a NumPy copy of the CPU arithmetic)."""
    if request.param == "real":
        if not HAS_GPU:
            pytest.skip(NO_GPU)
    else:
        fake_gpu.install(monkeypatch)
    return request.param


def host(volume: ms.StreamingImageVolume) -> np.ndarray:
    return volume.to_numpy() if volume.device == "cuda" else volume.scalar_data  # type: ignore[attr-defined]


def cpu_and_gpu(folder: Path, **kw) -> tuple[ms.StreamingImageVolume, ms.StreamingImageVolume]:
    cpu = ms.open_volume(str(folder), **kw)
    ms.purge_cache()
    gpu = ms.open_volume(str(folder), device="cuda", **kw)
    return cpu, gpu


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("syntax", list(gpu_series.SYNTAXES))
def test_gpu_volume_is_bit_identical(tmp_path, stack, syntax, signed):
    """On the real stack: the GPU decode and kernels give the CPU's voxels bit for bit. On the
    fake stack only the routing (which frames batch, which fall back) and the progress reports
    are checked: its voxels are the CPU arithmetic compared with a NumPy copy of itself."""
    gpu_series.write_series(tmp_path / "s", 20, 64, syntax, signed=signed)
    progress = []
    cpu = ms.open_volume(str(tmp_path / "s"))
    ms.purge_cache()
    gpu = ms.open_volume(str(tmp_path / "s"), device="cuda", on_progress=progress.append)
    assert gpu.device == "cuda" and type(gpu.scalar_data).__module__.split(".")[0] in (
        "cupy", "fake_gpu")
    assert gpu.dtype == cpu.dtype and gpu.shape == cpu.shape
    assert np.array_equal(host(gpu), cpu.scalar_data)
    assert np.allclose(gpu.affine, cpu.affine)
    st = gpu.status
    assert st.loaded and st.frames_loaded == 20 and not st.failed
    assert sorted(p.index for p in progress) == list(range(20))
    assert st.gpu_frames + st.cpu_fallback_frames == 20
    if syntax in ON_GPU:
        assert st.gpu_frames == 20, st
    else:
        assert st.cpu_fallback_frames == 20  # RLE, JPEG-LS, JPEG lossless: CPU decode + upload


def test_jpeg_baseline_decodes_on_the_gpu_close_to_the_cpu(tmp_path, stack):
    """GPU evidence on the real stack only (nvJPEG's IDCT against libjpeg-turbo's); the fake
    stack decodes with imagecodecs on the CPU, so it checks the routing (12 batched frames)."""
    gpu_series.write_series(tmp_path / "j", 12, 128, "jpeg_baseline")
    cpu, gpu = cpu_and_gpu(tmp_path / "j")
    assert gpu.dtype == cpu.dtype == np.uint8 and gpu.status.gpu_frames == 12
    diff = np.abs(host(gpu).astype(int) - cpu.scalar_data.astype(int))
    assert diff.max() <= 4 and diff.mean() < 0.5  # lossy: IDCTs may round differently


@pytest.mark.parametrize("syntax", ["uncompressed", "htj2k"])
def test_float_rescale_matches_cpu(tmp_path, stack, syntax):
    """Real stack: the CUDA float32 kernel rounds as the CPU does. Fake stack: logic only (the
    kernel is a NumPy copy of the CPU arithmetic)."""
    gpu_series.write_series(tmp_path / "f", 10, 64, syntax, slope=0.37)
    cpu, gpu = cpu_and_gpu(tmp_path / "f")
    assert gpu.dtype == cpu.dtype == np.float32
    assert np.array_equal(host(gpu), cpu.scalar_data)


def test_batches_and_first_slice(tmp_path, stack):
    gpu_series.write_series(tmp_path / "b", 40, 64, "htj2k")
    vol = ms.open_volume(str(tmp_path / "b"), device="cuda", gpu_batch=16)
    st = vol.status
    assert st.gpu_frames == 40 and st.batches == 4  # 4, 16 (32 capped at 16), 16, 4
    assert st.first_frame_seconds is not None and st.first_frame_seconds <= st.seconds


def test_cancel_mid_load_then_resume(tmp_path, stack):
    gpu_series.write_series(tmp_path / "c", 60, 64, "j2k")
    vol = ms.open_volume(str(tmp_path / "c"), device="cuda", load=False, gpu_batch=8)
    started = threading.Event()

    def on_progress(p: ms.VolumeProgress) -> None:
        if not started.is_set():
            started.set()
            vol.cancel_loading()

    job = vol.load(on_progress=on_progress)
    with pytest.raises(Exception) as err:
        job.result(30)
    assert "Cancelled" in type(err.value).__name__
    assert vol.status.cancelled and 0 < vol.status.frames_loaded < 60
    vol.load().result(60)  # resumes with only the missing frames
    ms.purge_cache()
    cpu = ms.open_volume(str(tmp_path / "c"))
    assert vol.status.loaded and np.array_equal(host(vol), cpu.scalar_data)


def test_corrupt_frame_is_listed_and_the_rest_loads(tmp_path, stack):
    paths = gpu_series.write_series(tmp_path / "x", 16, 64, "htj2k", corrupt=5)
    bad = ms.dicomfile_image_id(paths[5])
    vols = []
    for device in ("cpu", "cuda"):
        ms.purge_cache()
        vol = ms.open_volume(str(tmp_path / "x"), device=device, load=False)
        with pytest.raises(ms.VolumeLoadError) as err:
            vol.load().result(60)
        assert list(err.value.failed) == [bad] and list(vol.status.failed) == [bad]
        assert vol.status.frames_loaded == 15
        vols.append(vol)
    cpu, gpu = vols
    assert gpu.status.gpu_frames == 15  # the bad frame went to the CPU decoder, which failed
    assert np.array_equal(host(gpu), cpu.scalar_data)


def test_volume_larger_than_free_memory_fails_before_loading(tmp_path, stack, monkeypatch):
    gpu_series.write_series(tmp_path / "m", 4, 32)
    monkeypatch.setattr(backend.GpuBackend, "free_bytes", lambda self: 1000)
    with pytest.raises(ms.GpuMemoryError, match="GPU memory"):
        ms.open_volume(str(tmp_path / "m"), device="cuda")


def test_cpu_and_gpu_volumes_are_cached_apart(tmp_path, stack):
    gpu_series.write_series(tmp_path / "k", 4, 32)
    cpu = ms.open_volume(str(tmp_path / "k"))
    gpu = ms.open_volume(str(tmp_path / "k"), device="cuda")
    assert cpu.device == "cpu" and gpu.device == "cuda" and cpu is not gpu


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU stack")
def test_cuda_without_the_stack_says_what_is_missing(tmp_path):
    paths = gpu_series.write_series(tmp_path / "n", 3, 16)
    with pytest.raises(ms.GpuUnavailableError, match="device='cuda' is unavailable") as err:
        ms.open_volume(str(tmp_path / "n"), device="cuda")
    assert err.value.missing and "medstream[gpu]" in str(err.value)
    with pytest.raises(ms.GpuUnavailableError):
        ms.create_and_cache_volume("v", image_ids=[ms.dicomfile_image_id(p) for p in paths],
                                   device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        ms.open_volume(str(tmp_path / "n"), device="tpu")
    assert ms.open_volume(str(tmp_path / "n")).status.loaded  # the CPU path is unaffected


def test_to_torch_shares_memory(tmp_path, stack):
    torch = pytest.importorskip("torch")
    gpu_series.write_series(tmp_path / "t", 4, 32)
    cpu = ms.open_volume(str(tmp_path / "t"))
    t = cpu.to_torch()
    assert t.data_ptr() == cpu.scalar_data.ctypes.data and tuple(t.shape) == cpu.shape
    if stack == "real":
        gpu = ms.open_volume(str(tmp_path / "t"), device="cuda")
        g = gpu.to_torch()
        assert g.is_cuda and g.data_ptr() == gpu.scalar_data.data.ptr
        assert torch.equal(g.cpu(), t)


@pytest.mark.orthanc
@pytest.mark.parametrize("syntax", ["uncompressed", "htj2k"])
def test_dicomweb_volume_on_the_gpu_equals_files(orthanc, tmp_path, stack, syntax):
    """DICOMweb frames take the CPU decode + upload path (counted), same result as from files."""
    paths = gpu_series.write_series(tmp_path / "w", 12, 64, syntax)
    infos = [orthanc.upload(p) for p in paths]
    study, series, _ = orthanc.uids(infos[0]["ID"])
    url = f"{orthanc.dicomweb}/studies/{study}/series/{series}"
    local = ms.open_volume(str(tmp_path / "w"))
    remote = ms.open_volume(url, device="cuda")
    assert remote.device == "cuda" and remote.status.cpu_fallback_frames == 12
    assert np.array_equal(host(remote), local.scalar_data)


def test_nifti_on_cuda_is_refused_clearly(tmp_path, stack):
    nib = pytest.importorskip("nibabel")
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.int16), np.eye(4)), str(path))
    with pytest.raises(ms.VolumeError, match="DICOM series"):
        ms.open_volume(str(path), device="cuda")


def test_unused_high_bits_are_masked_as_on_the_cpu(tmp_path, stack):
    """12-bit unsigned samples whose unused high bits are set (as real scanners write them):
    the batched GPU path masks them to BitsStored exactly as the CPU decoders do."""
    import pydicom

    from series import write_series

    for path in write_series(tmp_path / "b", 6, size=64):  # pixel data past the header read
        ds = pydicom.dcmread(path)
        assert ds.BitsStored == 12 and ds.PixelRepresentation == 0
        ds.PixelData = (ds.pixel_array | 0xF000).astype("<u2").tobytes()
        ds.save_as(path)
    cpu, gpu = cpu_and_gpu(tmp_path / "b")
    assert int(cpu.scalar_data.max()) < 4096 - 1024  # masked, then HU
    assert np.array_equal(host(gpu), cpu.scalar_data)
    assert gpu.status.gpu_frames == 6


def test_staged_load_on_the_gpu_ends_identical(tmp_path, stack):
    """The same stages on a GPU volume: lossy slices from the first bytes of HTJ2K frames
    (decoded on the CPU, uploaded), neighbours filled on the device, then final."""
    from series import htj2k_series, write_series

    raw = write_series(tmp_path / "raw", 12, size=128)
    htj2k_series(raw, tmp_path / "h", noise=8)
    cpu = ms.open_volume(str(tmp_path / "h"))
    ms.purge_cache()
    seen: list = []
    plan = [ms.Stage("quarter", decimate=4, retrieve="leading", leading_bytes=1024, fill=2),
            ms.Stage("final")]
    gpu = ms.open_volume(str(tmp_path / "h"), device="cuda", stages=plan,
                         on_progress=lambda p: seen.append(int(p.quality)))
    assert np.array_equal(host(gpu), cpu.scalar_data)
    assert ms.SliceStatus.LOSSY in seen and (gpu.slice_status == ms.SliceStatus.FINAL).all()
