"""A short run of the mutation fuzzer (scripts/fuzz.py): mutants of pydicom's and the vendor test
files, each loaded in a child interpreter under a memory limit and a timeout, must end loaded or
in a typed ``MedstreamError`` -- never an untyped exception, a crash, a hang, a MemoryError or
NaN/inf presented as pixels. Longer runs: ``.venv/bin/python scripts/fuzz.py --seconds 600``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "fuzz.py"
FAILING = ("untyped", "signal", "hang", "memory", "nonfinite")


def test_fuzz_short_run_has_no_failing_outcome(tmp_path):
    summary_path = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--count", "40", "--seed", "1", "--jobs", "1",
         "--out", str(tmp_path / "out"), "--json", str(summary_path)],
        capture_output=True, text=True, timeout=300)
    assert summary_path.exists(), f"no summary written (rc {proc.returncode}):\n" \
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(summary_path.read_text())
    assert not summary["harness_errors"], summary["harness_errors"]
    assert summary["tried"] >= 30, summary
    seen = [c for c, n in summary["classes"].items() if n]
    assert len(seen) > 1, f"only {seen} occurred: the run proves nothing"
    assert len(summary["per_kind"]) >= 3, summary["per_kind"]
    failing = {c: summary["classes"][c] for c in FAILING if summary["classes"][c]}
    assert not failing, f"{failing}:\n" + "\n".join(
        f"#{f['index']} {f['class']} [{f['kind']}:{f['sub']}] {f['seed']}: {f['cause']}"
        for f in summary["failures"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_fuzz_mutants_are_deterministic(tmp_path):
    """The same --seed makes the same mutants: a failure found once can be made again."""
    outs = []
    for k in range(2):
        out = tmp_path / f"emit{k}"
        subprocess.run([sys.executable, str(SCRIPT), "--seed", "7", "--emit", "0", "1", "2", "3",
                        "4", "5", "--out", str(out)], check=True, capture_output=True, timeout=120)
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert len(outs[0]) == 6 and outs[0] == outs[1]
