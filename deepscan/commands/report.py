"""deepscan report: an HTML report from a report deepscan wrote earlier and the images it names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepscan.commands.options import FaceMarginOption, ModelOption, TrustModelOption
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
) -> None:
    """Build an HTML report from REPORT: files most suspicious first, thumbnails, evidence, heat maps.

    Heat maps come from --model (default: the packaged models, the face model for face rows).

    Example: deepscan report results.jsonl --html report.html --explain 20
    """
    from deepscan.explain import explainer
    from deepscan.faces import FaceSettings
    from deepscan.html_report import EntryStore, entries_from_report, write_html
    from deepscan.job import ScanSettings, scan_models

    check_destination(html)
    with EntryStore() as store:
        for entry in entries_from_report(results):
            store.add(entry)
        facts = [
            ("this page", str(html.absolute())),
            ("from report", str(results)),
            ("files", str(store.count)),
            *((name, str(store.labels[name])) for name in ("real", "fake", "error")),
            *(("model", name) for name in sorted(store.models - {""})),
        ]
        heat = None
        if explain:
            faces = FaceSettings(margin=face_margin) if store.faces else None
            settings = ScanSettings(model=model, trust_model=trust_model, faces=faces, evidence=False)
            heat = explainer(scan_models(settings))
        write_html(html, store, facts, explain=heat, explain_count=explain)
    typer.echo(f"wrote {html} ({store.count} files)", err=True)
