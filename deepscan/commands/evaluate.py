"""deepscan evaluate: the report card of a model on a labelled folder."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deepscan.evaluate import Evaluation
from deepscan.model import CLASS_NAMES


class CardFormat(str, Enum):
    table = "table"
    json = "json"


def evaluate_command(
    data_dir: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="Folder holding real/ and fake/.", show_default=False),
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", exists=True, dir_okay=False, help="Model file (default: the packaged model)."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, max=1.0, help="Decision threshold (default: the model's).")
    ] = None,
    output_format: Annotated[CardFormat, typer.Option("--format", "-f", help="Rich table, or JSON on stdout.")] = (
        CardFormat.table
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the figures as JSON to this file.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images scored per model call.")] = 64,
    trust_model: Annotated[
        bool, typer.Option("--trust-model", help="Allow a model file that contains Python code.")
    ] = False,
) -> None:
    """Score DATA_DIR/real and DATA_DIR/fake and report accuracy, ROC AUC and the confusion matrix.

    Example: deepscan evaluate ../shared/data/val --model m.keras
    """
    from deepscan.evaluate import evaluate
    from deepscan.model import load_model
    from deepscan.report import check_destination

    check_destination(out)
    detector = load_model(model, trust=trust_model)
    card = evaluate(str(data_dir), detector, threshold=threshold, batch_size=batch_size)
    figures = {"model": str(detector.path), "data": str(data_dir), **card.to_dict()}
    if out is not None:
        from deepscan.report import write_atomically

        write_atomically(out, json.dumps(figures, indent=2) + "\n")
    if output_format is CardFormat.json:
        typer.echo(json.dumps(figures, indent=2))
    else:
        render_card(card, Console(), title=f"{detector.path.name} on {data_dir}")


def render_card(card: Evaluation, console: Console, title: str) -> None:
    """The report card as Rich tables."""
    summary = Table(title=title, show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for name, value in (
        ("images", str(card.images)),
        ("unreadable", str(card.unreadable)),
        ("threshold", f"{card.threshold:.4f}"),
        ("ROC AUC", f"{card.roc_auc:.4f}"),
        ("accuracy", f"{card.accuracy:.4f}"),
        ("balanced accuracy", f"{card.balanced_accuracy:.4f}"),
        ("false-positive rate (real flagged)", f"{card.false_positive_rate:.4f}"),
        ("images/s", f"{card.images_per_second:.1f}"),
    ):
        summary.add_row(name, value)
    console.print(summary)
    classes = Table(title="per class (rows: true class)", title_justify="left")
    for column in ("class", "precision", "recall", "F1", "support", *(f"predicted {n}" for n in CLASS_NAMES)):
        classes.add_column(column, justify="right")
    for name in CLASS_NAMES:
        figures = card.per_class[name]
        classes.add_row(
            name,
            f"{figures['precision']:.4f}",
            f"{figures['recall']:.4f}",
            f"{figures['f1']:.4f}",
            str(figures["support"]),
            *(str(card.confusion[name][predicted]) for predicted in CLASS_NAMES),
        )
    console.print(classes)
