"""deepscan combine: several trained models as one face-mode model, each judging the face in its own framing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deepscan.commands.options import (
    MODEL,
    BatchSizeOption,
    TargetFprOption,
    TrainedOnOption,
    data_dirs_argument,
    print_validation,
)
from deepscan.errors import DeepscanError, OutputError
from deepscan.report import check_destination
from deepscan.scorers import DEFAULT_BATCH_SIZE


def combine_command(
    data_dirs: Annotated[
        list[Path],
        data_dirs_argument(
            "Validation folders holding real/ and fake/, scanned as 'scan --faces' scans them to calibrate "
            "the combination and choose its threshold; each is reported apart and pooled."
        ),
    ],
    views: Annotated[
        list[Path],
        typer.Option(
            "--view",
            exists=True,
            dir_okay=False,
            metavar="MODEL",
            help="A model from 'deepscan train' for one view, once per view in order; the first view's crop "
            "is the one heat maps show.",
            rich_help_panel=MODEL,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.keras).", rich_help_panel=MODEL)],
    margins: Annotated[
        list[float] | None,
        typer.Option(
            "--margin",
            min=0.0,
            max=10.0,
            metavar="MARGIN",
            help="The margin around the face of each view's crop, as a fraction of the face's size, once per "
            "--view in order (default: each model's own face margin).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    target_fpr: TargetFprOption = None,
    trained_on: TrainedOnOption = "",
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Combine models into one for 'scan --faces': each face is cropped once per view, the verdict is the mean logit.

    Each --view model scores the face in its own crop (--margin); the combination is calibrated on DATA_DIR
    and its threshold chosen there, as 'deepscan train' does, and both are stored in OUT.

    Example: deepscan combine val/ --view faces.keras --margin 0.1 --view default.keras --margin 0.2 --out views.keras
    """
    if out.suffix != ".keras":
        raise OutputError(f"--out must name a .keras file (deepscan's model format), not {out.name}")
    if len(views) < 2:
        raise DeepscanError("give at least two --view models to combine")
    if margins and len(margins) != len(views):
        raise DeepscanError(
            f"{len(views)} --view models but {len(margins)} --margin values: give one per view, or none"
        )
    check_destination(out)
    from deepscan.views import combine_views

    console = Console(stderr=True, highlight=False)
    result = combine_views(
        views,
        margins or [None] * len(views),
        data_dirs,
        out,
        tuple(target_fpr or ()),
        trained_on,
        batch_size,
        log=lambda line: console.print(line, markup=False, soft_wrap=True),
    )
    print_validation(console, f"saved {result.model_path}", result.evaluation, result.sources)
