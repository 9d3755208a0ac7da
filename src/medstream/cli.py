"""The ``medstream`` command line: demo, info, find, render, volume.

Errors print one line naming the ID and the cause and exit 1 (``--debug`` shows the traceback);
Ctrl-C cancels a running load and exits 130. Progress bars show only on a terminal.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

import medstream as ms

from .redact import redact_text


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(ms.__version__, prog_name="medstream")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="HTTP header for every request (repeatable).")
@click.option("--insecure", is_flag=True, help="Do not verify TLS certificates.")
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CA bundle (PEM) to trust instead of the default store.")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Client certificate (PEM) for mutual TLS; holds the key unless --key.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Private key (PEM) of --cert.")
@click.pass_context
def main(ctx: click.Context, debug: bool, headers: tuple[str, ...], insecure: bool,
         cacert: str | None, cert: str | None, key: str | None) -> None:
    """Load medical images and volumes from any source by ID.

    The bearer token for DICOMweb is read from MEDSTREAM_TOKEN (a --token on the command
    line is visible to other users in `ps`). --header, --insecure, --cacert and --cert go
    before the command: medstream --insecure --header 'X-Api-Key: k' info URL
    """
    http: dict[str, Any] = {}  # per load, so they belong to the URLs the command names
    if headers:
        http["headers"] = dict(_header(h) for h in headers)
    if insecure:
        http["verify"] = False
    elif cacert:
        http["verify"] = cacert
    if key and not cert:
        raise click.UsageError("--key needs --cert")
    if cert:
        http["cert"] = (cert, key) if key else cert
    if os.environ.get("MEDSTREAM_TOKEN"):
        http["token"] = os.environ["MEDSTREAM_TOKEN"]
    ctx.obj = {"debug": debug, "http": http}
    if not debug:
        warnings.showwarning = _show_warning


_SHOWN: set[str] = set()


def _warn_once(message: str) -> None:
    """One 'warning:' line per distinct message on stderr (a volume's geometry warnings come
    both as Python warnings and in its geometry report)."""
    text = redact_text(" ".join(message.split()))
    if text not in _SHOWN:
        _SHOWN.add(text)
        click.echo(f"warning: {text}", err=True)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Warnings as the CLI's own lines, not Python's (no file:line of the library)."""
    _warn_once(str(message))


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r}: use 'Name: value'", param_hint="--header")
    return name.strip(), value.strip()


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120)


class _PlainConsole:
    """The lines of a command that prints no tables, when stdout is not a terminal: as they
    are, without rich's markup, wrapping or import (0.03 s of a scripted conversion)."""

    is_terminal = False

    def print(self, text: str, *, markup: bool = True) -> None:
        click.echo(text)


def _line_console() -> Any:
    """rich's console on a terminal (progress bars), plain lines everywhere else."""
    return _console() if sys.stdout.isatty() else _PlainConsole()


@contextmanager
def _errors(ctx: click.Context) -> Iterator[None]:
    """One line per error, exit 1; the traceback only with --debug."""
    try:
        yield
    except KeyboardInterrupt:
        click.echo("cancelled", err=True)
        sys.exit(130)
    except MemoryError:  # a safety net: budgets are checked before allocating
        click.echo("error: out of memory (raise the budget with care, or use a bigger machine)",
                   err=True)
        sys.exit(1)
    except (ms.MedstreamError, ValueError, OSError) as exc:
        if ctx.obj and ctx.obj.get("debug"):
            raise
        message = _cli_words(redact_text(" ".join(str(exc).split())))
        click.echo(f"error: {message}", err=True)
        sys.exit(1)


_OPTION_WORDS = re.compile(r"\b(spacing|tilt|series|order)=['\"]?([\w.-]+)['\"]?")


def _cli_words(message: str) -> str:
    """Errors name Python options (spacing='resample'); on the command line, name the flags."""
    return _OPTION_WORDS.sub(lambda m: f"--{m.group(1)} {m.group(2)}", message)


def _image_id(source: str, frame: int | None = None) -> str:
    """A path or object URL (s3://...) becomes a dicomfile: (or nifti:) ID; anything with
    another scheme is taken as it is."""
    from .storage import is_store_url

    if is_store_url(source):
        if source.lower().endswith((".nii", ".nii.gz")):
            return f"nifti:{source}?slice={(frame or 1) - 1}"
        return ms.dicomfile_image_id(source, frame)
    if os.path.exists(source):
        if source.lower().endswith((".nii", ".nii.gz")):
            return f"nifti:{os.path.abspath(source)}?slice={(frame or 1) - 1}"
        return ms.dicomfile_image_id(source, frame)
    if frame is not None and source.startswith("dicomfile:") and "?frame=" not in source:
        return f"{source}?frame={frame}"
    return source


def _source_kind(source: str) -> str:
    """"series" (folder, DICOMweb study/series URL), "nifti" (a NIfTI volume) or "image"."""
    from .dicomweb import is_root_url
    from .discovery.source import dicomweb_url, is_nifti

    if is_nifti(source):
        return "image" if "slice=" in source else "nifti"
    web = dicomweb_url(source)
    if web is not None and web[0] == "other" and is_root_url(web[1]):
        return "root"
    if _is_folder(source) or (web is not None and web[0] in ("study", "series")):
        return "series"
    return "image"


def _is_folder(source: str) -> bool:
    """A local folder or an object-store prefix."""
    from .discovery.source import is_folder

    return is_folder(source)


DEFAULT_TIMEOUT = 10.0  # a dead or stalled server is reported in seconds, not minutes
DEFAULT_RETRIES = 1


def _net_options(fn: Any) -> Any:
    """--token, --timeout and --retries for every command that may reach a server."""
    fn = click.option("--retries", type=click.IntRange(0, 10), default=DEFAULT_RETRIES,
                      show_default=True, help="Retries of a failed HTTP request.")(fn)
    fn = click.option("--timeout", type=click.FloatRange(0.1, None), default=DEFAULT_TIMEOUT,
                      show_default=True, help="Seconds for each HTTP request as a whole.")(fn)
    return click.option("--token", default=None, help="Bearer token for the source's server.")(fn)


def _volume_flags(series_help: str) -> Any:
    """--series, --spacing, --tilt and --dynamic of the commands that build volumes (their
    values go to open_volume through ``_volume_options``)."""
    def add(fn: Any) -> Any:
        fn = click.option("--dynamic", is_flag=True, help="Every acquisition of a series "
                          "(time points, echoes) as one 4D output.")(fn)
        fn = click.option("--tilt", type=click.Choice(["shear", "raise"]), default="shear",
                          help="Gantry tilt.")(fn)
        fn = click.option("--spacing", type=click.Choice(["raise", "keep", "resample"]),
                          default="raise", help="Missing slices / irregular spacing.")(fn)
        return click.option("--series", default=None, help=series_help)(fn)
    return add


def _http(token: str | None, timeout: float | None = None, retries: int | None = None,
          insecure: bool = False) -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    out: dict[str, Any] = dict((ctx.obj or {}).get("http", {}) if ctx else {})
    out.update(timeout=timeout, retries=retries)
    if token:
        out["token"] = token
    if insecure:
        out["verify"] = False
    return {k: v for k, v in out.items() if v is not None}


def _load(volume: ms.StreamingImageVolume | ms.DynamicVolume, console: Any, label: str, order: str,
          stages: str | None = None) -> float:
    """Stream the volume with a progress bar (terminal only); Ctrl-C cancels the load."""
    t0 = time.perf_counter()
    extra = {"stages": stages} if stages else {}
    if not console.is_terminal:  # nothing to draw
        _wait(volume, volume.load(order=order, **extra))  # type: ignore[arg-type]
        return time.perf_counter() - t0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(label, total=volume.status.total)
        _wait(volume, volume.load(lambda p: progress.update(task, completed=p.frames_loaded),
                                  order=order, **extra))  # type: ignore[arg-type]
    return time.perf_counter() - t0


def _wait(volume: ms.StreamingImageVolume | ms.DynamicVolume, job: Any) -> None:
    """The load's end; Ctrl-C cancels it."""
    try:
        job.result()
    except KeyboardInterrupt:
        volume.cancel_loading()
        raise


def _geometry_lines(volume: ms.StreamingImageVolume | ms.DynamicVolume) -> list[str]:
    import numpy as np

    g = volume.geometry
    lines = [
        f"shape {volume.shape} {volume.dtype}, spacing (x, y, z) "
        f"{tuple(round(s, 4) for s in g.spacing)} mm",
        f"origin (LPS) {tuple(round(float(x), 3) for x in g.origin)} mm, direction "
        f"{np.round(g.direction, 4).tolist()}",
    ]
    for w in g.warnings:
        _warn_once(w)
    return lines


# -- demo ----------------------------------------------------------------------------------------
@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write results (default: the demo cache folder).")
@click.pass_context
def demo(ctx: click.Context, out: Path | None) -> None:
    """Build a CT phantom as real DICOM (once), stream it as a volume, write NIfTI and a PNG."""
    import numpy as np
    from rich.table import Table

    from .demo_data import cache_dir, ensure_demo
    from .render import save_png, three_views

    console = _console()
    with _errors(ctx):
        t0 = time.perf_counter()
        series = ensure_demo()
        console.print(f"sample data: {cache_dir()} ({time.perf_counter() - t0:.1f} s)")
        out = out or cache_dir() / "demo-output"
        out.mkdir(parents=True, exist_ok=True)
        volumes: dict[str, ms.StreamingImageVolume] = {}
        table = Table(title="medstream demo")
        for col in ("series", "syntax", "slices", "shape", "dtype", "HU range", "seconds", "MB/s"):
            table.add_column(col)
        for name, paths in series.items():
            t0 = time.perf_counter()
            volume = ms.open_volume(paths[0].parent, load=False)  # header scan + geometry
            assert isinstance(volume, ms.StreamingImageVolume)
            _load(volume, console, f"loading {name}", "interleaved")
            seconds = time.perf_counter() - t0
            data = volume.scalar_data
            syntax = ms.metadata.get("transferSyntax", volume.image_ids[0]) or {}
            table.add_row(name, str(syntax.get("transfer_syntax_uid")), str(volume.shape[0]),
                          str(volume.shape), str(volume.dtype), f"{data.min()}..{data.max()}",
                          f"{seconds:.2f}", f"{volume.size_in_bytes / 1e6 / seconds:.0f}")
            volumes[name] = volume
        console.print(table)
        ref = volumes["uncompressed"]
        same = all(np.array_equal(ref.scalar_data, v.scalar_data) for v in volumes.values())
        console.print(f"compressed copy identical to uncompressed: {'yes' if same else 'NO'}")
        for line in _geometry_lines(ref):
            console.print(f"geometry: {line}")
        png, nii = out / "demo_views.png", out / "demo_volume.nii.gz"
        save_png(three_views(ref.scalar_data, ref.spacing, (40, 120)), png)
        ref.save(nii)
        console.print(f"wrote {png} (axial, coronal, sagittal; window 40/120)")
        console.print(f"wrote {nii} {ref.shape} {ref.dtype}, RAS affine")
        if not same:
            sys.exit(1)


# -- info ----------------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_net_options
@click.pass_context
def info(ctx: click.Context, source: str, as_json: bool, token: str | None, timeout: float,
         retries: int) -> None:
    """Series of a folder / DICOMweb study or series URL, or the metadata of one image."""
    from rich.table import Table

    console = _console()
    with _errors(ctx):
        http = _http(token, timeout, retries)
        kind = _source_kind(source)
        if kind == "root":  # a DICOMweb root: its studies, as `medstream find` lists them
            try:
                studies = ms.dicomweb.search_studies(source, limit=INFO_STUDIES, **http)
            except (ms.HTTPStatusError, ValueError):  # no QIDO there: an image URL after all
                kind = "image"
            else:
                _print_results(console, source, "studies", studies, as_json)
                return
        rows = _segment_rows(source) if kind == "image" else []
        if rows:  # a SEG or RTSTRUCT: its segments, from its header
            if as_json:
                click.echo(json.dumps({"source": source, "segments": rows}, default=str))
                return
            table = Table(title=source)
            for col in ("segment", "label", "colour"):
                table.add_column(col)
            for number, label, color in rows:
                table.add_row(str(number), label, str(color or ""))
            console.print(table)
            return
        if kind == "image":
            image_id = _image_id(source)
            modules = _header_of(image_id, http)
            if as_json:
                click.echo(json.dumps({"image_id": image_id, "modules": modules}, default=str))
                return
            table = Table(title=image_id)
            for col in ("module", "attribute", "value"):
                table.add_column(col)
            for module, values in modules.items():
                for key, value in (values or {}).items():
                    if value is not None:
                        table.add_row(module, key, _shown(key, value))
            console.print(table)
            return
        skipped: dict[str, str] = {}
        if kind == "nifti":
            volume = ms.open_volume(source, load=False, **http)
            found = [{"key": volume.volume_id, "images": volume.shape[0], **volume.geometry.summary()}]
        elif _is_folder(source):
            scan = ms.scan_folder(source)
            found, skipped = _summaries(scan.series), scan.skipped
        else:
            found = _summaries(ms.describe_source(source, **http))
        if as_json:
            click.echo(json.dumps({"source": source, "series": found, "skipped": skipped},
                                  default=str))
            return
        _print_skipped(console, source, found, skipped)
        if not found:
            return
        table = Table(title=source)
        for col in ("#", "series", "modality", "description", "images", "shape", "spacing mm",
                    "warnings"):
            table.add_column(col)
        for index, s in enumerate(found):  # the number `volume --series N` takes
            stack = f"\nstack: {s['stack']}" if s.get("stack") else ""
            table.add_row(str(index), str(s.get("key")) + stack, str(s.get("modality") or ""),
                          str(s.get("description") or ""), str(s.get("images")),
                          str(s.get("shape")), str(s.get("spacing")),
                          "\n".join(s.get("warnings") or []) or "-")
        console.print(table)


def _segment_rows(source: str) -> list[tuple[int, str, Any]]:
    """(number, label, colour) of a local SEG's segments or RTSTRUCT's ROIs, from its header;
    [] for anything else."""
    if not os.path.isfile(source):
        return []
    import pydicom

    try:
        ds = pydicom.dcmread(source, stop_before_pixels=True, force=True)
    except Exception:
        return []
    if ds.get("Modality") == "SEG":
        from .segmentation import lab_to_rgb

        return [(int(s.SegmentNumber), str(s.get("SegmentLabel", "")),
                 lab_to_rgb(s.get("RecommendedDisplayCIELabValue")))
                for s in ds.get("SegmentSequence") or [] if int(s.SegmentNumber) > 0]
    if ds.get("Modality") == "RTSTRUCT":
        colors = {int(r.ReferencedROINumber): tuple(int(c) for c in r.ROIDisplayColor)
                  for r in ds.get("ROIContourSequence") or [] if "ROIDisplayColor" in r}
        return [(int(r.ROINumber), str(r.get("ROIName", "")), colors.get(int(r.ROINumber)))
                for r in ds.get("StructureSetROISequence") or []]
    return []


def _shown(key: str, value: Any) -> str:
    """A value as a person reads it: acquisition times, kept as seconds for ordering frames and
    tiles (since midnight from a TM, since the epoch from a DT), shown as a time or date-time."""
    if key == "acquisition_time" and isinstance(value, float) and value >= 0:
        import datetime as dt

        if value < 86400:
            return (dt.datetime.min + dt.timedelta(seconds=value)).strftime("%H:%M:%S.%f")
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)


def _header_of(image_id: str, http: dict[str, Any]) -> dict[str, Any]:
    """An image's metadata modules from its header alone (no pixel decoding); for an object
    without pixels (RT plan, SR...) its header elements. Schemes with no header path (web
    images) are loaded."""
    from .core.runtime import runtime

    runtime.run_sync(ms.metadata.preload([image_id], **http))
    modules = ms.metadata.get("all", image_id)
    if modules:
        return dict(modules)
    try:  # no header path, or no image in it: the load says which
        ms.load_image(image_id, **http).result()
    except ms.MissingPixelDataError:
        header = ms.metadata.get("instance", image_id)
        if not header:
            raise
        return {"header": {k: v for k, v in header.items() if v not in (None, "", [])}}
    return dict(ms.metadata.get("all", image_id) or {})


def _summaries(series: list[ms.SeriesInfo]) -> list[dict[str, Any]]:
    """Series summaries; the parts of a split series say which keys tell them apart."""
    from .discovery.report import stack_keys

    keys = stack_keys(series)
    return [dict(s.summary(), **({"stack": keys[s.key]} if s.key in keys else {}))
            for s in series]


def _print_skipped(console: Any, source: str, found: list[Any], skipped: dict[str, str],
                   limit: int = 20) -> None:
    """Files a folder scan left out, with the reason, and a plain word when nothing was found."""
    for path, why in list(skipped.items())[:limit]:
        console.print(f"skipped {path}: {why}", markup=False, highlight=False)
    if len(skipped) > limit:
        console.print(f"... and {len(skipped) - limit} more skipped files")
    if not found:
        console.print(f"no DICOM image series found in {source}"
                      + (f" ({len(skipped)} files skipped)" if skipped else ""), markup=False)


# -- find ----------------------------------------------------------------------------------------
INFO_STUDIES = 100  # studies `info` lists for a DICOMweb root (use `find --limit` for more)


@main.command()
@click.argument("root")
@click.option("--patient", default=None, help="PatientID to match (wildcards * and ? allowed).")
@click.option("--modality", default=None, help="Modality, e.g. CT (in the study, or the series').")
@click.option("--study-date", default=None, metavar="RANGE",
              help="StudyDate or range: 20240101, 20240101-20241231, -20231231.")
@click.option("--study", "study_uid", default=None, help="Only the series of this StudyInstanceUID.")
@click.option("--match", "matches", multiple=True, metavar="KEYWORD=VALUE",
              help="Any other attribute to match, e.g. --match 'PatientName=DOE^*' (repeatable).")
@click.option("--level", type=click.Choice(["studies", "series"]), default="studies",
              show_default=True, help="What to list.")
@click.option("--limit", type=click.IntRange(1, None), default=100, show_default=True,
              help="At most this many results.")
@click.option("--fuzzy", is_flag=True, help="Ask the server for fuzzy matching of names.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per result).")
@_net_options
@click.pass_context
def find(ctx: click.Context, root: str, patient: str | None, modality: str | None,
         study_date: str | None, study_uid: str | None, matches: tuple[str, ...], level: str,
         limit: int, fuzzy: bool, as_json: bool, token: str | None, timeout: float,
         retries: int) -> None:
    """Search a DICOMweb server (QIDO-RS) for studies or series; each result's URL goes
    straight to `medstream volume` or `medstream info`."""
    console = _console()
    with _errors(ctx):
        query: dict[str, Any] = dict(_match(m) for m in matches)
        query.update({k: v for k, v in (("PatientID", patient), ("StudyDate", study_date))
                      if v is not None})
        http = _http(token, timeout, retries)
        results: list[Any]
        if level == "series" or study_uid:
            if modality:
                query["Modality"] = modality
            level = "series"
            results = ms.dicomweb.search_series(root, study_uid, limit=limit, fuzzy=fuzzy,
                                                **query, **http)
        else:
            if modality:
                query["ModalitiesInStudy"] = modality
            results = ms.dicomweb.search_studies(root, limit=limit, fuzzy=fuzzy, **query, **http)
        _print_results(console, root, level, results, as_json)


def _match(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise click.BadParameter(f"{text!r}: use KEYWORD=VALUE", param_hint="--match")
    return key.strip(), value.strip()


def _print_results(console: Any, root: str, level: str, results: list[Any],
                   as_json: bool) -> None:
    """Search results as JSON lines, or a table and then each URL on a line of its own (whole,
    to copy into `medstream volume`)."""
    from dataclasses import asdict

    from rich.table import Table

    if as_json:
        click.echo(json.dumps([dict(asdict(r), url=r.url) for r in results]))
        return
    if not results:
        console.print(f"no {level} found on {root}", markup=False)
        return
    table = Table(title=f"{len(results)} {level} on {root}")
    cols = ("#", "patient", "name", "date", "modality", "description", "series", "images")
    for col in cols if level == "studies" else cols[:6] + cols[7:]:
        table.add_column(col)
    for i, r in enumerate(results):
        if level == "studies":
            table.add_row(str(i), r.patient_id, r.patient_name, r.study_date,
                          ",".join(r.modalities), r.description, str(r.n_series or ""),
                          str(r.n_instances or ""))
        else:
            table.add_row(str(i), r.patient_id, r.patient_name, r.series_date or r.study_date,
                          r.modality, r.description, str(r.n_instances or ""))
    console.print(table)
    for i, r in enumerate(results):
        click.echo(f"[{i}] {r.url}")


# -- render --------------------------------------------------------------------------------------
@main.command()
@click.argument("image_id")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="PNG to write.")
@click.option("--window", nargs=2, type=float, default=None, metavar="CENTER WIDTH",
              help="VOI window (default: the image's own).")
@click.option("--frame", type=int, default=None, help="Frame of a multi-frame file (1-based).")
@_net_options
@click.pass_context
def render(ctx: click.Context, image_id: str, out: Path, window: tuple[float, float] | None,
           frame: int | None, token: str | None, timeout: float, retries: int) -> None:
    """Write one image as a PNG with its VOI applied (MONOCHROME1 inverted, colour as is)."""
    from .render import image_to_uint8, save_png

    with _errors(ctx):
        ident = _image_id(image_id, frame)
        image = ms.load_image(ident, **_http(token, timeout, retries)).result()
        out.parent.mkdir(parents=True, exist_ok=True)
        save_png(image_to_uint8(image, window), out)
        click.echo(f"wrote {out} ({image.columns}x{image.rows}, {image.photometric_interpretation})")


# -- volume --------------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="Output: .nii, .nii.gz, .npy or .npz.")
@click.option("--order", type=click.Choice(["interleaved", "sequential"]), default="interleaved")
@_volume_flags("Series UID (UID#N for a split series), 0-based index as listed by "
               "`medstream info`, or 'largest', when there are several.")
@click.option("--allow-partial", is_flag=True,
              help="Write a volume with failed slices anyway, with its slice mask beside it.")
@click.option("--reference", default=None, metavar="SERIES",
              help="SOURCE is a SEG or RTSTRUCT: write its labelmap on this series' grid (a "
                   "folder or DICOMweb series URL), with its label table beside it.")
@click.option("--preview", is_flag=True,
              help="Load in stages and write NAME.preview.EXT as soon as every slice has a "
                   "value (lossy or copied from a neighbour), then the final volume.")
@_net_options
@click.pass_context
def volume(ctx: click.Context, source: str, out: Path, order: str, series: str | None,
           spacing: str, tilt: str, dynamic: bool, allow_partial: bool, reference: str | None,
           preview: bool, token: str | None, timeout: float, retries: int) -> None:
    """Load a folder, DICOMweb series/study URL or NIfTI as a volume and write it out."""
    console = _line_console()
    with _errors(ctx):
        if not out.name.lower().endswith((".nii", ".nii.gz", ".npy", ".npz")):
            raise ValueError(f"{out}: unknown output format (use .nii, .nii.gz, .npy or .npz)")
        if reference is not None:
            http = _http(token, timeout, retries)
            grid = ms.open_volume(reference, **_volume_options(series, spacing, tilt, False),
                                  **http)
            seg = ms.open_segmentation(source, reference=grid, **http)
            written = seg.save(out)
            for s in seg.segments:
                console.print(f"{s.number}: {s.label}", markup=False)
            console.print(f"wrote {written} and its label table", markup=False)
            return
        vol = ms.open_volume(source, load=False, **_volume_options(series, spacing, tilt, dynamic),
                             **_http(token, timeout, retries))
        early = _preview_writer(vol, out, console) if preview and not dynamic else None
        try:
            seconds = _load(vol, console, "loading", order, "progressive" if early else None)
        except ms.VolumeLoadError:
            if not allow_partial:
                raise
            seconds = vol.status.seconds or 0.0
        finally:
            if early is not None:
                early()
        lossy = {"allow_lossy": allow_partial} if early is not None else {}
        written = vol.save(out, allow_partial=allow_partial, **lossy)
        if not vol.loaded_mask.all():
            click.echo(f"warning: {int((~vol.loaded_mask).sum())} slices missing; mask written "
                       f"beside {written}", err=True)
        for line in _geometry_lines(vol):
            console.print(line)
        console.print(f"wrote {out} in {seconds:.2f} s")


def _preview_writer(vol: Any, out: Path, console: Any) -> Callable[[], None]:
    """Write ``NAME.preview.EXT`` when a stage ends with every slice showing something: the
    array is copied on the loader's thread at that moment and written from a thread of its own,
    so the load goes on meanwhile. Returns the function that stops listening (and waits for the
    write)."""
    import threading

    import numpy as np

    from .volumes.export import save_volume

    name = out.name
    ext = next(e for e in (".nii.gz", ".nii", ".npz", ".npy") if name.lower().endswith(e))
    target = out.with_name(name[: -len(ext)] + ".preview" + ext)
    writers: list[threading.Thread] = []

    def write(data: Any, stage: str) -> None:
        save_volume(data, vol.geometry, target)
        console.print(f"wrote {target} after stage {stage!r}", markup=False)

    def on_stage(event: Any) -> None:
        d = event.detail
        if d.get("volume_id") != vol.volume_id or writers or d["status"][0]:  # NONE left
            return
        data = np.array(vol.scalar_data)
        writers.append(threading.Thread(target=write, args=(data, d["stage"]), daemon=True))
        writers[0].start()

    ms.events.add_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", on_stage)

    def stop() -> None:
        ms.events.remove_event_listener("IMAGE_VOLUME_STAGE_COMPLETED", on_stage)
        for t in writers:
            t.join()

    return stop


def _volume_options(series: str | None, spacing: str, tilt: str, dynamic: bool) -> dict[str, Any]:
    """The volume flags of `volume` and `convert-many` as open_volume's options."""
    chosen: str | int | None = int(series) if series and series.isdigit() else series
    return {"series": chosen, "spacing": spacing, "tilt": tilt, "dynamic": dynamic}


# -- convert-many --------------------------------------------------------------------------------
@main.command("convert-many")
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for the outputs and manifest.json.")
@click.option("--format", "fmt", type=click.Choice(["nii.gz", "nii", "npz", "npy"]), default="nii.gz")
@click.option("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster).")
@click.option("--workers", type=int, default=None, help="LocalCluster worker processes.")
@click.option("--max-requests", type=int, default=6, help="Frame requests in flight per worker.")
@click.option("--max-series", type=int, default=None, help="Series loading at once, cluster-wide.")
@click.option("--series-timeout", type=click.FloatRange(0.1, None), default=None,
              help="Deadline in seconds for each series' pixel load.")
@_volume_flags("In every source: series UID, 0-based index as listed by `medstream info`, "
               "or 'largest', when a source holds several.")
@_net_options
@click.pass_context
def convert_many(ctx: click.Context, sources: tuple[str, ...], out_dir: Path, fmt: str,
                 scheduler: str | None, workers: int | None, max_requests: int,
                 max_series: int | None, series_timeout: float | None, series: str | None,
                 spacing: str, tilt: str, dynamic: bool, token: str | None,
                 timeout: float, retries: int) -> None:
    """Convert many series (folders, DICOMweb series URLs, NIfTI) on a Dask cluster."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = _console()
    with _errors(ctx):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ms.MedstreamError("convert-many needs Dask: pip install 'medstream[distributed]'") from exc
        from . import distributed as msd

        if scheduler:
            client = Client(scheduler)
        else:
            client = Client(LocalCluster(n_workers=workers, threads_per_worker=2, processes=True,
                                         dashboard_address=None))
        try:
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                          disable=not console.is_terminal, transient=True) as progress:
                task = progress.add_task("converting", total=len(sources))
                rows = msd.convert_many(
                    list(sources), out_dir, client=client, fmt=fmt, max_requests=max_requests,
                    max_series=max_series, series_timeout=series_timeout,
                    on_done=lambda r: progress.advance(task), **_volume_options(
                        series, spacing, tilt, dynamic), **_http(token, timeout, retries))
        finally:
            cluster = None if scheduler else client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        manifest = out_dir / "manifest.json"
        manifest.write_text(redact_text(json.dumps(rows, indent=1)))
        failed = [r for r in rows if r["error"]]
        for r in failed:
            click.echo(redact_text(f"failed: {r['source']}: {r['error']}"), err=True)
        console.print(f"{len(rows) - len(failed)} of {len(rows)} series converted; "
                      f"manifest: {manifest}")
        if failed:
            sys.exit(1)


def run(prog_name: str = "medstream") -> None:
    """The console entry point: the command, then an exit without the interpreter's teardown.

    Freeing every imported module at exit took 0.1-0.2 s of each short run (more than loading a
    small series). Output is flushed and exit handlers run first, so nothing is lost; library
    users and tests calling ``main`` keep the normal exit."""
    import atexit
    import logging

    # OpenBLAS starts a thread per core when numpy is imported: 0.03-0.06 s of every run on a
    # busy 2-core machine, for BLAS calls the command line does not make (its numpy work is
    # element-wise; 3x3 geometry). A setting of the user's own wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    code = 0
    try:
        main(prog_name=prog_name)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            code = 1
        else:
            code = int(exc.code or 0)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # the medstream loop and pools close, open files are flushed
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
