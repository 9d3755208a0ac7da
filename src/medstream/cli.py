"""The ``medstream`` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import numpy as np

import medstream as ms


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(ms.__version__, prog_name="medstream")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Load medical images and volumes from any source by ID."""
    ctx.obj = {"debug": debug}


def _window_png(img: np.ndarray, center: float, width: float) -> np.ndarray:
    lo, hi = center - width / 2, center + width / 2
    return (np.clip((img.astype(np.float32) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write results (default: the demo cache folder).")
@click.pass_context
def demo(ctx: click.Context, out: Path | None) -> None:
    """Build a CT phantom as real DICOM files (once), stream it, report and write pictures."""
    from PIL import Image as PILImage
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from .demo_data import cache_dir, ensure_demo

    console = Console(width=None if sys.stdout.isatty() else 120)
    try:
        t0 = time.perf_counter()
        series = ensure_demo()
        console.print(f"sample data: {cache_dir()} ({time.perf_counter() - t0:.1f} s)")
        out = out or cache_dir() / "demo-output"
        out.mkdir(parents=True, exist_ok=True)
        stacks: dict[str, np.ndarray] = {}
        table = Table(title="medstream demo")
        for col in ("series", "syntax", "slices", "shape", "dtype", "HU range", "seconds", "MB/s"):
            table.add_column(col)
        for name, paths in series.items():
            ids = [ms.dicomfile_image_id(p) for p in paths]
            t0 = time.perf_counter()
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                          transient=True, disable=not console.is_terminal) as progress:
                task = progress.add_task(f"loading {name}", total=len(ids))
                objs = [ms.load_image(i, request_type="prefetch") for i in ids]
                images = []
                for o in objs:
                    images.append(o.result(120))
                    progress.advance(task)
            seconds = time.perf_counter() - t0
            # Order slices by position along the slice normal (not by file name).
            def z(image_id: str) -> float:
                plane = ms.metadata.get("imagePlaneModule", image_id)
                normal = np.cross(plane["row_cosines"], plane["column_cosines"])
                return float(np.dot(plane["image_position_patient"], normal))

            images.sort(key=lambda im: z(im.image_id))
            vol = np.stack([im.get_pixel_data() for im in images])
            stacks[name] = vol
            syntax = images[0].transfer_syntax_uid or "?"
            table.add_row(name, syntax, str(len(images)), str(vol.shape), str(vol.dtype),
                          f"{vol.min()}..{vol.max()}", f"{seconds:.2f}",
                          f"{vol.nbytes / 1e6 / seconds:.0f}")
        console.print(table)
        same = all(np.array_equal(stacks["uncompressed"], v) for v in stacks.values())
        console.print(f"compressed copy identical to uncompressed: {'yes' if same else 'NO'}")
        vol = stacks["uncompressed"]
        first = ms.metadata.get("imagePlaneModule", ms.dicomfile_image_id(series["uncompressed"][0]))
        console.print(
            f"geometry: spacing {first['pixel_spacing']} mm in-plane, thickness "
            f"{first['slice_thickness']} mm, orientation {first['image_orientation_patient']}"
        )
        k, r, c = (s // 2 for s in vol.shape)
        stretch = float(first["slice_thickness"]) / float(first["pixel_spacing"][0])
        views = [_window_png(vol[k], 40, 120)]
        for reformat in (vol[:, r, :][::-1], vol[:, :, c][::-1]):  # coronal, sagittal: head up
            pic = PILImage.fromarray(_window_png(reformat, 40, 120))
            pic = pic.resize((pic.width, round(pic.height * stretch)), PILImage.BILINEAR)
            views.append(np.asarray(pic))
        height = max(v.shape[0] for v in views)
        canvas = np.zeros((height, sum(v.shape[1] for v in views) + 8 * 2), np.uint8)
        x = 0
        for v in views:
            canvas[: v.shape[0], x : x + v.shape[1]] = v
            x += v.shape[1] + 8
        png = out / "demo_views.png"
        PILImage.fromarray(canvas).save(png)
        npy = out / "demo_volume.npy"
        np.save(npy, vol)
        console.print(f"wrote {png} (axial, coronal, sagittal; window 40/120)")
        console.print(f"wrote {npy} {vol.shape} {vol.dtype}")
        if not same:
            sys.exit(1)
    except ms.MedstreamError as exc:
        _fail(ctx, exc)


def _fail(ctx: click.Context, exc: BaseException) -> None:
    if ctx.obj and ctx.obj.get("debug"):
        raise exc
    click.echo(f"error: {exc}", err=True)
    sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
