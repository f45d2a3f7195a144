"""What the commands share: options declared once (defaults from the library), and the console for people."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deepscan.faces import FaceSettings

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
        help="Margin around each face, as a fraction of its size (default: the one the face model was trained with).",
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
