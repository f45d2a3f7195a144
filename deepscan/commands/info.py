"""deepscan info: what a model file is and how it was made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deepscan.model import default_model_path, read_spec


def info_command(
    model: Annotated[
        Path | None,
        typer.Argument(
            metavar="MODEL",
            exists=True,
            dir_okay=False,
            help="Model file (default: the packaged model).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the stored spec as JSON on stdout.")] = False,
    faces: Annotated[
        bool, typer.Option("--faces", help="Without MODEL: the packaged face-crop model that --faces uses.")
    ] = False,
) -> None:
    """Show a model's input contract and training recipe, without loading TensorFlow.

    Example: deepscan info runs/m.keras
    """
    path = model or default_model_path(faces)
    spec = read_spec(path)
    if as_json:
        typer.echo(spec.to_json())
        return
    table = Table(title=str(path), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("architecture", spec.arch)
    table.add_row("input", f"{spec.image_size}x{spec.image_size} RGB, raw 0..255 pixels")
    table.add_row("score", f"probability of '{spec.classes[1]}'")
    table.add_row("threshold", f"{spec.threshold:.4f}")
    table.add_row("deepscan version", spec.deepscan_version)
    for key, value in sorted(spec.training.items()):
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    Console().print(table)
