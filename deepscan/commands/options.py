"""What the commands share: options declared once (defaults from the library), and the console for people."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from deepscan.faces import FaceSettings

if TYPE_CHECKING:
    from deepscan.evaluate import Evaluation

MODEL, FACES, PERFORMANCE, DATA = "Model", "Faces (pip install 'deepscan-audit\\[faces]')", "Performance", "Data"
FACE_DEFAULTS = FaceSettings()

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--model",
        "-m",
        exists=True,
        dir_okay=False,
        help="Model file from 'deepscan train' (default: the packaged model; with --faces, the face-crop model).",
        rich_help_panel=MODEL,
    ),
]
ThresholdOption = Annotated[
    float | None,
    typer.Option(
        min=0.0, max=1.0, help="Score at or above which a file is fake (default: the model's).", rich_help_panel=MODEL
    ),
]
TrustModelOption = Annotated[
    bool,
    typer.Option("--trust-model", help="Allow a model file holding Python code (no safe mode).", rich_help_panel=MODEL),
]
BatchSizeOption = Annotated[int, typer.Option(min=1, help="Images scored per model call.", rich_help_panel=PERFORMANCE)]
FacesOption = Annotated[
    bool,
    typer.Option(
        "--faces",
        help="Find faces (MTCNN) and score each one; a file without a face is scored whole.",
        rich_help_panel=FACES,
    ),
]
MinFaceSizeOption = Annotated[
    int, typer.Option(min=20, help="Ignore faces smaller than this (pixels).", rich_help_panel=FACES)
]
MaxFacesOption = Annotated[
    int, typer.Option(min=1, help="Score at most this many faces per image.", rich_help_panel=FACES)
]
FaceMarginOption = Annotated[
    float | None,
    typer.Option(
        min=0.0,
        help="Margin around each face, as a fraction of its size (default: the one the face model was trained with; "
        "of a views model, this sets its first view's).",
        rich_help_panel=FACES,
    ),
]


def _regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as err:
        raise typer.BadParameter(f"not a regular expression: {err}") from None
    return pattern


GroupPatternOption = Annotated[
    str,
    typer.Option(
        metavar="REGEX",
        callback=_regex,
        help="Files whose names share this pattern's match (its first group) are one group, such as the frames "
        "of one video: validation splits and confidence intervals take whole groups ('': each file alone).",
        rich_help_panel=DATA,
    ),
]


def data_dirs_argument(help: str) -> typer.models.ArgumentInfo:
    """The DATA_DIR... argument of the commands that read labelled folders."""
    return typer.Argument(metavar="DATA_DIR", exists=True, file_okay=False, help=help, show_default=False)


TargetFprOption = Annotated[
    list[float] | None,
    typer.Option(
        min=0.0,
        max=1.0,
        help="Pick the lowest threshold keeping false positives on each source's real validation images at or "
        "below this rate: once for every DATA_DIR, or once per DATA_DIR in their order (ordinary photos at 0.03, "
        "faces at 0.1, say). Default: the threshold that maximises balanced accuracy.",
        rich_help_panel=MODEL,
    ),
]
TrainedOnOption = Annotated[
    str,
    typer.Option(
        metavar="TEXT",
        help="What the model covers, in a few words, shown by 'scan' and 'info' (default: the training "
        "folders' names; for combine, those its models record).",
        rich_help_panel=MODEL,
    ),
]


def print_validation(console: Console, saved: str, card: Evaluation, sources: dict[str, Evaluation]) -> None:
    """A new model's validation figures for people: pooled, then each source's; a warning if it is no use."""
    console.print(
        f"{saved}: val ROC AUC {card.roc_auc:.3f}, balanced accuracy {card.balanced_accuracy:.3f} "
        f"at threshold {card.threshold:.3f}" + (" (pooled)" if len(sources) > 1 else ""),
        markup=False,
        soft_wrap=True,
    )
    if len(sources) > 1:
        for name, figures in sources.items():
            console.print(
                f"  {name}: ROC AUC {figures.roc_auc:.3f}, balanced accuracy {figures.balanced_accuracy:.3f}, "
                f"false-positive rate {figures.false_positive_rate:.3f}",
                markup=False,
                soft_wrap=True,
            )
    if not card.roc_auc > 0.5:
        console.print(
            f"warning: the model is no better than chance on the validation set (ROC AUC {card.roc_auc:.3f}); "
            "check the data layout (real/ and fake/) and train longer before using it",
            style="bold yellow",
            markup=False,
            soft_wrap=True,
        )


def face_settings(faces: bool, min_face_size: int, max_faces: int, margin: float | None) -> FaceSettings | None:
    """The face options as library settings (None: whole images)."""
    return FaceSettings(min_face_size, max_faces, margin) if faces else None


class StderrConsole(Console):
    """Messages for people on stderr; when nobody reads them any more (`2>&1 | head -1`), the command goes on.

    Rich's default answer to a broken pipe is to exit 1, which would lose
    the scan's own exit code and its --summary-json.
    """

    def __init__(self, **options: object) -> None:
        super().__init__(stderr=True, **options)  # type: ignore[arg-type]

    def on_broken_pipe(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())


def progress_bar(console: Console, quiet: bool = False) -> Progress:
    """The progress display of long commands: what is being done, a bar, counts, time left; on a terminal only."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )
