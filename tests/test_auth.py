"""Pluggable authentication against real local servers on 127.0.0.1: token providers that are
refreshed on 401 and before expiry, an httpx.Auth, and mTLS with certificates made by openssl."""

from __future__ import annotations

import io
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pydicom
import pytest

import medstream as ms
from corpus import find
from hostile_server import FRAMES_TYPE, HostileServer, one_instance_series, send
from medstream.loaders.auth import forget_tokens
from medstream.loaders.hosts import breaker
from medstream.loaders.http import http_config
from needs import need_tool


def _dicom() -> bytes:
    ds = pydicom.dcmread(find("CT_small.dcm"))
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


DICOM = _dicom()


@pytest.fixture(autouse=True)
def _clean():
    forget_tokens()
    breaker.reset()
    yield
    ms.configure_http(token=None, auth=None, cert=None, headers={}, base_url=None)
    forget_tokens()


class Provider:
    """A token provider that counts its calls: token n is ``tokN``."""

    def __init__(self, fixed: str | None = None, lifetime: float | None = None) -> None:
        self.calls, self.fixed, self.lifetime = 0, fixed, lifetime
        self._lock = threading.Lock()

    def __call__(self) -> str | tuple[str, float]:
        with self._lock:
            self.calls += 1
            token = self.fixed or f"tok{self.calls}"
        return token if self.lifetime is None else (token, time.time() + self.lifetime)


class ExpiringTokens:
    """A route that accepts each ``tok*`` token for ``uses`` requests, then answers 401."""

    def __init__(self, uses: int = 2) -> None:
        self.uses, self.used, self.refused = uses, {}, 0
        self._lock = threading.Lock()

    def __call__(self, h, body: bytes = DICOM,  # noqa: ANN001
                 ctype: str = "application/dicom") -> None:
        token = h.headers.get("Authorization", "").removeprefix("Bearer ")
        with self._lock:
            n = self.used.get(token, 0)
            ok = token.startswith("tok") and n < self.uses
            self.used[token] = n + 1
            self.refused += not ok
        if ok:
            send(h, body, ctype=ctype)
        else:
            send(h, b"token expired", status=401)

    def serving(self, body: bytes, ctype: str):  # noqa: ANN201
        """A route with the same tokens serving ``body``."""
        return lambda h: self(h, body, ctype)


@pytest.fixture
def server():
    s = HostileServer()
    yield s
    s.close()


def _load(server: HostileServer, n: int, **options) -> ms.Image:  # noqa: ANN003
    return ms.load_image(f"wadouri:{server.url}/wado?objectUID={n}", retries=0,
                         **options).result(10)


# -- token providers ---------------------------------------------------------------------------
def test_provider_is_called_again_on_401_and_not_per_request(server):
    route = server.routes["/wado"] = ExpiringTokens(uses=2)
    provider = Provider()
    for n in range(5):
        assert _load(server, n, token=provider).rows == 128
    # tok1 for loads 0-1, 401 on load 2 -> tok2 for 2-3, 401 on 4 -> tok3
    assert provider.calls == 3
    assert route.refused == 2


def test_a_provider_that_keeps_failing_ends_in_a_401(server):
    server.routes["/wado"] = ExpiringTokens()
    provider = Provider(fixed="bad")
    with pytest.raises(ms.HTTPStatusError, match="401") as err:
        _load(server, 1, token=provider)
    assert err.value.status_code == 401
    assert provider.calls == 2  # the first token, one refresh, no loop
    assert len(server.seen("/wado")) == 2
    assert "bad" not in str(err.value)


def test_provider_refreshes_before_a_known_expiry(server):
    server.routes["/wado"] = ExpiringTokens(uses=100)
    soon = Provider(lifetime=5.0)  # inside the 30 s margin: fetched again for every request
    for n in range(3):
        _load(server, n, token=soon)
    assert soon.calls == 3
    later = Provider(lifetime=3600.0)
    for n in range(3, 6):
        _load(server, n, token=later)
    assert later.calls == 1


def test_async_provider_with_datetime_expiry(server):
    server.routes["/wado"] = ExpiringTokens(uses=100)
    calls = []

    async def provider() -> tuple[str, datetime]:
        calls.append(1)
        return "tok-async", datetime.now(timezone.utc) + timedelta(hours=1)

    for n in range(3):
        _load(server, n, token=provider)
    assert len(calls) == 1
    assert server.seen("/wado")[-1]["authorization"] == "Bearer tok-async"


def test_configured_provider_goes_only_to_its_host(server):
    other = HostileServer()
    server.routes["/wado"] = ExpiringTokens(uses=100)
    other.routes["/wado"] = lambda h: send(h, DICOM, ctype="application/dicom")
    provider = Provider()
    try:
        with pytest.raises(ValueError, match="base_url"):
            ms.configure_http(token=provider)
        ms.configure_http(token=provider, base_url=server.url)
        _load(server, 1)
        _load(other, 2)
    finally:
        ms.configure_http(token=None, base_url=None)
        other.close()
    assert server.seen("/wado")[-1]["authorization"] == "Bearer tok1"
    assert "authorization" not in other.seen("/wado")[-1]
    assert provider.calls == 1


def test_dicomweb_volume_with_an_expiring_provider(server):
    """Metadata and frame requests (the streaming path) refresh the token too."""
    ds = pydicom.dcmread(find("CT_small.dcm"))
    meta, frame = one_instance_series(ds)
    root = "/dw/studies/1/series/2"
    tokens = ExpiringTokens(uses=1)
    server.routes[f"{root}/metadata"] = tokens.serving(meta, "application/dicom+json")
    server.routes[f"{root}/instances/{ds.SOPInstanceUID}/frames/1"] = tokens.serving(
        frame, FRAMES_TYPE)
    provider = Provider()
    volume = ms.open_volume(f"{server.url}{root}", token=provider, retries=0,
                            retrieve="frames")
    assert volume.shape == (1, ds.Rows, ds.Columns)
    assert provider.calls == 2 and tokens.refused == 1


def test_credentials_key_tells_providers_apart_without_calling_them():
    a, b = Provider(), Provider()
    ka, kb = http_config(token=a).credentials_key(), http_config(token=b).credentials_key()
    assert ka and kb and ka != kb
    assert ka == http_config(token=a).credentials_key()
    assert a.calls == b.calls == 0
    auth1, auth2 = HeaderAuth("s1"), HeaderAuth("s2")
    assert (http_config(auth=auth1).credentials_key()
            != http_config(auth=auth2).credentials_key() != "")
    assert (http_config(cert="a.pem").credentials_key()
            != http_config(cert=("a.pem", "a.key")).credentials_key())
    text = repr(http_config(auth=auth1, token="S3CRET", cert="a.pem"))
    assert "S3CRET" not in text and "s1" not in text and "a.pem" not in text


# -- httpx.Auth ----------------------------------------------------------------------------------
class HeaderAuth(httpx.Auth):
    def __init__(self, secret: str) -> None:
        self.secret = secret

    def auth_flow(self, request: httpx.Request):  # noqa: ANN201
        request.headers["X-Custom-Auth"] = self.secret
        yield request


def test_httpx_auth_is_used_and_not_sent_across_a_redirect(server):
    other = HostileServer()
    other.routes["/landing"] = lambda h: send(h, DICOM, ctype="application/dicom")
    server.routes["/wado"] = lambda h: send(h, DICOM, ctype="application/dicom")
    server.routes["/jump"] = lambda h: send(h, b"", status=302,
                                            Location=f"{other.url}/landing?objectUID=9")
    try:
        _load(server, 1, auth=HeaderAuth("A-SECRET"))
        ms.load_image(f"wadouri:{server.url}/jump?objectUID=2", auth=HeaderAuth("A-SECRET"),
                      retries=0).result(10)
        ms.configure_http(auth=HeaderAuth("CONF-SECRET"), base_url=server.url)
        _load(server, 3)
        ms.load_image(f"wadouri:{other.url}/landing?objectUID=4", retries=0).result(10)
    finally:
        ms.configure_http(auth=None, base_url=None)
        other.close()
    seen = server.seen("/wado")
    assert seen[0]["x-custom-auth"] == "A-SECRET" and seen[1]["x-custom-auth"] == "CONF-SECRET"
    assert server.seen("/jump")[-1]["x-custom-auth"] == "A-SECRET"
    assert all("x-custom-auth" not in h for h in other.seen("/landing"))


# -- mTLS and CA bundles -------------------------------------------------------------------------
def _openssl(tmp: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True, timeout=60)


def _sign(tmp: Path, name: str, cn: str, ext: str) -> None:
    (tmp / f"{name}.ext").write_text(ext)
    _openssl(tmp, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    _openssl(tmp, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A test CA, a server certificate for 127.0.0.1 and a client certificate."""
    need_tool("openssl", "openssl")
    tmp = tmp_path_factory.mktemp("pki")
    _openssl(tmp, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=medstream test CA")
    common = "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid,issuer\n"
    _sign(tmp, "server", "127.0.0.1",
          common + "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    _sign(tmp, "client", "medstream client", common + "extendedKeyUsage=clientAuth\n")
    (tmp / "client-both.pem").write_text((tmp / "client.pem").read_text()
                                         + (tmp / "client.key").read_text())
    return tmp


@pytest.fixture
def mtls(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    ctx.load_verify_locations(pki / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    s = HostileServer(tls=ctx)
    s.routes["/wado"] = lambda h: send(h, DICOM, ctype="application/dicom")
    yield s
    s.close()


def test_mtls_needs_the_client_certificate(mtls, pki):
    ca = str(pki / "ca.pem")
    with pytest.raises(ms.NetworkError):
        _load(mtls, 1, verify=ca)
    assert _load(mtls, 2, verify=ca, cert=(str(pki / "client.pem"),
                                           str(pki / "client.key"))).rows == 128
    assert _load(mtls, 3, verify=ca, cert=str(pki / "client-both.pem")).rows == 128


def test_ca_bundle_trusts_the_test_ca_and_the_default_does_not(mtls, pki):
    cert = (str(pki / "client.pem"), str(pki / "client.key"))
    with pytest.raises(ms.NetworkError, match="(?i)certificate"):
        _load(mtls, 1, cert=cert)  # default verification: the test CA is unknown
    ms.configure_http(verify=str(pki / "ca.pem"), cert=cert, base_url=mtls.url)
    try:
        assert _load(mtls, 2).rows == 128
    finally:
        ms.configure_http(verify=True, cert=None, base_url=None)


def test_a_missing_client_certificate_file_is_a_typed_error(mtls, pki):
    with pytest.raises(ms.NetworkError, match="client certificate"):
        _load(mtls, 1, verify=str(pki / "ca.pem"), cert=str(pki / "missing.pem"))


def test_cli_cacert_and_client_certificate(mtls, pki):
    cli = [sys.executable, "-m", "medstream.cli"]
    source = f"wadouri:{mtls.url}/wado?objectUID=7"
    tls = ["--cacert", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"),
           "--key", str(pki / "client.key")]
    ok = subprocess.run([*cli, *tls, "info", source, "--json"], capture_output=True, text=True,
                        timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert '"Rows"' in ok.stdout or "128" in ok.stdout
    refused = subprocess.run([*cli, *tls[:2], "info", source, "--retries", "0"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr


def test_configured_client_certificate_stays_on_its_host(mtls, pki):
    cert = (str(pki / "client.pem"), str(pki / "client.key"))
    ms.configure_http(cert=cert, base_url="https://archive.invalid")
    try:
        with pytest.raises(ms.NetworkError):  # not presented to another host
            _load(mtls, 1, verify=str(pki / "ca.pem"))
    finally:
        ms.configure_http(cert=None, base_url=None)
