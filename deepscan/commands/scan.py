"""deepscan scan: score every image under the given paths."""

from __future__ import annotations

import contextlib
import json
import logging
import os
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
from deepscan.discovery import find_images, read_path_list
from deepscan.errors import INTERRUPTS, ExitCode, OutputClosed, OutputError
from deepscan.explain import explainer
from deepscan.html_report import EntryStore, entries_from_records, thumbnail_folder, write_html
from deepscan.interrupts import raise_if_swallowed, signals_win
from deepscan.job import EXTRA_COLUMNS, ScanJob, ScannedFile, ScanSettings, local_scorer, resume_marker
from deepscan.ray_scorer import STALL_SECONDS, ray_backend
from deepscan.report import (
    OutputFormat,
    Report,
    check_destination,
    choose_format,
    interrupted_destination,
    is_special,
    is_stdout,
    open_report,
    partial_path,
    report_columns,
    resolved,
    resume_source,
    write_atomically,
)
from deepscan.scorers import DEFAULT_BATCH_SIZE
from deepscan.summary import Summary

OUTPUT, INPUT, GATE = "Output", "Input", "Gating (exit code 4)"
log = logging.getLogger("deepscan")


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
    fmt = choose_format(out, output_format)
    if resume and is_stdout(out):
        raise OutputError("--resume needs --out FILE: the report it continues")
    if summary_json is not None and is_stdout(summary_json) and is_stdout(out):
        raise OutputError("--summary-json - needs --out FILE: the report already goes to stdout")
    if sys.stdout is None and (is_stdout(out) or (summary_json is not None and is_stdout(summary_json))):
        raise OutputError("stdout is closed: write the report and the summary to files (--out, --summary-json)")
    if csv_safe and (fmt is not OutputFormat.csv or resume):
        raise OutputError("--csv-safe writes CSV for spreadsheets: not with another --format, nor with --resume")
    if explain and html is None:
        raise OutputError("--explain draws heat maps into the HTML report: give --html FILE")
    for destination in (out, summary_json, html):
        check_destination(destination)
    settings = ScanSettings(
        model=model,
        threshold=threshold,
        batch_size=batch_size,
        trust_model=trust_model,
        faces=face_settings(faces, min_face_size, max_faces, face_margin),
        save_crops=save_crops,
        columns=_columns(columns),
        cache=cache,
        resume=resume_source(out) if resume and out is not None else None,
        resume_format=fmt,
        evidence=evidence,
    )
    if settings.cache is not None and settings.cache.is_dir():
        raise OutputError(f"cache path is a directory: {settings.cache}")
    inputs = _inputs(paths or [], files_from, null)
    to_file = out is not None and not is_stdout(out) and not is_special(resolved(out))  # not stdout, a device, a pipe
    interrupted_to = interrupted_destination(out, settings.resume) if to_file else None
    progress = progress_bar(console, quiet)
    task = progress.add_task("starting", total=None)
    backend = local_scorer if ray is None else ray_backend(ray, ray_timeout)
    with ScanJob(  # checks the model
        settings, backend=backend, status=lambda text: progress.update(task, description=text)
    ) as job:
        images = list(find_images(inputs, recursive=recursive, include=include or (), exclude=exclude or ()))
        if not images:
            log.warning("no image found in the given paths: nothing to scan")
        _refuse_clashing_outputs(
            {
                "--out": out,
                "--summary-json": summary_json,
                "--html": html,
                "--html's folder": thumbnail_folder(html) if html is not None else None,
                "--save-crops": save_crops,
                "--cache": cache,
            },
            images,
        )
        progress.update(task, total=len(images))
        named = [*(paths or []), *([f"the paths listed in {files_from}"] if files_from is not None else [])]
        named = ["the paths read from stdin" if path == "-" else path for path in named]
        summary = Summary(found=len(images), models=job.models, faces_mode=faces, inputs=named)

        def finish(interrupted: bool) -> ExitCode:
            summary.device = job.device
            where = interrupted_to if interrupted and interrupted_to is not None else out
            summary.destination = None if is_stdout(out) else str(where)
            if not quiet:
                summary.render(console, interrupted=interrupted)
            code = _exit_code(summary, fail_on_fake, max_fake, max_fake_fraction)
            if summary_json is not None:
                text = json.dumps({**summary.to_dict(), "interrupted": interrupted, "exit_code": int(code)}, indent=2)
                try:
                    _write_summary(summary_json, text + "\n")
                except OutputError as err:
                    log.warning("%s (the report itself is complete)", err)
            return code

        columns = report_columns(faces, settings.columns, evidence)
        store = EntryStore() if html is not None else None
        try:
            opened = open_report(out, fmt, columns, interrupted_to=interrupted_to, spreadsheet_safe=csv_safe)
            with opened as report, progress:
                try:
                    with signals_win():
                        for files in job.run(images):
                            for scanned in files:
                                _write(report, scanned, summary)
                            if store is not None:
                                for entry in entries_from_records(files):
                                    store.add(entry)
                            report.flush()
                            progress.advance(task, len(files))
                            raise_if_swallowed()
                        raise_if_swallowed()  # before the report is renamed into place as complete
                except INTERRUPTS:
                    for scanned in job.unfinished_kept():  # rows kept from the report are never lost
                        _write(report, scanned, summary)
                    raise
        except INTERRUPTS:
            if interrupted_to is not None:
                job.mark_interrupted(interrupted_to)
            finish(interrupted=True)
            raise
        except BrokenPipeError:
            raise OutputClosed() from None
        if to_file:
            for leftover in (partial_path(out), resume_marker(out), resume_marker(partial_path(out))):
                leftover.unlink(missing_ok=True)  # superseded by the finished report
        if store is not None and html is not None:
            summary.device = job.device
            heat = explainer(job.models, face_margin) if explain else None
            with store:
                cut = job.models[0].threshold
                facts = [*summary.provenance(), ("this page", str(html.absolute())), *summary.facts()]
                write_html(html, store, facts, explain=heat, explain_count=explain, threshold=cut)
        return finish(interrupted=False)


def _write(report: Report, scanned: ScannedFile, summary: Summary) -> None:
    for record in scanned.records:
        report.write(record)
    summary.add(scanned.verdict, scanned.faces, scanned.origin)
    if scanned.verdict.error:
        log.info("%s: %s", scanned.path, scanned.verdict.error)


def _refuse_clashing_outputs(outputs: dict[str, Path | None], images: list[str]) -> None:
    """No output may be a file being scanned, a folder holding one, or another output: one would overwrite the other.

    ``outputs`` maps each option to its path (files, and the folders --html and --save-crops write into).
    Devices, pipes and stdout are written through and never replaced, so they may repeat.
    """
    named = {
        option: path
        for option, path in outputs.items()
        if path is not None and not is_stdout(path) and not is_special(resolved(path))
    }
    real = {option: os.path.realpath(path) for option, path in named.items()}
    claimed: dict[str, str] = {}
    for option, where in real.items():
        if where in claimed:
            raise OutputError(f"{option} {named[option]} is also {claimed[where]}'s path: give each output its own")
        claimed[where] = option
    identities = {}
    for option, path in named.items():
        with contextlib.suppress(OSError):
            found = os.stat(path)
            identities[(found.st_dev, found.st_ino)] = option
    folders = [(real[option] + os.sep, option) for option in named if option in ("--save-crops", "--html's folder")]
    if not identities and not folders:
        return  # no existing output file and no output folder: nothing a scanned file could be
    for image in images:
        with contextlib.suppress(OSError, ValueError):
            found = os.stat(image)
            option = identities.get((found.st_dev, found.st_ino))
            if option is not None:
                raise OutputError(f"{option} {named[option]} is one of the files being scanned: choose another path")
        where = os.path.realpath(image) if folders else ""
        for folder, option in folders:
            if where.startswith(folder):
                raise OutputError(
                    f"{option} {named[option]} holds a file being scanned ({image}): choose another folder"
                )


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


def _write_summary(destination: Path, text: str) -> None:
    if is_stdout(destination):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(destination, text)


def _exit_code(summary: Summary, fail_on_fake: bool, max_fake: int | None, max_fraction: float | None) -> ExitCode:
    """4 when a fake budget is exceeded, else 3 when files could not be scored, else 0."""
    fraction = summary.fake / summary.scored if summary.scored else 0.0
    if (
        (fail_on_fake and summary.fake > 0)
        or (max_fake is not None and summary.fake > max_fake)
        or (max_fraction is not None and fraction > max_fraction)
    ):
        return ExitCode.FAKE_FOUND
    return ExitCode.UNREADABLE if summary.errors else ExitCode.OK
