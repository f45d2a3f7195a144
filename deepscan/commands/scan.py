"""deepscan scan: score every image under the given paths."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from deepscan.commands.options import (
    FACE_DEFAULTS,
    FACES,
    PERFORMANCE,
    BatchSizeOption,
    FaceMarginOption,
    FacesOption,
    MaxFacesOption,
    MinFaceSizeOption,
    ModelOption,
    StderrConsole,
    ThresholdOption,
    TrustModelOption,
    face_settings,
    progress_bar,
)
from deepscan.discovery import read_path_list
from deepscan.errors import OutputError
from deepscan.job import EXTRA_COLUMNS, ScanSettings, local_scorer
from deepscan.output import OutputSettings, ScanEvents, scan_to_report
from deepscan.ray_scorer import STALL_SECONDS, ray_backend
from deepscan.report import OutputFormat
from deepscan.scorers import DEFAULT_BATCH_SIZE
from deepscan.summary import Summary

OUTPUT, INPUT, GATE = "Output", "Input", "Gating (exit code 4)"


def scan_command(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATH",
            help="Image files and folders (walked recursively); '-' reads paths from stdin.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Report file (.csv, .json, .jsonl); '-' or none: stdout.", rich_help_panel=OUTPUT
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat | None,
        typer.Option(
            "--format", "-f", help="Report format (default: --out's extension; CSV on stdout).", rich_help_panel=OUTPUT
        ),
    ] = None,
    csv_safe: Annotated[
        bool,
        typer.Option(
            "--csv-safe",
            help="CSV for spreadsheets: a cell starting with = + - @ is shown as text, not run as a formula "
            "(paths then no longer round-trip; not for --resume).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress bar, no summary: data and errors only.", rich_help_panel=OUTPUT
        ),
    ] = False,
    columns: Annotated[
        str | None,
        typer.Option(help=f"Extra columns (comma-separated): {', '.join(EXTRA_COLUMNS)}.", rich_help_panel=OUTPUT),
    ] = None,
    evidence: Annotated[
        bool,
        typer.Option(
            "--evidence/--no-evidence",
            help="Read C2PA, IPTC and generator metadata (the evidence column); a declared AI file is fake.",
            rich_help_panel=OUTPUT,
        ),
    ] = True,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also write an HTML report (thumbnails in a folder beside it) to open in a browser.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    explain: Annotated[
        int,
        typer.Option(
            min=0, help="With --html: Grad-CAM heat maps of the N most suspicious files.", rich_help_panel=OUTPUT
        ),
    ] = 0,
    summary_json: Annotated[
        Path | None,
        typer.Option(
            help="Also write the summary as JSON ('-': stdout, when the report is not there).", rich_help_panel=OUTPUT
        ),
    ] = None,
    model: ModelOption = None,
    threshold: ThresholdOption = None,
    trust_model: TrustModelOption = False,
    files_from: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Read paths from this file, one per line.", rich_help_panel=INPUT
        ),
    ] = None,
    null: Annotated[
        bool, typer.Option("--null", "-0", help="Path lists are NUL-separated (find -print0).", rich_help_panel=INPUT)
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option(help="Only files matching this glob (repeatable); see the README.", rich_help_panel=INPUT),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip files matching this glob (repeatable).", rich_help_panel=INPUT)
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="Walk folders recursively.", rich_help_panel=INPUT)
    ] = True,
    fail_on_fake: Annotated[
        bool, typer.Option("--fail-on-fake", help="Exit 4 if any file is labelled fake.", rich_help_panel=GATE)
    ] = False,
    max_fake: Annotated[
        int | None, typer.Option(min=0, help="Exit 4 if more than N files are fake.", rich_help_panel=GATE)
    ] = None,
    max_fake_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Exit 4 if more than this fraction of scored files is fake.", rich_help_panel=GATE
        ),
    ] = None,
    faces: FacesOption = False,
    min_face_size: MinFaceSizeOption = FACE_DEFAULTS.min_face_size,
    max_faces: MaxFacesOption = FACE_DEFAULTS.max_faces,
    face_margin: FaceMarginOption = None,
    save_crops: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Write the scored crops here for review.", rich_help_panel=FACES),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted scan into --out, keeping its rows.", rich_help_panel=PERFORMANCE
        ),
    ] = False,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="SQLite cache of scores by file content: re-scans score only new files.", rich_help_panel=PERFORMANCE
        ),
    ] = None,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
    ray: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Score on a Ray cluster: 'local' starts one here, 'auto' joins RAY_ADDRESS or the running one, "
            "HOST:PORT joins by address (pip install 'deepscan-audit[ray]').",
            rich_help_panel=PERFORMANCE,
        ),
    ] = None,
    ray_timeout: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="With --ray: stop with an error when the cluster returns no row for this many seconds.",
            rich_help_panel=PERFORMANCE,
        ),
    ] = STALL_SECONDS,
) -> int:
    """Score every image under PATHS as real or fake and write one row per file (per face with --faces).

    Columns: path, label (real/fake; empty on error), score (probability of
    fake, 0..1) and error (why a file could not be scored).

    Example: deepscan scan ./photos --out results.csv
    """
    console = StderrConsole()
    output = OutputSettings(
        out=out,
        format=output_format,
        resume=resume,
        csv_safe=csv_safe,
        html=html,
        explain=explain,
        summary_json=summary_json,
        fail_on_fake=fail_on_fake,
        max_fake=max_fake,
        max_fake_fraction=max_fake_fraction,
    )
    output.check()
    settings = ScanSettings(
        model=model,
        threshold=threshold,
        batch_size=batch_size,
        trust_model=trust_model,
        faces=face_settings(faces, min_face_size, max_faces, face_margin),
        save_crops=save_crops,
        columns=_columns(columns),
        cache=cache,
        evidence=evidence,
    )
    if settings.cache is not None and settings.cache.is_dir():
        raise OutputError(f"cache path is a directory: {settings.cache}")
    inputs = _inputs(paths or [], files_from, null)
    named = [*(paths or []), *([f"the paths listed in {files_from}"] if files_from is not None else [])]
    progress = progress_bar(console, quiet)
    task = progress.add_task("starting", total=None)

    def finished(summary: Summary, interrupted: bool) -> None:
        progress.stop()
        if not quiet:
            summary.render(console, interrupted=interrupted)

    events = ScanEvents(
        status=lambda text: progress.update(task, description=text),
        found=lambda count: progress.update(task, total=count),
        advanced=lambda count: progress.advance(task, count),
        finished=finished,
    )
    with progress:
        result = scan_to_report(
            inputs,
            output,
            settings,
            recursive=recursive,
            include=include or (),
            exclude=exclude or (),
            backend=local_scorer if ray is None else ray_backend(ray, ray_timeout),
            named=["the paths read from stdin" if path == "-" else path for path in named],
            events=events,
        )
    return result.exit_code


def _columns(value: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in (value or "").split(",") if name.strip())


def _inputs(paths: list[str], files_from: Path | None, null: bool) -> list[str]:
    """Command-line paths ('-' for stdin) and --files-from lists, in order; named paths must exist.

    An empty list is fine (nothing to scan, exit 0): `git diff ... | deepscan scan -` may list no file.
    """
    if not paths and files_from is None:
        raise typer.BadParameter("give at least one PATH, '-' for stdin, or --files-from", param_hint="PATH")
    inputs: list[str] = []
    for path in paths:
        if path == "-":
            inputs += read_path_list(sys.stdin.buffer, null=null)
        elif not Path(path).exists() and not Path(path).is_symlink():
            raise typer.BadParameter(f"path {path!r} does not exist", param_hint="PATH")
        else:
            inputs.append(path)
    if files_from is not None:
        with open(files_from, "rb") as handle:
            inputs += read_path_list(handle, null=null)
    return inputs
