import csv
import io
import json
from pathlib import Path

import pytest

from deepscan.errors import OutputError
from deepscan.record import Record
from deepscan.report import OutputFormat, choose_format, open_report, read_report, report_columns
from deepscan.scorers import ScanModel
from deepscan.summary import Summary

ROWS = [
    Record("photos/a.jpg", 0.9, "fake"),
    Record('odd, "name"\twith tab ü.png', 0.1234567, "real"),
    Record("broken.jpg", error="not an image, or an unsupported format"),
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
    assert choose_format(tmp_path / "x.data", OutputFormat.json) is OutputFormat.json
    assert choose_format(None, OutputFormat.jsonl) is OutputFormat.jsonl
    assert choose_format(None, None) is OutputFormat.csv
    with pytest.raises(OutputError, match="extension"):
        choose_format(tmp_path / "x.txt", None)


def test_a_format_that_contradicts_the_extension_is_refused(tmp_path: Path):
    with pytest.raises(OutputError, match="contradicts"):
        choose_format(tmp_path / "r.csv", OutputFormat.json)


def test_small_scores_print_the_same_in_csv_and_json(tmp_path: Path):
    rows = [Record("tiny.png", 0.00002, "real")]
    assert "0.000020" in write(tmp_path / "r.csv", OutputFormat.csv, rows)
    for fmt in (OutputFormat.json, OutputFormat.jsonl):
        text = write(tmp_path / f"r.{fmt.value}", fmt, rows)
        assert '"score": 0.000020' in text and "e-05" not in text


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_face_rows_read_back_as_written(tmp_path: Path, fmt: OutputFormat):
    rows = [
        Record("a.jpg", 0.25, "real", model="m@sha256:1", face=0, box=(1, 2, 30, 40), face_confidence=0.99),
        Record("a.jpg", 0.75, "fake", model="m@sha256:1", face=1, box=(50, 2, 30, 40), face_confidence=0.9),
        Record("b.jpg", error="empty file", model="m@sha256:1"),
    ]
    path = tmp_path / f"r.{fmt.value}"
    with open_report(path, fmt, report_columns(True, ["model"])) as report:
        for row in rows:
            report.write(row)
    back = read_report(path)
    assert back == {"a.jpg": rows[:2], "b.jpg": [Record("b.jpg", error="empty file", model="m@sha256:1")]}


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


def test_summary_counts_and_keeps_only_the_most_suspicious(tiny_model: Path):
    summary = Summary(found=5, models=[ScanModel(tiny_model, "whole images")], top=2)
    for row in [*ROWS, Record("c.jpg", 0.95, "fake"), Record("d.jpg", 0.2, "real")]:
        summary.add(row)
    assert (summary.scored, summary.fake, summary.real, summary.errors) == (4, 2, 2, 1)
    assert summary.most_suspicious() == [(0.95, "c.jpg"), (0.9, "photos/a.jpg")]
    assert summary.failures == [("broken.jpg", "not an image, or an unsupported format")]
