"""``ms.Client``: settings, credentials, cache, pools and connections of its own; and a bare
``import medstream`` that imports nothing it does not need."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys

import pydicom
import pytest

import medstream as ms
from corpus import find
from hostile_server import HostileServer, send
from series import write_series


@pytest.fixture()
def guarded():
    """A WADO-URI server answering only ``Bearer good``; it records each request's headers."""
    ds = pydicom.dcmread(find("CT_small.dcm"))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    server = HostileServer()

    def route(h) -> None:  # noqa: ANN001
        if h.headers.get("Authorization") != "Bearer good":
            send(h, b"no", status=401)
        else:
            send(h, data, ctype="application/dicom")

    server.routes["/wado"] = route
    yield server, ds
    server.close()


def test_two_clients_with_different_credentials_share_nothing(guarded):
    server, ds = guarded
    image_id = f"wadouri:{server.url}/wado?objectUID=1"
    with ms.Client(token="good") as alice, ms.Client(token="bad", retries=0) as mallory:
        assert alice.load_and_cache_image(image_id).result(10).rows == ds.Rows
        assert image_id in alice.cache and len(alice.cache) == 1
        with pytest.raises(ms.HTTPStatusError, match="401"):
            mallory.load_and_cache_image(image_id).result(10)
        assert image_id not in mallory.cache and image_id not in ms.cache
        from medstream.loaders import http

        assert alice._scope.key in {key[0] for key in http._clients}
        with pytest.raises(ms.HTTPStatusError, match="401"):  # the default client has no token
            ms.load_and_cache_image(image_id, retries=0).result(10)
        assert alice.load_and_cache_image(image_id).result(10).rows == ds.Rows
    from medstream.loaders import http

    scopes = {key[0] for key in http._clients}  # connections are kept per client
    assert not scopes & {alice._scope.key, mallory._scope.key}, "close() closes connections"
    sent = [h.get("authorization") for h in server.seen("/wado")]
    assert sent.count("Bearer good") == 1  # alice's second load came from her cache
    assert "Bearer bad" in sent


def test_client_volumes_land_in_its_cache_and_close_empties_it(tmp_path):
    paths = write_series(tmp_path / "s", 6, size=32)
    with ms.Client(cache_size=64 * 1024**2, max_requests=2) as client:
        volume = client.open_volume(tmp_path / "s")
        assert volume.shape == (6, 32, 32)
        assert client.get_cache_size() == volume.size_in_bytes
        assert ms.get_cache_size() - sum(ms.cache.stores().values()) == 0
        assert client.request_pools is not ms.request_pools
        assert client.load_image(paths[0]).result(10).rows == 32
    assert client.closed and client.get_cache_size() == 0
    with pytest.raises(RuntimeError, match="closed"):
        client.load_image(paths[0])


def test_async_client_context_closes_its_connections(guarded):
    server, ds = guarded
    image_id = f"wadouri:{server.url}/wado?objectUID=1"

    async def use() -> ms.Client:
        async with ms.Client(token="good") as client:
            image = await client.load_and_cache_image(image_id)
            assert image.rows == ds.Rows
            volume = await client.open_volume_async([image_id])
            assert volume.shape[0] == 1
            assert len(client.cache) == 2  # the image and the volume, in the client's cache
        return client

    client = asyncio.run(use())
    assert client.closed and len(client.cache) == 0


def test_default_client_is_the_module_level_functions():
    default = ms.default_client()
    assert default is ms.default_client() and default.cache is ms.cache
    default.close()  # never closed: the module-level functions keep working
    assert not default.closed


def test_client_refuses_unknown_options():
    with pytest.raises(TypeError, match="tokn"):
        ms.Client(tokn="x")


def test_import_medstream_imports_nothing_heavy_and_help_skips_the_loaders():
    code = ("import sys, medstream; heavy = ['pydicom', 'httpx', 'numpy', 'rich', 'click', "
            "'imagecodecs', 'fsspec', 'nibabel', 'PIL', 'dask', 'medstream.loaders']; "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    code = ("import sys; sys.argv = ['medstream', '--help']\n"
            "from medstream.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('LOADED', [m for m in ('pydicom', 'httpx', 'medstream.loaders') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "LOADED []" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Usage" in out.stdout


def test_first_use_registers_the_loaders():
    code = ("import medstream as ms; from medstream.core.registry import image_loaders; "
            "ms.load_image; print(sorted(image_loaders.schemes()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "dicomfile" in out.stdout and "wadors" in out.stdout, out.stdout + out.stderr


def test_client_credentials_reach_files_read_by_ranges(tmp_path):
    """``dicomfile:https://...`` reads by ranges in worker threads: the client's token goes
    with them, and what one client read is never served to another."""
    from test_object_store import _RangeServer

    paths = write_series(tmp_path / "w", 2, size=32)
    server = _RangeServer(tmp_path / "w", token="good")
    try:
        image_id = f"dicomfile:{server.url}/{paths[0].name}"
        with ms.Client(token="good") as good:
            assert good.load_image(image_id).result(10).rows == 32
        assert set(server.auth) == {"Bearer good"}
        with ms.Client(token="bad", retries=0) as bad:
            with pytest.raises(ms.ImageLoadError):
                bad.load_image(image_id).result(10)
        assert "Bearer bad" in server.auth
    finally:
        server.close()


def test_a_volume_made_by_a_client_loads_in_its_scope_wherever_load_is_called(guarded):
    server, _ = guarded
    from medstream.loaders import http, wadouri

    image_id = f"wadouri:{server.url}/wado?objectUID=1"
    with ms.Client(token="good") as client:
        volume = client.open_volume([image_id], load=False)
        wadouri.objects.clear()
        volume.load().result(10)  # called outside the client's methods
        assert {key[0] for key in http._clients} >= {client.scope_key}
        assert image_id not in ms.cache and volume.volume_id in client.cache
    assert client.scope_key not in {key[0] for key in http._clients}
