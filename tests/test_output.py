"""The owner of a scan's output: the library writes exactly the files the command writes, resumes as it does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import deepscan
from deepscan.errors import ExitCode, OutputError
from deepscan.job import ScanSettings
from deepscan.output import OutputSettings, scan_to_report

from .conftest import write_image

VARYING = ("created", "elapsed_seconds", "images_per_second", "report")  # a run's own time and destination


def test_the_library_and_the_command_write_the_same_files(cli, photos: Path, tiny_model: Path, tmp_path: Path):
    made = {}
    for who in ("cli", "library"):
        folder = tmp_path / who
        folder.mkdir()
        out, summary, page = folder / "r.jsonl", folder / "s.json", folder / "p.html"
        if who == "cli":
            code, _, _ = cli(
                "scan", photos, "--model", tiny_model, "-q", "-o", out, "--summary-json", summary, "--html", page
            )
        else:
            result = deepscan.scan_to_report(
                [photos], OutputSettings(out=out, summary_json=summary, html=page), ScanSettings(model=tiny_model)
            )
            code = result.exit_code
        figures = json.loads(summary.read_text())
        made[who] = (code, out.read_text(), {k: v for k, v in figures.items() if k not in VARYING})
        assert page.exists() and (folder / "p_files").is_dir()
    assert made["cli"] == made["library"]
    assert made["cli"][0] == ExitCode.UNREADABLE  # the photos fixture holds a broken file


def test_the_library_resumes_a_report_keeping_its_rows(tmp_path: Path, tiny_model: Path):
    folder = tmp_path / "images"
    for index in range(6):
        write_image(folder / f"{index}.png", index)
    report = tmp_path / "r.csv"
    settings = ScanSettings(model=tiny_model)
    first = scan_to_report([folder / "0.png", folder / "1.png"], OutputSettings(out=str(report)), settings)
    assert first.summary.scored == 2
    resumed = scan_to_report([folder], OutputSettings(out=report, resume=True), settings)
    assert resumed.summary.known["resumed"] == 2 and resumed.summary.done == 6
    whole = scan_to_report([folder], OutputSettings(out=tmp_path / "whole.csv"), settings)
    assert report.read_text() == (tmp_path / "whole.csv").read_text()
    assert whole.exit_code == ExitCode.OK


def test_the_library_refuses_what_the_command_refuses(tmp_path: Path, tiny_model: Path):
    with pytest.raises(OutputError, match="--resume needs --out"):
        scan_to_report([tmp_path], OutputSettings(resume=True), ScanSettings(model=tiny_model))
    image = write_image(tmp_path / "a.png", 1)
    with pytest.raises(OutputError, match="one of the files being scanned"):
        scan_to_report(
            [image], OutputSettings(out=tmp_path / "r.csv", summary_json=image), ScanSettings(model=tiny_model)
        )
