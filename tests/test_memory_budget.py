"""One memory budget for everything medstream keeps: decoded pixels, parsed multi-frame files and
mosaics, headers, per-image metadata, remote heads. All of it counts in ``get_cache_size()``,
shares ``set_max_cache_size()``'s limit, and goes with ``purge_cache()``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import medstream as ms
from corpus import qa
from medstream.core.kept import KeptMap
from series import write_series

ROOT = Path(__file__).resolve().parents[1]


def test_a_parsed_multiframe_file_is_counted_and_purged():
    path = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    ms.load_image(ms.dicomfile_image_id(path, 3)).result(30)
    kept = ms.cache.stores()
    assert kept["parsed files"] >= path.stat().st_size // 2  # the whole dataset with its pixels
    assert ms.get_cache_size() >= kept["parsed files"] + kept["metadata"]
    ms.purge_cache()
    assert ms.get_cache_size() == 0 and not any(ms.cache.stores().values())


def test_mosaic_tiles_keep_their_file_within_the_budget():
    folder = qa("siemens-mosaic", "ax", "axasc35")
    first = sorted(p for p in folder.iterdir() if p.name.startswith("MR."))[0]
    ms.open_volume(folder, dynamic=True)
    assert ms.cache.stores()["parsed files"] > first.stat().st_size
    ms.purge_cache()
    assert ms.cache.stores()["parsed files"] == 0


def test_kept_values_shrink_to_a_lower_limit(tmp_path):
    """Pixels go first, then parsed files and heads; a volume being built still finds its
    slices' metadata (a scan under a tiny budget once split a series in two)."""
    write_series(tmp_path / "s", 40, size=64)
    enhanced = qa("enhanced-4d", "Philips", "IM_0027_fMAP.dcm")
    ms.open_volume(tmp_path / "s")
    ms.load_image(ms.dicomfile_image_id(enhanced, 2)).result(30)
    kept = ms.cache.stores()
    assert kept["metadata"] > 0 and kept["parsed files"] > 0
    limit = kept["metadata"] + kept["pixel locators"] + 40 * 64 * 64 * 2 + 50_000
    ms.set_max_cache_size(limit)  # room for one volume, not for the parsed file too
    assert ms.get_cache_size() <= limit and ms.cache.stores()["parsed files"] == 0
    vol = ms.open_volume(tmp_path / "s")  # a new scan and load within the small budget
    assert vol.shape == (40, 64, 64)
    assert ms.get_cache_size() <= limit


def test_kept_map_is_lru_by_bytes_and_refuses_a_value_over_its_share():
    kept: KeptMap[str, bytes] = KeptMap("test map", max_bytes=1000, size_of=len)
    try:
        assert kept.put("a", b"x" * 200) and kept.put("b", b"x" * 200)
        assert kept.get("a") is not None  # "b" is now the least recently used
        assert kept.put("c", b"x" * 200) and kept.put("d", b"x" * 200) and kept.put("e", b"x" * 200)
        assert kept.nbytes == 1000 and "b" in kept
        assert kept.put("f", b"x" * 200)
        assert "b" not in kept and "a" in kept and kept.nbytes == 1000
        assert not kept.put("big", b"x" * 251)  # over a quarter: not kept
        assert kept.shrink(300) == 400 and len(kept) == 3
        assert ms.cache.stores()["test map"] == 600
        ms.purge_cache()
        assert len(kept) == 0 and kept.nbytes == 0
    finally:
        ms.cache._stores.remove(kept)  # noqa: SLF001 - unregister the test's own store


def test_memory_comes_back_after_purge_in_a_long_run(tmp_path):
    """The soak benchmark, short: 400 mixed loads (images, multi-frame, mosaics, volumes,
    cancelled, failing) in a fresh process; RSS after each purge stays within 60 MB of its level
    after the first 50, with file descriptors and threads flat."""
    out = tmp_path / "soak.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--ops", "400",
                    "--every", "100", "--json", str(out)], check=True, capture_output=True,
                   timeout=600)
    result = json.loads(out.read_text())
    assert result["outcomes"]["ok"] > 200 and result["outcomes"]["typed"] > 10
    assert result["max_rss_after_purge_over_baseline_mb"] < 60, result["samples"]
    assert len(result["fds"]) == 1 and len(result["threads"]) == 1, result["samples"]
