import csv
import io
import json
from pathlib import Path

import pytest

from deepscan.errors import OutputError
from deepscan.report import OutputFormat, Summary, choose_format, open_report
from deepscan.scan import ScanRow

ROWS = [
    ScanRow("photos/a.jpg", 0.9, "fake"),
    ScanRow('odd, "name"\twith tab ü.png', 0.1234567, "real"),
    ScanRow("broken.jpg", error="not an image, or an unsupported format"),
]


def write(path: Path, fmt: OutputFormat, rows=ROWS) -> str:
    with open_report(path, fmt) as report:
        for row in rows:
            report.write(row)
    return path.read_text(encoding="utf-8")


def test_csv_round_trips_awkward_names_and_empty_fields(tmp_path: Path):
    text = write(tmp_path / "r.csv", OutputFormat.csv)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["path"] for r in rows] == [r.path for r in ROWS]
    assert rows[1]["score"] == "0.123457" and rows[1]["label"] == "real"
    assert rows[2]["score"] == "" and rows[2]["label"] == "" and rows[2]["error"].startswith("not an image")


def test_json_and_jsonl_parse_back(tmp_path: Path):
    as_json = json.loads(write(tmp_path / "r.json", OutputFormat.json))
    as_lines = [json.loads(line) for line in write(tmp_path / "r.jsonl", OutputFormat.jsonl).splitlines()]
    assert as_json == as_lines
    assert as_json[0] == {"path": "photos/a.jpg", "label": "fake", "score": 0.9, "error": ""}
    assert as_json[2]["score"] is None
    assert json.loads(write(tmp_path / "empty.json", OutputFormat.json, rows=[])) == []


def test_format_comes_from_the_option_then_the_extension(tmp_path: Path):
    assert choose_format(tmp_path / "x.JSONL", None) is OutputFormat.jsonl
    assert choose_format(tmp_path / "x.csv", OutputFormat.json) is OutputFormat.json
    assert choose_format(None, None) is OutputFormat.csv
    with pytest.raises(OutputError, match="extension"):
        choose_format(tmp_path / "x.txt", None)


def test_a_failed_run_leaves_the_previous_report_untouched(tmp_path: Path):
    path = tmp_path / "r.csv"
    path.write_text("the good old report\n")
    with pytest.raises(RuntimeError), open_report(path, OutputFormat.csv) as report:
        report.write(ROWS[0])
        raise RuntimeError("crash mid-scan")
    assert path.read_text() == "the good old report\n"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_an_interrupted_run_keeps_a_valid_partial_report(tmp_path: Path):
    path = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt), open_report(path, OutputFormat.json) as report:
        report.write(ROWS[0])
        raise KeyboardInterrupt
    assert json.loads(path.read_text()) == [{"path": "photos/a.jpg", "label": "fake", "score": 0.9, "error": ""}]


@pytest.mark.parametrize("where", ["missing/r.csv", "."])
def test_unwritable_destinations_are_refused_up_front(tmp_path: Path, where: str):
    with pytest.raises(OutputError), open_report(tmp_path / where, OutputFormat.csv):
        pass


def test_summary_counts_and_keeps_only_the_most_suspicious():
    summary = Summary(found=5, threshold=0.5, model="m", top=2)
    for row in [*ROWS, ScanRow("c.jpg", 0.95, "fake"), ScanRow("d.jpg", 0.2, "real")]:
        summary.add(row)
    assert (summary.scored, summary.fake, summary.real, summary.errors) == (4, 2, 2, 1)
    assert summary.most_suspicious() == [(0.95, "c.jpg"), (0.9, "photos/a.jpg")]
