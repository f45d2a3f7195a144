import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepscan.errors import ExitCode

from .conftest import write_image


class _AnyError(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    __hash__ = str.__hash__


ANY_ERROR = _AnyError()


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_row_per_image_including_unreadable_ones(cli, photos: Path, tiny_model: Path):
    code, out, err = cli("scan", photos, "--model", tiny_model)
    rows = rows_of(out)
    assert [Path(r["path"]).name for r in rows] == ["a.PNG", "b.jpg", "broken.jpg", "c.webp"]
    broken = rows[2]
    assert broken["label"] == "" and broken["score"] == "" and "not an image" in broken["error"]
    for row in rows[:2] + rows[3:]:
        assert row["label"] in {"real", "fake"} and 0 <= float(row["score"]) <= 1 and row["error"] == ""
    assert code == ExitCode.UNREADABLE
    assert "files found" in err  # the summary goes to stderr, never into the data


def test_exit_code_zero_when_every_file_is_scored(cli, tmp_path: Path, tiny_model: Path):
    write_image(tmp_path / "one.jpg")
    code, out, _ = cli("scan", tmp_path, "--model", tiny_model, "--quiet")
    assert code == ExitCode.OK and len(rows_of(out)) == 1


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_formats_on_stdout_parse_cleanly(cli, photos: Path, tiny_model: Path, fmt: str):
    _, out, _ = cli("scan", photos, "--model", tiny_model, "--format", fmt)
    rows = json.loads(out) if fmt == "json" else [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"path", "label", "score", "error", "evidence"}


def test_report_file_format_follows_the_extension(cli, photos: Path, tiny_model: Path, tmp_path: Path):
    target = tmp_path / "report.json"
    code, out, _ = cli("scan", photos, "--model", tiny_model, "--out", target, "-q")
    assert code == ExitCode.UNREADABLE and out == ""
    assert len(json.loads(target.read_text())) == 4


def test_threshold_option_overrides_the_models_own(cli, photos: Path, tiny_model: Path):
    _, low, _ = cli("scan", photos, "--model", tiny_model, "--threshold", "0", "-q")
    _, high, _ = cli("scan", photos, "--model", tiny_model, "--threshold", "1", "-q")
    assert {r["label"] for r in rows_of(low) if r["score"]} == {"fake"}
    assert {r["label"] for r in rows_of(high) if r["score"]} == {"real"}


def test_batch_size_does_not_change_results(cli, photos: Path, tiny_model: Path):
    _, one, _ = cli("scan", photos, "--model", tiny_model, "--batch-size", "1", "-q")
    _, many, _ = cli("scan", photos, "--model", tiny_model, "--batch-size", "64", "-q")
    # The same scores; the last printed digit may move, as batch size changes the float kernels.
    np.testing.assert_allclose(
        [float(r["score"] or "nan") for r in rows_of(one)],
        [float(r["score"] or "nan") for r in rows_of(many)],
        atol=2e-6,
    )
    assert [(r["path"], r["label"], r["error"]) for r in rows_of(one)] == [
        (r["path"], r["label"], r["error"]) for r in rows_of(many)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "does-not-exist"], "does not exist"),
        (["scan", ".", "--out", "missing-folder/r.csv"], "output folder does not exist"),
        (["scan", ".", "--out", "r.txt"], "cannot tell the format"),
        (["scan", ".", "--threshold", "2"], "threshold"),
        (["scan", ".", "--format", "xml"], "format"),
        (["scan", ".", "--bogus"], "bogus"),
        (["scan", ".", "--out", "r.csv", "--format", "json"], "contradicts"),
        (["scan", ".", "--summary-json", "-"], "needs --out"),
        (["train", ".", "--out", "m.h5"], ".keras"),
        (["train", ".", "--out", "m.keras", "--group-pattern", "v(\\d+"], "not a regular expression"),
        (["evaluate", ".", "--group-pattern", "["], "not a regular expression"),
        (["scan", ".", "--explain", "2"], "--html"),
        (["info", "does-not-exist.keras"], "does not exist"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_two(cli, args, message, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(*args)
    assert code == ExitCode.USAGE
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_a_bad_model_file_is_a_usage_error(cli, photos: Path, tmp_path: Path):
    fake_model = tmp_path / "m.keras"
    fake_model.write_text("not a model")
    code, out, err = cli("scan", photos, "--model", fake_model)
    assert code == ExitCode.USAGE and out == "" and "not a Keras model file" in err


@pytest.mark.parametrize("command", [[], ["scan"], ["train"], ["evaluate"], ["info"], ["inspect"], ["report"]])
def test_every_command_has_help(cli, command):
    code, out, _ = cli(*command, "--help")
    assert code == 0 and "Usage" in out


def test_help_lists_exit_codes(cli):
    _, out, _ = cli("scan", "--help")
    assert "Exit codes" in out and "3 some files could not be scored" in " ".join(out.split())


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["-V"]])
def test_help_and_version_import_no_command_and_no_numeric_library(args: list[str]):
    """`deepscan --help` and `-V` start as fast as Typer itself: no command module, numpy, Pillow or TensorFlow."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['deepscan', *{args!r}]\n"
        "try:\n    runpy.run_module('deepscan', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = ('numpy', 'PIL', 'tensorflow', 'deepscan.commands.scan', 'deepscan.job')\n"
        "print(sorted(name for name in heavy if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    first, *_, last = result.stdout.strip().splitlines()
    assert last == "[]"
    if args == ["--help"]:
        assert "Usage" in first and "evaluate" in result.stdout
    else:
        assert first.startswith("deepscan 0.")


def test_a_command_loaded_on_demand_has_its_full_help(cli):
    code, out, _ = cli("scan", "--help")
    assert code == 0 and "--resume" in out and "Exit codes" in out
    code, out, _ = cli("info", "--help")
    assert code == 0 and "--json" in out and "Exit codes" not in out


def test_info_reads_a_model_without_loading_it(cli, tiny_model: Path):
    code, out, _ = cli("info", tiny_model, "--json")
    spec = json.loads(out)
    assert code == 0 and spec["arch"] == "reference" and spec["image_size"] == 32


def test_global_options_work_after_the_command_too(cli, photos: Path, tiny_model: Path):
    for flags in (["-v"], ["--log-level", "info"], ["--log-level=info"]):
        code, _, err = cli("scan", photos, "--model", tiny_model, "-q", *flags)
        assert code == ExitCode.UNREADABLE and "loading model" in err, flags
    code, out, _ = cli("scan", "--model", tiny_model, "-q", "--", photos / "b.jpg")
    assert code == ExitCode.OK and len(rows_of(out)) == 1


def test_a_scan_that_finds_no_image_says_so_and_exits_zero(cli, tmp_path: Path, tiny_model: Path):
    (tmp_path / "notes.txt").write_text("no images here")
    code, out, err = cli("scan", tmp_path, "--model", tiny_model)
    assert code == ExitCode.OK and rows_of(out) == [] and "no image found" in err


def test_the_summary_names_the_failures_and_the_report(cli, tmp_path: Path, tiny_model: Path):
    for i in range(8):
        (tmp_path / "in" / f"bad{i}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "in" / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    write_image(tmp_path / "in" / "good.png")
    report = tmp_path / "r.csv"
    code, _, err = cli("scan", tmp_path / "in", "--model", tiny_model, "--out", report)
    text = " ".join(err.split())
    assert code == ExitCode.UNREADABLE
    assert "could not be scored" in text and "bad0.jpg: not an image" in text and "and 3 more" in text
    assert f"wrote {report}" in text
    assert re.search(r"device\W+(CPU|GPU)", text)
    assert re.search(r"trained on\W+not recorded", text)  # the tiny model says nothing of what it covers


def test_summary_json_on_stdout_beside_a_report_file(cli, photos: Path, tiny_model: Path, tmp_path: Path):
    code, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "--out", tmp_path / "r.csv", "--summary-json", "-")
    figures = json.loads(out)
    assert figures["exit_code"] == code == ExitCode.UNREADABLE and figures["report"] == str(tmp_path / "r.csv")
    assert figures["device"] in ("CPU",) or figures["device"].startswith("GPU")
    assert figures["failures"] == [{"path": str(photos / "nested" / "broken.jpg"), "error": ANY_ERROR}]
    assert figures["models"][0]["trained_on"] == "not recorded"


def test_help_reads_like_a_manual(cli):
    _, out, _ = cli("scan", "--help")
    assert "<bool>" not in out and "<list" not in out and "FILE" in out
    assert "deepscan-audit[faces]" in out  # the extra's name survives Rich markup
