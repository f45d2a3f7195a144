"""deepscan evaluate: the report card of a model on a labelled folder."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from deepscan.commands.options import (
    FACE_DEFAULTS,
    BatchSizeOption,
    FaceMarginOption,
    FacesOption,
    GroupPatternOption,
    MaxFacesOption,
    MinFaceSizeOption,
    ModelOption,
    ThresholdOption,
    TrustModelOption,
    data_dirs_argument,
    face_settings,
)
from deepscan.errors import DeepscanError
from deepscan.evaluate import GROUP_PATTERN, Evaluation, RobustnessRow
from deepscan.model import CLASS_NAMES
from deepscan.scorers import DEFAULT_BATCH_SIZE


class CardFormat(str, Enum):
    table = "table"
    json = "json"


def evaluate_command(
    data_dirs: Annotated[
        list[Path],
        data_dirs_argument(
            "Folders holding real/, fake/ or both (one class: the share flagged); with several, each is "
            "reported apart and pooled."
        ),
    ],
    model: ModelOption = None,
    threshold: ThresholdOption = None,
    trust_model: TrustModelOption = False,
    output_format: Annotated[CardFormat, typer.Option("--format", "-f", help="Rich table, or JSON on stdout.")] = (
        CardFormat.table
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the figures as JSON to this file.")
    ] = None,
    errors: Annotated[
        int, typer.Option("--errors", min=0, help="List the N files labelled wrongly, most confidently wrong first.")
    ] = 0,
    robust: Annotated[
        bool,
        typer.Option("--robustness", help="Also score after JPEG re-compression (quality 95-30) and blur (sigma 0-3)."),
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Draw the ROC curve, score histograms (and robustness) to this PNG.")
    ] = None,
    faces: FacesOption = False,
    min_face_size: MinFaceSizeOption = FACE_DEFAULTS.min_face_size,
    max_faces: MaxFacesOption = FACE_DEFAULTS.max_faces,
    face_margin: FaceMarginOption = None,
    group_pattern: GroupPatternOption = GROUP_PATTERN,
    batch_size: BatchSizeOption = DEFAULT_BATCH_SIZE,
) -> None:
    """Score DATA_DIR/real and DATA_DIR/fake as 'deepscan scan' does; report accuracy, ROC AUC, confusion matrix.

    ROC AUC and balanced accuracy come with 95% bootstrap intervals, resampling whole groups (--group-pattern);
    the shares flagged with Wilson intervals over the groups. A folder of one class (real photos from a new
    source, say) reports the share of it flagged.
    With --faces, each file is scored by its most suspicious face, as 'scan --faces' counts it.

    Example: deepscan evaluate ../shared/data/val --model m.keras --robustness --plot card.png
    """
    from deepscan.evaluate import (
        labelled_images,
        misclassified,
        plot_card,
        report_card,
        robustness,
        score_labelled,
        subset,
    )
    from deepscan.job import ScanJob, ScanSettings
    from deepscan.report import check_destination, write_atomically

    if faces and robust:
        raise DeepscanError("--robustness measures whole images; it does not combine with --faces")
    if plot is not None and importlib.util.find_spec("matplotlib") is None:  # before any scoring, not after
        raise DeepscanError("--plot needs matplotlib: pip install 'deepscan-audit[plot]'")
    for destination in (out, plot):
        check_destination(destination)
    settings = ScanSettings(
        model=model,
        threshold=threshold,
        batch_size=batch_size,
        trust_model=trust_model,
        faces=face_settings(faces, min_face_size, max_faces, face_margin),
        evidence=False,  # evaluate measures the model: metadata would label files without it
    )
    sources = {str(folder): labelled_images(str(folder)) for folder in data_dirs}
    paths = [path for found, _ in sources.values() for path in found]
    labels = [label for _, found in sources.values() for label in found]
    with ScanJob(settings) as job:
        primary = job.models[0]
        scored = score_labelled(paths, labels, job)
        table = robustness(paths, labels, primary, batch_size) if robust else []  # the model loaded once
    card = report_card(scored, primary.threshold, group_pattern)
    wrong = misclassified(scored, primary.threshold, errors)
    data = ", ".join(sources)
    figures = {"model": str(primary.path), "data": data, "faces": faces, **card.to_dict()}
    per_source = {
        name: report_card(subset(scored, set(found)), primary.threshold, group_pattern)
        for name, (found, _) in sources.items()
    }
    figures["sources"] = {name: source_card.to_dict() for name, source_card in per_source.items()}
    if robust:
        figures["robustness"] = [asdict(row) for row in table]
    if errors:
        figures["misclassified"] = [{"path": path, "class": truth, "score": score} for path, truth, score in wrong]
    if plot is not None:
        plot_card(plot, scored, card.threshold, table)
    if out is not None:
        write_atomically(out, json.dumps(figures, indent=2) + "\n")
    if output_format is CardFormat.json:
        typer.echo(json.dumps(figures, indent=2))
        return
    console = Console()
    mode = " (each file by its most suspicious face)" if faces else ""
    render_card(card, console, title=f"{primary.path.name} on {data}{mode}" + (" (pooled)" if len(sources) > 1 else ""))
    if len(sources) > 1:
        render_sources(per_source, console)
    if table:
        render_robustness(table, console)
    if errors:
        render_misclassified(wrong, console)


def render_sources(cards: dict[str, Evaluation], console: Console) -> None:
    """One line per source, so a regression on one cannot hide in the pooled figures (accuracy: in the JSON).

    A folder of one class shows what matters there: how many of its reals, or of its fakes, were flagged.
    """
    view = Table(title="per source (95% CI below each figure)", title_justify="left")
    view.add_column("source", overflow="fold")
    for column in ("images", "groups", "ROC AUC", "balanced\naccuracy", "real flagged", "fakes flagged", "ECE"):
        view.add_column(column, justify="right", no_wrap=True)
    for name, card in cards.items():
        view.add_row(
            name,
            str(card.images),
            str(card.intervals.get("groups", "")),
            with_interval(card, "roc_auc", "\n"),
            with_interval(card, "balanced_accuracy", "\n"),
            flagged_share(card, "real", "false_positive_rate"),
            flagged_share(card, "fake", "true_positive_rate"),
            f"{card.calibration_error:.4f}",
        )
    console.print(view)


def flagged_share(card: Evaluation, truth: str, rate: str) -> str:
    """How many images of one class were labelled fake: '6/250 2.4%' and its interval below; '-' if none."""
    total = card.per_class[truth]["support"]
    if not total:
        return "-"
    share = f"{card.confusion[truth]['fake']}/{total} {getattr(card, rate):.1%}"
    interval = _interval(card, rate, ".1%")
    return f"{share}\n{interval}" if interval else share


def render_misclassified(wrong: list[tuple[str, str, float]], console: Console) -> None:
    view = Table(title="labelled wrongly (most confident first)", title_justify="left")
    view.add_column("true class")
    view.add_column("score", justify="right")
    view.add_column("path", overflow="fold")
    for path, truth, score in wrong:
        view.add_row(truth, f"{score:.3f}", path)
    console.print(view)


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


def with_interval(card: Evaluation, metric: str, gap: str = " ") -> str:
    """A figure with its bootstrap interval, if it has one: '0.8833 (0.846-0.918)'; '-' where it has no meaning."""
    figure = getattr(card, metric)
    if math.isnan(figure):
        return "-"
    interval = _interval(card, metric, ".3f")
    return f"{figure:.4f}{gap}{interval}" if interval else f"{figure:.4f}"


def _interval(card: Evaluation, metric: str, spec: str) -> str:
    """'(low-high)' of a figure's 95% interval in format ``spec``; '' without one."""
    if metric not in card.intervals:
        return ""
    low, high = card.intervals[metric]
    return f"({low:{spec}}-{high:{spec}})"


def render_card(card: Evaluation, console: Console, title: str) -> None:
    """The report card as Rich tables."""
    caption = None
    if card.intervals:
        caption = (
            f"CI: {card.intervals['resamples']:,} bootstrap resamples of {card.intervals['groups']:,} groups "
            "(files sharing a --group-pattern match count as one)"
        )
    summary = Table(title=title, show_header=False, title_justify="left", caption=caption, caption_justify="left")
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for name, value in (
        ("images", str(card.images)),
        ("unreadable", str(card.unreadable)),
        ("threshold", f"{card.threshold:.4f}"),
        ("ROC AUC (95% CI)", with_interval(card, "roc_auc")),
        ("accuracy", f"{card.accuracy:.4f}"),
        ("balanced accuracy (95% CI)", with_interval(card, "balanced_accuracy")),
        ("real flagged (false-positive rate)", flagged_share(card, "real", "false_positive_rate").replace("\n", " ")),
        ("fakes flagged (true-positive rate)", flagged_share(card, "fake", "true_positive_rate").replace("\n", " ")),
        ("calibration error (ECE, 10 bins)", f"{card.calibration_error:.4f}"),
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
