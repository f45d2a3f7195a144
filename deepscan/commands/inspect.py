"""deepscan inspect: what a file's own metadata says about its origin, as exiftool or c2patool would show it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deepscan.commands.evaluate import CardFormat
from deepscan.errors import ExitCode
from deepscan.evidence import MAX_FILE_BYTES, Evidence, evidence_in
from deepscan.files import describe_read_error, open_regular
from deepscan.summary import plain


def inspect_command(
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Image files to inspect.", show_default=False)],
    output_format: Annotated[CardFormat, typer.Option("--format", "-f", help="Rich tables, or JSON on stdout.")] = (
        CardFormat.table
    ),
) -> int:
    """Show the C2PA Content Credentials, IPTC digital source type and generator metadata of FILES.

    Exit code 0, or 3 when a file could not be read. Example: deepscan inspect image.jpg --format json
    """
    results = [_inspect(path) for path in files]
    if output_format is CardFormat.json:
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    else:
        console, errors = Console(), Console(stderr=True)
        for result in results:
            _render(result, errors if result["error"] else console)
    return ExitCode.UNREADABLE if any(result["error"] for result in results) else ExitCode.OK


def _inspect(path: Path) -> dict[str, Any]:
    try:
        with open_regular(str(path)) as handle:
            data = handle.read(MAX_FILE_BYTES)
    except OSError as err:
        return _failed(path, describe_read_error(err, path))
    if not _is_image(data):
        return _failed(path, "not an image, or an unsupported format")
    found = evidence_in(data)
    return {
        "path": str(path),
        "error": "",
        "declares_ai": any(item.declares_ai for item in found),
        "evidence": [item.to_dict() for item in found],
    }


def _failed(path: Path, error: str) -> dict[str, Any]:
    return {"path": str(path), "error": error, "declares_ai": False, "evidence": []}


def _is_image(data: bytes) -> bool:
    """Whether Pillow recognises the bytes as an image (its header alone: nothing is decoded)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def _render(result: dict[str, Any], console: Console) -> None:
    if result["error"]:
        console.print(plain(f"{result['path']}: {result['error']}"), style="red", soft_wrap=True)
        return
    verdict = "declares AI generation" if result["declares_ai"] else "no declaration of AI generation"
    table = Table(title=plain(f"{result['path']}: {verdict}"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    if not result["evidence"]:
        table.add_row("metadata", "nothing about its origin (absence proves nothing: most platforms strip it)")
    for item in map(lambda values: Evidence(**values), result["evidence"]):
        table.add_row(plain(item.text), "made by generative AI" if item.declares_ai else "")
        for name, value in item.facts.items():
            table.add_row(plain(f"  {name}"), plain(value))
    console.print(table)
