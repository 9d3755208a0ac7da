"""Open only regular files: a FIFO or device named ``x.dcm`` must not block a scan or a load.

The file is opened non-blocking and checked with ``fstat`` on the open descriptor, so there is
no window between the check and the open.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from ..errors import ImageLoadError


def open_regular(item_id: str, path: str | os.PathLike[str]) -> BinaryIO:
    """``open(path, "rb")`` for a regular file; ``ImageLoadError`` for anything else."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ImageLoadError(item_id, f"not a regular file: {os.fspath(path)}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_regular(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file now (``lstat`` follows no FIFO; symlinks resolved)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
