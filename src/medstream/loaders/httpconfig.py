"""HTTP settings: defaults set with ``configure_http``, per-load overrides, credentials keys.

Apart from the client code (``http.py``) so that what needs only the settings (the credentials
key every cached load is made under, ``ms.configure_http``) does not import httpx (0.15 s).
The loaders register the credentials key (``loaders/__init__``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .auth import Cert, TokenProvider, provider_name
from .hosts import origin_of

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class HttpConfig:
    headers: dict[str, str] = field(default_factory=dict)
    token: str | TokenProvider | None = None  # a bearer token, or a callable returning one
    verify: bool | str = True  # a str: path of a CA bundle (PEM) to trust instead
    auth: httpx.Auth | None = None
    cert: Cert | None = None  # client certificate (mTLS): PEM path, or (cert, key) paths
    timeout: float = 30.0  # seconds for each request as a whole
    retries: int = 3
    backoff: float = 0.25
    max_bytes: int | None = None  # per body; None: the global budget (limits.max_bytes)
    base_url: str | None = None  # the origin the configured token and headers belong to
    token_hosts: tuple[str, ...] | None = None  # origins for the token; None: any (per load)

    def __repr__(self) -> str:  # never show the token or header values
        return (
            f"HttpConfig(headers={sorted(self.headers)}, token={self._token_repr()}, "
            f"auth={type(self.auth).__name__ if self.auth else None}, "
            f"cert={'***' if self.cert else None}, verify={self.verify}, "
            f"timeout={self.timeout}, retries={self.retries}, token_hosts={self.token_hosts})"
        )

    def _token_repr(self) -> str | None:
        if callable(self.token):
            return f"<provider {provider_name(self.token)}>"
        return "***" if self.token else None

    def has_credentials(self) -> bool:
        return bool(self.token or self.headers or self.auth or self.cert)

    def credentials_key(self) -> str:
        """A digest of the credentials, so results fetched with one set are never served to a
        load made with another."""
        if not self.has_credentials():
            return ""
        # providers and auth objects by identity (calling them here would cost a token fetch
        # per key); the scope is part of the key since they are used only on those hosts
        token = f"provider:{provider_name(self.token)}" if callable(self.token) else self.token
        auth = f"auth:{provider_name(self.auth)}" if self.auth else None
        blob = json.dumps([token, sorted(self.headers.items()), auth, self.cert,
                           self.token_hosts]).encode()
        import hashlib  # here: only a load with credentials needs it

        return hashlib.sha256(blob).hexdigest()[:16]

    def credentials_for(self, url: str) -> bool:
        """Whether the token and configured headers may be sent to ``url``."""
        if self.token_hosts is None:
            return True
        return origin_of(url) in self.token_hosts


_config = HttpConfig()


def _scope(base_url: str | None, hosts: Any) -> tuple[str, ...]:
    """Origins a configured token belongs to: ``base_url``'s, and each of ``token_hosts``
    (a bare host name means https only: a token never goes out in clear text by accident)."""
    out = [origin_of(base_url)] if base_url else []
    for h in hosts or ():
        out.append(origin_of(h if "://" in h else f"https://{h}"))
    return tuple(o for o in out if o)


def configure_http(**changes: Any) -> HttpConfig:
    """Set defaults for every HTTP load: headers, token (bearer), verify, timeout, retries,
    max_bytes. A token or headers need ``base_url=`` (or ``token_hosts=[...]``): they are sent
    only to those origins, never to a host that an image ID happens to name."""
    global _config
    if "token_hosts" in changes or "base_url" in changes:
        changes["token_hosts"] = _scope(changes.get("base_url", _config.base_url),
                                        changes.get("token_hosts"))
    new = replace(_config, **changes)
    if new.has_credentials() and not new.token_hosts:
        raise ValueError("configure_http: a token, headers, auth or cert need base_url= or "
                         "token_hosts= (the hosts they are for); per load, pass them to the "
                         "load instead")
    _config = new
    return _config


def http_config(**overrides: Any) -> HttpConfig:
    """The defaults with per-load overrides (None values are ignored). A token or headers given
    per load belong to that load's own URLs, so they are not host-scoped."""
    kw = {k: v for k, v in overrides.items() if v is not None and k in HttpConfig.__dataclass_fields__}
    if _CREDENTIALS & kw.keys():  # per-load credentials replace the configured ones
        kw.setdefault("token", None)
        kw.setdefault("headers", {})
        kw.setdefault("auth", None)
        kw.setdefault("cert", None)
        kw["token_hosts"] = None
    return replace(_config, **kw) if kw else _config


_CREDENTIALS = frozenset({"token", "headers", "auth", "cert"})
