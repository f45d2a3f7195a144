"""deepscan inspect: what a file's own metadata says about its origin, as exiftool or c2patool would show it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from deepscan.commands.evaluate import CardFormat
from deepscan.errors import ExitCode
from deepscan.evidence import Evidence, read_evidence
from deepscan.files import describe_read_error


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
        console = Console()
        for result in results:
            _render(result, console)
    return ExitCode.UNREADABLE if any(result["error"] for result in results) else ExitCode.OK


def _inspect(path: Path) -> dict[str, Any]:
    try:
        found = read_evidence(str(path))
    except OSError as err:
        return {"path": str(path), "error": describe_read_error(err, path), "declares_ai": False, "evidence": []}
    return {
        "path": str(path),
        "error": "",
        "declares_ai": any(item.declares_ai for item in found),
        "evidence": [item.to_dict() for item in found],
    }


def _render(result: dict[str, Any], console: Console) -> None:
    if result["error"]:
        console.print(f"{result['path']}: {result['error']}", markup=False, style="red")
        return
    verdict = "declares AI generation" if result["declares_ai"] else "no declaration of AI generation"
    table = Table(title=f"{result['path']}: {verdict}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    if not result["evidence"]:
        table.add_row("metadata", "nothing about its origin (absence proves nothing: most platforms strip it)")
    for item in map(lambda values: Evidence(**values), result["evidence"]):
        table.add_row(item.text, "made by generative AI" if item.declares_ai else "")
        for name, value in item.facts.items():
            table.add_row(f"  {name}", value)
    console.print(table)
