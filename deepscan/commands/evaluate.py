"""deepscan evaluate: the report card of a model on a labelled folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deepscan.errors import DeepscanError
from deepscan.evaluate import Evaluation, RobustnessRow
from deepscan.model import CLASS_NAMES


class CardFormat(str, Enum):
    table = "table"
    json = "json"


def evaluate_command(
    data_dir: Annotated[
        Path,
        typer.Argument(
            metavar="DATA_DIR", exists=True, file_okay=False, help="Folder holding real/ and fake/.", show_default=False
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            exists=True,
            dir_okay=False,
            help="Model file (default: the packaged model; with --faces, the packaged face-crop model).",
        ),
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
    robust: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="Also score after JPEG re-compression (quality 95-30) and Gaussian blur (sigma 0-3).",
        ),
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Draw the ROC curve, score histograms (and robustness) to this PNG.")
    ] = None,
    faces: Annotated[
        bool,
        typer.Option(
            "--faces",
            help="Score as 'scan --faces' does: each file by its most suspicious face (needs deepscan[faces]).",
        ),
    ] = False,
    face_margin: Annotated[
        float, typer.Option(min=0.0, help="With --faces: margin around each face, as a fraction of its size.")
    ] = 0.25,
) -> None:
    """Score DATA_DIR/real and DATA_DIR/fake and report accuracy, ROC AUC and the confusion matrix.

    Example: deepscan evaluate ../shared/data/val --model m.keras --robustness --plot card.png
    """
    from deepscan.evaluate import labelled_images, plot_card, report_card, robustness, score_labelled
    from deepscan.model import load_model, packaged_models
    from deepscan.report import check_destination, write_atomically
    from deepscan.scan import resolve_threshold

    if faces and robust:
        raise DeepscanError("--robustness measures whole images; it does not combine with --faces")
    for destination in (out, plot):
        check_destination(destination)
    model_path, whole_path = (model, None) if model else packaged_models(faces)
    detector = load_model(model_path, trust=trust_model)
    whole = load_model(whole_path) if whole_path else None
    finder = None
    if faces:
        from deepscan.faces import FaceFinder

        finder = FaceFinder(margin=face_margin)
    paths, labels = labelled_images(str(data_dir))
    scored = score_labelled(paths, labels, detector, batch_size, faces=finder, whole=whole)
    card = report_card(scored, resolve_threshold(threshold, detector.spec))
    table = robustness(paths, labels, detector, threshold=threshold, batch_size=batch_size) if robust else []
    figures = {"model": str(detector.path), "data": str(data_dir), "faces": faces, **card.to_dict()}
    if robust:
        figures["robustness"] = [asdict(row) for row in table]
    if plot is not None:
        plot_card(plot, scored, card.threshold, table)
    if out is not None:
        write_atomically(out, json.dumps(figures, indent=2) + "\n")
    if output_format is CardFormat.json:
        typer.echo(json.dumps(figures, indent=2))
        return
    console = Console()
    mode = " (each file by its most suspicious face)" if faces else ""
    render_card(card, console, title=f"{detector.path.name} on {data_dir}{mode}")
    if table:
        render_robustness(table, console)


def render_robustness(table: list[RobustnessRow], console: Console) -> None:
    view = Table(title="robustness (same images, degraded after decoding)", title_justify="left")
    for column in ("perturbation", "level", "ROC AUC", "accuracy", "balanced accuracy"):
        view.add_column(column, justify="right")
    for row in table:
        level = f"quality {row.level:g}" if row.perturbation == "jpeg" else f"sigma {row.level:g}"
        view.add_row(
            row.perturbation, level, f"{row.roc_auc:.4f}", f"{row.accuracy:.4f}", f"{row.balanced_accuracy:.4f}"
        )
    console.print(view)


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
