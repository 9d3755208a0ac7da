"""The picture in docs/progressive.md: a volume after each stage of ``ms.PROGRESSIVE``.

A 48-slice 512x512 HTJ2K CT (lossless RPCL with TLM; real CT pixels from pydicom's test data,
rolled per slice, with noise) is loaded from a static DICOMweb server that honours Range. After
each stage the array is copied (on the loader thread, as the stage-completed event fires) and
drawn as an axial slice of the "quarter" stage (slice 4: lossy until the final stage) beside a
sagittal reformat (every slice, stretched 4x along z), windowed at 40/400 HU. Row labels name the
stage and the slice counts (none / filled / lossy / final).

    .venv/bin/python scripts/stage_pictures.py [docs/img/stages.png]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def window(a: np.ndarray, center: float = 40, width: float = 400) -> np.ndarray:
    return (np.clip((a - (center - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def main() -> None:
    import medstream as ms
    from series import htj2k_series, write_series
    from static_dicomweb import StaticDicomWeb

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img" / "stages.png"
    tmp = Path(tempfile.mkdtemp())
    raw = write_series(tmp / "raw", 48, size=512, spacing=1.0, pixel_spacing=(0.7, 0.7))
    htj2k_series(raw, tmp / "htj2k", noise=12)
    server = StaticDicomWeb(tmp / "htj2k")
    shots: list[tuple[str, list[int], np.ndarray]] = []

    def on_stage(event) -> None:
        shots.append((event.detail["stage"], event.detail["status"], np.array(vol.scalar_data)))

    vol = ms.open_volume(server.series_url, load=False)
    ms.events.add_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", on_stage)
    try:
        vol.load(stages="progressive").result(120)
    finally:
        ms.events.remove_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", on_stage)
        server.close()
    rows = []
    for stage, counts, data in shots:
        axial = window(data[4, 128:384, 128:384])
        sagittal = window(np.repeat(data[:, 128:384, 256], 4, axis=0)[:, :].T)  # (y, z*4)
        panel = np.concatenate([axial, np.full((256, 8), 255, np.uint8), sagittal[:, :192]], 1)
        label = np.full((24, panel.shape[1]), 255, np.uint8)
        img = Image.fromarray(np.concatenate([label, panel], 0))
        ImageDraw.Draw(img).text((4, 6), f"after '{stage}': none {counts[0]}, filled {counts[1]},"
                                         f" lossy {counts[2]}, final {counts[3]}", fill=0)
        rows.append(np.asarray(img))
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
