from __future__ import annotations

import hypothesis  # noqa: F401  (imported before any medstream thread exists: its late import
import pytest       # at session end, with threads running, tripped a CPython 3.11 AST bug)

import medstream as ms
from medstream.core.cache import DEFAULT_MAX_CACHE_SIZE
from medstream.core.request_pools import DEFAULT_MAX
from needs import require


@pytest.fixture(autouse=True)
def clean_state():
    """Every test starts with an empty cache, no listeners and default pool limits."""
    yield
    ms.cancel_load_all()
    ms.purge_cache()
    ms.cache.set_max_cache_size(DEFAULT_MAX_CACHE_SIZE)
    ms.events.remove_all_listeners()
    try:
        from medstream.loaders.hosts import breaker
    except ImportError:  # (running the suite against an older medstream)
        return
    breaker.reset()
    for t, n in DEFAULT_MAX.items():
        ms.request_pools.set_max_simultaneous_requests(t, n)
    if hasattr(ms.request_pools, "set_max_per_host"):
        from medstream.core.request_pools import DEFAULT_MAX_PER_HOST

        ms.request_pools.set_max_per_host(DEFAULT_MAX_PER_HOST)


@pytest.fixture(scope="session")
def orthanc():
    """A real Orthanc with DICOMweb on 127.0.0.1. In CI a missing Orthanc fails, never skips."""
    from orthanc_server import Orthanc, available

    require(available(), "Orthanc + orthanc-dicomweb not installed "
                                "(apt-get install orthanc orthanc-dicomweb)")
    server = Orthanc().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3():
    """A real S3-compatible server (moto) on 127.0.0.1. In CI a missing one fails, never skips."""
    from s3_server import S3Server, available

    require(available(), "moto[server] and s3fs not installed (pip install -e '.[test]')")
    server = S3Server().start()
    yield server
    server.stop()
