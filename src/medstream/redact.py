"""Keep credentials out of messages: user:password in URLs, secret-looking query values,
fragments, bearer tokens. Matching is by pattern (any parameter whose name contains ``token``,
``signature``, ``credential``...), so pre-signed URLs of any cloud are covered."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SECRET_NAME = re.compile(
    r"token|signature|credential|secret|password|passwd|jwt|session|apikey|api[-_]key|"
    r"^(auth|key|sig|code|x-amz-.*|x-goog-.*)$",
    re.IGNORECASE,
)
_URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)  # any scheme
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}")
_PARAM_RE = re.compile(  # name=value outside URLs (a query string alone, a header dump)
    r"(?i)\b([\w-]*(?:token|signature|credential|secret|password|jwt)[\w-]*)=([^&\s\"']+)")


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return "<invalid url>"
    query = urlencode([
        (k, "***" if is_secret_param(k) else v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    ], safe="/*:,") if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, "***" if parts.fragment else ""))


def redact_text(text: str) -> str:
    """Redact every URL inside ``text`` (an image ID with a URL in it), bearer values and
    ``token=...`` pairs outside URLs."""
    text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} ***", text)
    return _PARAM_RE.sub(lambda m: f"{m.group(1)}=***" if m.group(2) != "***" else m.group(0),
                         text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with credentials removed (httpx logs full URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's business, not ours
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install_log_filter(*names: str) -> None:
    """Attach the filter to the named loggers (idempotent)."""
    for name in names or ("httpx", "httpcore", "httpcore.connection", "httpcore.http11",
                          "httpcore.http2", "httpcore.proxy"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
