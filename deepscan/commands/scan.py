"""deepscan scan: score every image under the given paths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from deepscan.discovery import find_images
from deepscan.errors import ExitCode
from deepscan.report import (
    OutputFormat,
    Summary,
    check_destination,
    choose_format,
    open_report,
)
from deepscan.scan import DEFAULT_BATCH_SIZE

INPUT, MODEL, OUTPUT, PERFORMANCE = "Input", "Model", "Output", "Performance"


def scan_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            metavar="PATH...",
            help="Image files and folders to scan (folders recursively).",
            show_default=False,
        ),
    ],
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
            help="A model file written by 'deepscan train' (default: the packaged model).",
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
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="Walk folders recursively.", rich_help_panel=INPUT)
    ] = True,
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
    from deepscan.model import load_model
    from deepscan.scan import resolve_threshold, scan_batches

    console = Console(stderr=True)
    fmt = choose_format(out, output_format)
    check_destination(out)
    images = list(find_images(paths, recursive=recursive))
    detector = load_model(model, trust=trust_model)
    summary = Summary(
        found=len(images),
        threshold=resolve_threshold(threshold, detector),
        model=detector.path.name,
    )
    with open_report(out, fmt) as report:
        show_progress = not quiet and console.is_terminal
        progress = Progress(
            TextColumn("scanning"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not show_progress,
        )
        try:
            with progress:
                task = progress.add_task("scan", total=len(images))
                for rows in scan_batches(images, detector, threshold=threshold, batch_size=batch_size):
                    for row in rows:
                        report.write(row)
                        summary.add(row)
                    report.flush()
                    progress.advance(task, len(rows))
        except KeyboardInterrupt:
            if not quiet:
                summary.render(console, interrupted=True)
            raise
    if not quiet:
        summary.render(console)
    return ExitCode.UNREADABLE if summary.errors else ExitCode.OK
