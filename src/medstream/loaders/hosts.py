"""Per-origin circuit breaker: after a run of connection failures to one host, one request at a
time probes it and the requests waiting behind the probe fail as soon as it fails.

Why: a dead server made every queued frame of a volume try (and time out) on its own, so a
volume took 20-30 s to report. With the breaker open, queued frames fail with the probe, and a
server that comes back is used again by the next probe. Runs on the medstream loop only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from urllib.parse import urlsplit

FAILURES_TO_OPEN = 3


def origin_of(url: str) -> str:
    """``scheme://host:port`` (lower case, default port filled in); "" if unparseable."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    except ValueError:
        return ""
    return f"{parts.scheme.lower()}://{host}:{port}"


@dataclass
class _State:
    failures: int = 0
    last_error: str = ""
    probe: asyncio.Future[bool] | None = field(default=None)


class CircuitBreaker:
    def __init__(self, failures: int = FAILURES_TO_OPEN) -> None:
        self.failures = failures
        self._hosts: dict[str, _State] = {}

    async def admit(self, url: str) -> tuple[bool, str | None]:
        """(is the probe, why to fail fast). Closed: (False, None). Open: the first request is
        the probe (True, None); the others wait for it and go on if it worked, else fail."""
        st = self._hosts.get(origin_of(url))
        if st is None or st.failures < self.failures:
            return False, None
        if st.probe is None or st.probe.done():
            st.probe = asyncio.get_running_loop().create_future()
            return True, None
        if await asyncio.shield(st.probe):
            return False, None
        return False, (f"host unreachable ({st.failures} connection failures in a row, "
                       f"last: {st.last_error}); not retried")

    def success(self, url: str) -> None:
        st = self._hosts.pop(origin_of(url), None)
        if st is not None and st.probe is not None and not st.probe.done():
            st.probe.set_result(True)

    def failure(self, url: str, error: str) -> None:
        st = self._hosts.setdefault(origin_of(url), _State())
        st.failures += 1
        st.last_error = error
        if st.probe is not None and not st.probe.done():
            st.probe.set_result(False)
        st.probe = None

    def release(self, url: str) -> None:
        """The request ended without telling whether the host works (cancelled, over budget):
        let the waiters try for themselves."""
        st = self._hosts.get(origin_of(url))
        if st is not None and st.probe is not None and not st.probe.done():
            st.probe.set_result(True)
            st.probe = None

    def reset(self) -> None:
        self._hosts.clear()


breaker = CircuitBreaker()
