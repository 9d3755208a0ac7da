"""The main job: `medstream demo` as a subprocess on a fresh cache folder."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from PIL import Image


def test_demo_builds_data_and_writes_outputs(tmp_path):
    env = dict(os.environ, MEDSTREAM_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "medstream.cli", "demo"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "compressed copy identical to uncompressed: yes" in proc.stdout
    png = tmp_path / "cache" / "demo-output" / "demo_views.png"
    vol = np.load(tmp_path / "cache" / "demo-output" / "demo_volume.npy")
    assert vol.shape == (96, 256, 256) and vol.dtype == np.int16
    assert vol.min() < -900 and vol.max() > 900  # air and bone in HU
    pic = np.asarray(Image.open(png))
    assert pic.std() > 20  # not blank
    # Second run reuses the cached sample.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0


def test_version():
    proc = subprocess.run([sys.executable, "-m", "medstream.cli", "--version"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "medstream" in proc.stdout
