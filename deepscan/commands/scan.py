"""deepscan scan: score every image under the given paths."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deepscan.cache import ScoreCache
from deepscan.discovery import find_images, read_path_list
from deepscan.errors import INTERRUPTS, ExitCode, OutputClosed, OutputError
from deepscan.faces import FACE_COLUMNS, FaceFinder
from deepscan.job import ScanJob
from deepscan.model import packaged_models
from deepscan.provenance import PROVENANCE_COLUMNS, model_identity, provenance
from deepscan.report import (
    COLUMNS,
    OutputFormat,
    Summary,
    check_destination,
    choose_format,
    is_stdout,
    open_report,
    read_report,
    write_atomically,
)
from deepscan.scan import DEFAULT_BATCH_SIZE

INPUT, MODEL, OUTPUT, FACES = "Input", "Model", "Output", "Faces (pip install 'deepscan[faces]')"
GATE, PERFORMANCE = "Gating (exit code 4)", "Performance"
log = logging.getLogger("deepscan")


def _columns(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in PROVENANCE_COLUMNS]
    if unknown:
        raise typer.BadParameter(f"unknown column {unknown[0]!r}; choose from {', '.join(PROVENANCE_COLUMNS)}")
    return names


def scan_command(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATH",
            help="Image files and folders to scan (folders recursively); '-' reads paths from stdin.",
            show_default=False,
        ),
    ] = None,
    files_from: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="Read paths from this file, one per line.", rich_help_panel=INPUT
        ),
    ] = None,
    null: Annotated[
        bool,
        typer.Option("--null", "-0", help="Path lists are NUL-separated (find -print0).", rich_help_panel=INPUT),
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option(help="Only files whose name or path matches this glob (repeatable).", rich_help_panel=INPUT),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Skip files whose name or path matches this glob (repeatable).", rich_help_panel=INPUT),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="Walk folders recursively.", rich_help_panel=INPUT)
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Report file (.csv, .json, .jsonl); '-' or omitted: stdout.", rich_help_panel=OUTPUT
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Report format; default: from --out's extension, CSV on stdout.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(
            help=f"Extra columns, comma-separated: {', '.join(PROVENANCE_COLUMNS)}.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue an interrupted scan into --out: rows already there are kept.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    summary_json: Annotated[
        Path | None,
        typer.Option(
            help="Also write the summary (counts, threshold, model, timings) as JSON.", rich_help_panel=OUTPUT
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress bar and no summary: data and errors only.", rich_help_panel=OUTPUT
        ),
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            exists=True,
            dir_okay=False,
            help="A model file written by 'deepscan train' (default: the packaged model; with --faces, the packaged "
            "face-crop model).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Score at or above which a file is labelled fake (default: the model's).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    trust_model: Annotated[
        bool,
        typer.Option(
            "--trust-model",
            help="Allow a model file that contains Python code (Keras safe mode off).",
            rich_help_panel=MODEL,
        ),
    ] = False,
    fail_on_fake: Annotated[
        bool, typer.Option("--fail-on-fake", help="Exit 4 if any file is labelled fake.", rich_help_panel=GATE)
    ] = False,
    max_fake: Annotated[
        int | None, typer.Option(min=0, help="Exit 4 if more than N files are labelled fake.", rich_help_panel=GATE)
    ] = None,
    max_fake_fraction: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=1.0, help="Exit 4 if more than this fraction of scored files is fake.", rich_help_panel=GATE
        ),
    ] = None,
    faces: Annotated[
        bool,
        typer.Option(
            "--faces",
            help="Find faces (MTCNN) and score each face crop: one row per face, columns face, box, "
            "face_confidence; a file without a face is scored whole (face empty).",
            rich_help_panel=FACES,
        ),
    ] = False,
    min_face_size: Annotated[
        int, typer.Option(min=20, help="Ignore faces smaller than this (pixels).", rich_help_panel=FACES)
    ] = 40,
    max_faces: Annotated[
        int, typer.Option(min=1, help="Score at most this many faces per image.", rich_help_panel=FACES)
    ] = 10,
    face_margin: Annotated[
        float, typer.Option(min=0.0, help="Margin around each face, as a fraction of its size.", rich_help_panel=FACES)
    ] = 0.25,
    save_crops: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Write the scored crops here for review.", rich_help_panel=FACES),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="SQLite cache of scores by file content and model: re-scans score only new or changed files.",
            rich_help_panel=PERFORMANCE,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Images scored per model call.", rich_help_panel=PERFORMANCE)
    ] = DEFAULT_BATCH_SIZE,
) -> int:
    """Score every image under PATHS as real or fake and write one row per file.

    Rows have the columns path, label (real/fake; empty on error), score
    (probability of fake, 0..1; empty on error) and error (why a file could
    not be scored; empty otherwise).

    Example: deepscan scan ./photos --out results.csv
    """
    console = Console(stderr=True)
    fmt = choose_format(out, output_format)
    extra_columns = _columns(columns)
    if resume and is_stdout(out):
        raise typer.BadParameter("--resume needs --out FILE: the report it continues")
    if faces and (cache is not None or resume):
        raise typer.BadParameter("--faces cannot be combined with --cache or --resume (yet)", param_hint="--faces")
    for destination in (out, summary_json):
        check_destination(destination)
    inputs = _inputs(paths or [], files_from, null)
    images = list(find_images(inputs, recursive=recursive, include=include or (), exclude=exclude or ()))

    model_path, whole_model_path = (model, None) if model else packaged_models(faces)
    job = ScanJob(
        model_path,
        threshold=threshold,
        batch_size=batch_size,
        trust_model=trust_model,
        previous=read_report(out, fmt) if resume and out is not None and out.exists() else {},
        cache=_open_cache(cache, model_path),
        finder=FaceFinder(min_face_size, max_faces, face_margin) if faces else None,
        whole_model_path=whole_model_path,
        save_crops=save_crops,
    )
    model_name = model_path.name + (f" (no face: {whole_model_path.name})" if whole_model_path else "")
    summary = Summary(found=len(images), threshold=job.cut, model=model_name, faces=0 if faces else None)
    progress = Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )

    def finish(interrupted: bool) -> ExitCode:
        if job.cache is not None:
            job.cache.close()
            log.info("cache: %d hits, %d misses", job.cache.hits, job.cache.misses)
        if not quiet:
            summary.render(console, interrupted=interrupted)
        code = _exit_code(summary, fail_on_fake, max_fake, max_fake_fraction)
        if summary_json is not None:
            figures = {**summary.to_dict(), "model": model_identity(model_path), "interrupted": interrupted}
            if whole_model_path is not None:
                figures["whole_image_model"] = model_identity(whole_model_path)
            write_atomically(summary_json, json.dumps({**figures, "exit_code": int(code)}, indent=2) + "\n")
        return code

    columns_out = COLUMNS + (FACE_COLUMNS if faces else ()) + extra_columns
    try:
        with open_report(out, fmt, columns_out) as report, progress:
            task = progress.add_task("scan", total=len(images))
            for batch in job.run(images):
                for row, face_columns in batch.rows:
                    digest = job.cache.digest(row.path) if job.cache is not None else None
                    scorer = job.scored_by(row, face_columns)
                    report.write(row, {**face_columns, **provenance(row.path, extra_columns, scorer, digest)})
                for verdict in batch.verdicts:
                    summary.add(verdict.row, faces=verdict.faces)
                    if verdict.row.error:
                        log.info("%s: %s", verdict.row.path, verdict.row.error)
                report.flush()
                progress.advance(task, len(batch.verdicts))
    except INTERRUPTS:
        finish(interrupted=True)
        raise
    except BrokenPipeError:
        raise OutputClosed() from None
    return finish(interrupted=False)


def _inputs(paths: list[str], files_from: Path | None, null: bool) -> list[str]:
    """Command-line paths ('-' for stdin) and --files-from lists, in order; named paths must exist.

    An empty list is fine (nothing to scan, exit 0): `git diff ... | deepscan scan -` may list no file.
    """
    if not paths and files_from is None:
        raise typer.BadParameter("give at least one PATH, '-' for stdin, or --files-from", param_hint="PATH")
    inputs: list[str] = []
    for path in paths:
        if path == "-":
            inputs += read_path_list(sys.stdin, null=null)
        elif not Path(path).exists() and not Path(path).is_symlink():
            raise typer.BadParameter(f"path {path!r} does not exist", param_hint="PATH")
        else:
            inputs.append(path)
    if files_from is not None:
        with open(files_from, encoding="utf-8", errors="surrogateescape") as handle:
            inputs += read_path_list(handle, null=null)
    return inputs


def _open_cache(path: Path | None, model_path: Path) -> ScoreCache | None:
    if path is None:
        return None
    if path.is_dir():
        raise OutputError(f"cache path is a directory: {path}")
    return ScoreCache(path, model_identity(model_path))


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
