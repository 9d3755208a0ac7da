"""What a test needs from outside Python (a server, a system tool, real data): in CI a missing
one fails the test, never skips it; elsewhere it is a skip that names the package to install."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: bool, msg: str) -> None:
    """Fail in CI, skip elsewhere, when something the test needs is not here."""
    if not available:
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def need_tool(tool: str, package: str) -> None:
    """A command-line tool from a Debian package (.ci/run installs them all)."""
    require(shutil.which(tool) is not None,
            f"{tool} not installed (apt-get install {package}; .ci/run installs it)")
