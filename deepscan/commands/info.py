"""deepscan info: what a model file is, how it was made, and where it would run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deepscan.model import packaged_model, read_spec


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
    """Show a model's input contract, training recipe and the device it would run on.

    The device line loads TensorFlow (a few seconds); --json prints the spec alone, at once.

    Example: deepscan info runs/m.keras
    """
    path = model or packaged_model(faces)
    spec = read_spec(path)
    if as_json:
        typer.echo(spec.to_json())
        return
    from deepscan.runtime import device_name

    table = Table(title=str(path), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("architecture", spec.arch)
    pixels = f"{spec.image_size}x{spec.image_size} RGB, raw 0..255 pixels"
    table.add_row("input", f"{pixels}, one image per view, side by side" if spec.views else pixels)
    if spec.views:
        margins = ", ".join(f"{margin:g}" for margin in spec.views)
        table.add_row("views", f"each face cropped at margins {margins} of its size; the score is their mean logit")
    elif spec.face_margin is not None:
        table.add_row("face crops", f"margin {spec.face_margin:g} of the face size, inside the picture (scan --faces)")
    table.add_row("score", f"probability of '{spec.classes[1]}'")
    table.add_row("threshold", f"{spec.threshold:.4f}")
    table.add_row("trained on", spec.trained_on)
    table.add_row("deepscan version", spec.deepscan_version)
    table.add_row("device", device_name())
    for key, value in sorted(spec.training.items()):
        if key != "trained_on":
            table.add_row(f"training: {key.replace('_', ' ')}", _plain(value))
    Console().print(table)


def _plain(value: Any) -> str:
    """A stored value for people: settings as name=value, nested ones in brackets, figures to 4 places."""
    if isinstance(value, dict):
        return ", ".join(
            f"{key}=({_plain(item)})" if isinstance(item, dict) else f"{key}={_plain(item)}"
            for key, item in sorted(value.items())
        )
    if isinstance(value, list):
        return "; ".join(f"({_plain(item)})" if isinstance(item, dict) else _plain(item) for item in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "none" if value is None else str(value)
