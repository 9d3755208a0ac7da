"""Cancellation storms, memory under a cache limit, and security: nothing left running, exact
accounting, tokens never shown, TLS verified by default."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import medstream as ms
from medstream.core.loading import inflight_count
from medstream.core.runtime import runtime
from series import expected_stack, write_series


def _loop_tasks() -> int:
    async def count() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    return runtime.run_sync(count(), timeout=5)


def _settle(deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while (inflight_count() or _loop_tasks()) and time.monotonic() < end:
        time.sleep(0.02)


def _accounting_exact() -> bool:
    with ms.cache._lock:
        entries = list(ms.cache._entries.values())
        kept = sum(ms.cache.stores().values())  # metadata and the like, besides the entries
        return ms.get_cache_size() - kept == sum(e.size for e in entries if e.admitted)


def test_cancellation_storm_sync_and_async(tmp_path):
    paths = write_series(tmp_path / "s", 30, size=128)
    ids = [ms.dicomfile_image_id(p) for p in paths]
    reference = {i: ms.load_image(i).result(30).get_pixel_data() for i in ids}
    ms.purge_cache()
    ms.request_pools.set_max_simultaneous_requests("prefetch", 3)
    threads_before = threading.active_count()
    rng = random.Random(1)
    cancelled = 0
    objs = []
    for n in range(400):  # sync: started and cancelled at random points
        image_id = rng.choice(ids)
        make = ms.load_and_cache_image if n % 2 else ms.load_image
        obj = make(image_id, request_type=rng.choice(["interaction", "prefetch", "compute"]))
        objs.append(obj)
        if rng.random() < 0.7:  # at once (still queued) or a little later (maybe running)
            time.sleep(rng.random() * 0.002 if rng.random() < 0.5 else 0)
            cancelled += obj.cancel()
    vol = ms.create_and_cache_volume("storm", image_ids=ids).result(30)
    for _ in range(5):  # volume loads cancelled and resumed
        job = vol.load()
        time.sleep(rng.random() * 0.01)
        vol.cancel_loading()

    async def storm() -> int:
        tasks = [asyncio.ensure_future(_await(ms.load_image(rng.choice(ids)))) for _ in range(200)]
        await asyncio.sleep(0)
        for t in tasks:
            if rng.random() < 0.7:
                t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        return sum(isinstance(d, asyncio.CancelledError) for d in done)

    async_cancelled = asyncio.run(storm())
    for obj in objs:
        try:
            obj.result(30)
        except BaseException:
            pass
    ms.cancel_load_all()
    _settle()
    assert cancelled > 50 and async_cancelled > 50
    assert inflight_count() == 0 and _loop_tasks() == 0
    assert sum(ms.request_pools.get_running().values()) == 0
    assert sum(ms.request_pools.get_request_pool().values()) == 0
    assert threading.active_count() <= max(threads_before, 1 + 1 + runtime.workers)
    assert _accounting_exact()
    for image_id in ids:  # the same IDs load correctly again
        assert np.array_equal(ms.load_and_cache_image(image_id).result(30).get_pixel_data(),
                              reference[image_id])
    vol.load().result(30)
    assert np.array_equal(vol.scalar_data, expected_stack(paths))
    del job


async def _await(obj):
    try:
        return await obj
    except asyncio.CancelledError:
        obj.cancel()  # the awaiter gave up: drop the load too
        raise


def test_memory_stays_within_the_cache_limit():
    """3 GB of image requests through a 1 GB cache: the cache never exceeds its limit and the
    process does not grow by much more than the limit."""
    limit = 1024**3

    def synthetic(image_id: str) -> ms.Image:
        k = int(image_id.split(":")[1])
        return ms.Image.from_array(image_id, np.full((1024, 1024), k, np.float32))  # 4 MB

    ms.register_image_loader("synthetic", synthetic)
    ms.set_max_cache_size(limit)
    peak = [0]
    ms.events.on(ms.Events.IMAGE_CACHE_IMAGE_ADDED,
                 lambda e: peak.__setitem__(0, max(peak[0], ms.get_cache_size())))
    rss0 = _rss()
    for batch in range(0, 768, 64):  # 768 x 4 MB = 3 GB requested
        objs = [ms.load_and_cache_image(f"synthetic:{k}", request_type="compute")
                for k in range(batch, batch + 64)]
        for o in objs:
            assert o.result(30).get_pixel_data()[0, 0] == int(o.image_id.split(":")[1])
        del objs
    assert peak[0] <= limit and ms.get_cache_size() <= limit
    assert _accounting_exact()
    assert _rss() - rss0 < limit + 300 * 1024**2
    ms.purge_cache()
    assert ms.get_cache_size() == 0


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_tokens_never_in_errors_logs_or_reprs(caplog):
    secret = "SECRET-token-9f8e7d"
    caplog.set_level(logging.DEBUG, logger="medstream")
    ms.configure_http(token=secret, base_url="http://127.0.0.1:9")
    try:
        assert secret not in repr(ms.loaders.http.http_config())
        urls = [
            f"wadouri:http://user:{secret}@127.0.0.1:9/x.dcm?contentType=application/dicom",
            f"wadouri:http://127.0.0.1:9/wado?access_token={secret}&objectUID=1",
            f"http://127.0.0.1:9/p.png?token={secret}",
        ]
        for image_id in urls:
            obj = ms.load_image(image_id, retries=1, backoff=0.01, timeout=2)
            with pytest.raises(ms.MedstreamError) as err:
                obj.result(30)
            assert secret not in str(err.value) and secret not in repr(err.value)
            assert secret not in repr(obj)
    finally:
        ms.configure_http(token=None, base_url=None)
    assert caplog.records, "expected retry logs"
    assert all(secret not in r.getMessage() for r in caplog.records)


def test_tls_verification_is_on_by_default(tmp_path):
    assert ms.loaders.http.http_config().verify is True
    from test_volumes import need

    need("openssl")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\x89PNG")

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://127.0.0.1:{server.server_address[1]}/a.png"
        with pytest.raises(ms.NetworkError, match="(?i)certificate"):
            ms.load_image(url, retries=0).result(30)
        # Trusting the certificate explicitly works (the body is not a real PNG).
        with pytest.raises(ms.DecodeError):
            ms.load_image(url, retries=0, verify=str(cert)).result(30)
    finally:
        server.shutdown()


def test_cli_writes_only_the_target_path(tmp_path):
    import os
    import sys

    evil = "../../../../tmp/medstream-evil"
    write_series(tmp_path / "in", 4, size=16,
                 extra={"SeriesDescription": evil, "PatientName": evil, "PatientID": evil})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = set(os.listdir(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "medstream.cli", "volume", str(tmp_path / "in"),
                           "-o", str(out_dir / "v.nii.gz")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(out_dir) == ["v.nii.gz"] and set(os.listdir(tmp_path)) == before
    assert not os.path.exists("/tmp/medstream-evil")
