"""Run one attack in a fresh interpreter, under an address-space limit, and measure it: the
error it ended in, the seconds it took, how much the peak RSS grew during it, and whether the
interpreter then exited on its own. A hang shows as a timeout, never as a stuck test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any

AS_HEADROOM = 3 * 1024**3  # address space allowed beyond the warmed-up interpreter

_BEFORE = r'''
import json, os, resource, sys, time
def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0
import numpy as np
import medstream as ms
ms.register_image_loader("warm", lambda i: ms.Image.from_array(i, np.zeros((2, 2), np.uint8)))
ms.load_image("warm:1").result(10)
ARG = json.loads(sys.argv[1])


def register_waiting(scheme, seconds):
    """A sync loader for ``scheme`` that waits ``seconds`` unless its load is cancelled."""
    def wait(image_id, signal=None):
        signal.wait(seconds)
        signal.raise_if_cancelled()
    ms.register_image_loader(scheme, wait)


def errors_of(objs, timeout=30):
    """The messages of the loads in ``objs`` that failed with a medstream error."""
    out = []
    for o in objs:
        try:
            o.result(timeout)
        except ms.MedstreamError as exc:
            out.append(str(exc))
    return out
'''

_AFTER = r'''
resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + %d, resource.RLIM_INFINITY))
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
except OSError:
    pass
rss0 = _status("VmRSS")
t0 = time.monotonic()
out = {"error": None, "message": "", "mro": [], "value": None}
try:
    out["value"] = attack(ARG)
except BaseException as exc:
    out["error"] = type(exc).__name__
    out["message"] = str(exc)
    out["mro"] = [c.__name__ for c in type(exc).__mro__]
out["seconds"] = time.monotonic() - t0
out["grew"] = _status("VmHWM") - rss0
print("RESULT " + json.dumps(out, default=str), flush=True)
''' % AS_HEADROOM


@dataclass
class Outcome:
    error: str | None
    message: str
    classes: list[str]
    value: Any
    seconds: float
    grew_mb: float
    exited: bool
    stderr: str = field(repr=False, default="")

    def raised(self, name: str) -> bool:
        return name in self.classes


def run_attack(body: str, arg: Any = None, *, timeout: float = 20.0) -> Outcome:
    """``body`` defines ``attack(arg)``; its return value or exception is the outcome."""
    code = _BEFORE + textwrap.dedent(body) + _AFTER
    env = dict(os.environ, MALLOC_ARENA_MAX="2", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(__file__), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    exited = True
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(arg)], capture_output=True,
                              text=True, timeout=timeout, env=env)
        stdout, stderr = proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        exited = False
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise AssertionError(f"the attack did not finish within {timeout} s "
                             f"(exited={exited}); stderr:\n{stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    return Outcome(out["error"], out["message"], out["mro"], out["value"], out["seconds"],
                   out["grew"] / 1024**2, exited, stderr)
