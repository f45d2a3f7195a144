"""deepscan report: an HTML report from a report deepscan wrote earlier and the images it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from deepscan.commands.options import FaceMarginOption, ModelOption, TrustModelOption
from deepscan.errors import OutputError
from deepscan.report import check_destination


def report_command(
    results: Annotated[
        Path,
        typer.Argument(
            metavar="REPORT", exists=True, dir_okay=False, help="A CSV, JSON or JSON Lines report from 'deepscan scan'."
        ),
    ],
    html: Annotated[Path, typer.Option(help="The HTML report to write (thumbnails in a folder beside it).")],
    explain: Annotated[int, typer.Option(min=0, help="Grad-CAM heat maps of the N most suspicious files.")] = 0,
    model: ModelOption = None,
    trust_model: TrustModelOption = False,
    face_margin: FaceMarginOption = None,
    summary: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The scan's --summary-json: the page then says when, by which version and of which paths the "
            "report was made, and with which models and thresholds.",
        ),
    ] = None,
) -> None:
    """Build an HTML report from REPORT: files most suspicious first, thumbnails, evidence, heat maps.

    Heat maps come from --model (default: the packaged models, the face model for face rows).

    Example: deepscan report results.jsonl --html report.html --explain 20
    """
    from deepscan.explain import explainer
    from deepscan.faces import FaceSettings
    from deepscan.html_report import EntryStore, entries_from_report, write_html
    from deepscan.job import ScanSettings, scan_models
    from deepscan.model import packaged_model

    check_destination(html)
    with EntryStore() as store:
        for entry in entries_from_report(results):
            store.add(entry)
        files = [model] if model is not None else [packaged_model(faces=True), packaged_model()]
        facts = [
            ("this page", str(html.absolute())),
            ("from report", str(results)),
            *(_scan_facts(summary) if summary is not None else []),
            ("files", str(store.count)),
            *((name, str(store.labels[name])) for name in ("real", "fake", "error")),
            *_model_facts(store.models - {""}, files, summary is not None),
        ]
        heat = None
        if explain:
            faces = FaceSettings(margin=face_margin) if store.faces else None
            heat = explainer(
                scan_models(ScanSettings(model=model, trust_model=trust_model, faces=faces, evidence=False))
            )
        write_html(html, store, facts, explain=heat, explain_count=explain)
    typer.echo(f"wrote {html} ({store.count} files)", err=True)


def _scan_facts(summary: Path) -> list[tuple[str, str]]:
    """What the scan's --summary-json says of how the report was made."""
    try:
        figures = json.loads(summary.read_text(encoding="utf-8"))
        made = f"{figures['created']} by deepscan {figures['deepscan_version']}"
        facts = [("made", made), ("scanned", ", ".join(map(str, figures["inputs"])))]
        for model in figures["models"]:
            name = model["model"].split("@")[0]
            facts.append(("model", f"{name} ({model['role']}), threshold {float(model['threshold']):.3f}"))
            facts.append(("trained on", str(model["trained_on"])))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OutputError(f"cannot read {summary}: not a deepscan --summary-json ({err})") from None
    return facts


def _model_facts(named: set[str], files: list[Path], summarised: bool) -> list[tuple[str, str]]:
    """What the page can say of the models that scored the report: those its model column names, with their
    threshold and training when --model (or a packaged model) is that very file."""
    if not named:
        if summarised:
            return []  # the summary named them
        return [("model", "not recorded in the report (give --summary, or scan with --columns model)")]
    from deepscan.scorers import ScanModel

    known = {model.identity: model for model in (ScanModel(path, "report") for path in files)}
    facts = []
    for identity in sorted(named):
        model = known.get(identity)
        if model is None:
            facts.append(("model", f"{identity} (give it as --model to show its threshold)"))
        else:
            facts += [("model", f"{identity}, threshold {model.threshold:.3f}"), ("trained on", model.spec.trained_on)]
    return facts
