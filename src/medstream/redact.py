"""Keep credentials out of messages: user:password in URLs and secret-looking query values."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_PARAMS = {"token", "access_token", "id_token", "auth", "key", "apikey", "api_key",
                  "signature", "sig", "password", "x-amz-signature", "x-amz-credential", "code"}
_URL_RE = re.compile(r"https?://[^\s\"']+")


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "<invalid url>"
    if not any(k.lower() in _SECRET_PARAMS for k, _ in parse_qsl(parts.query)) and "@" not in parts.netloc:
        return url
    query = urlencode([
        (k, "***" if k.lower() in _SECRET_PARAMS else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ], safe="/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every http(s) URL inside ``text`` (e.g. an image ID with a URL in it)."""
    return _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
