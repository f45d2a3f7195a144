"""Made for cron, CI and shell pipelines: lists in, streams out, exit codes, cache, provenance."""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import deepscan
from deepscan.errors import ExitCode
from deepscan.model import build_model, save_model

from .conftest import write_image


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def names(rows: list[dict]) -> list[str]:
    return [Path(row["path"]).name for row in rows]


def test_paths_from_stdin_one_per_line_with_missing_ones_as_error_rows(cli, photos: Path, tiny_model: Path):
    listing = f"{photos / 'b.jpg'}\n{photos / 'missing.jpg'}\n\n{photos / 'nested'}\n"
    code, out, _ = cli("scan", "-", "--model", tiny_model, "-q", input=listing)
    rows = rows_of(out)
    assert names(rows) == ["b.jpg", "missing.jpg", "broken.jpg", "c.webp"]
    assert rows[1]["error"] == "file not found"
    assert code == ExitCode.UNREADABLE


def test_nul_separated_lists_and_files_from(cli, photos: Path, tiny_model: Path, tmp_path: Path):
    odd = write_image(photos / "new\nline.png", 9)  # only a NUL-separated list can carry this name
    code, out, _ = cli(
        "scan", "-", "-0", "--model", tiny_model, "-q", "-f", "jsonl", input=f"{odd}\0{photos / 'b.jpg'}\0"
    )
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(odd), str(photos / "b.jpg")]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'a.PNG'}\n")
    code, out, _ = cli("scan", "--files-from", listing, "--model", tiny_model, "-q")
    assert code == ExitCode.OK and names(rows_of(out)) == ["a.PNG"]


def test_include_exclude_and_no_recursive(cli, photos: Path, tiny_model: Path):
    _, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "--include", "*.jpg", "--include", "*.webp")
    assert names(rows_of(out)) == ["b.jpg", "broken.jpg", "c.webp"]
    _, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "--exclude", "*/nested/*")
    assert names(rows_of(out)) == ["a.PNG", "b.jpg"]
    _, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "--include", "nested/*")  # relative to the folder
    assert names(rows_of(out)) == ["broken.jpg", "c.webp"]
    _, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "--include", "nested/deeper/*.webp")
    assert names(rows_of(out)) == ["c.webp"]
    _, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "--no-recursive")
    assert names(rows_of(out)) == ["a.PNG", "b.jpg"]


def test_no_input_at_all_is_a_usage_error_but_an_empty_list_is_not(cli, tiny_model: Path):
    code, _, err = cli("scan")
    assert code == ExitCode.USAGE and "at least one PATH" in err
    code, out, _ = cli("scan", "-", "--model", tiny_model, "-q", input="")
    assert code == ExitCode.OK and out == "path,label,score,error,evidence\n"


@pytest.mark.parametrize(
    ("options", "code"),
    [
        (["--threshold", "0", "--fail-on-fake"], ExitCode.FAKE_FOUND),
        (["--threshold", "1", "--fail-on-fake"], ExitCode.OK),
        (["--threshold", "0", "--max-fake", "2"], ExitCode.FAKE_FOUND),
        (["--threshold", "0", "--max-fake", "3"], ExitCode.OK),
        (["--threshold", "0", "--max-fake-fraction", "0.5"], ExitCode.FAKE_FOUND),
        (["--threshold", "0", "--max-fake-fraction", "1"], ExitCode.OK),
    ],
)
def test_fake_budgets_set_exit_code_four(cli, tmp_path: Path, tiny_model: Path, options, code):
    for i in range(3):
        write_image(tmp_path / f"{i}.jpg", i)
    assert cli("scan", tmp_path, "--model", tiny_model, "-q", *options)[0] == code


def test_fake_found_wins_over_unreadable_files(cli, photos: Path, tiny_model: Path):
    assert cli("scan", photos, "--model", tiny_model, "-q")[0] == ExitCode.UNREADABLE
    assert cli("scan", photos, "--model", tiny_model, "-q", "--threshold", "0", "--fail-on-fake")[0] == 4


def test_summary_json_for_dashboards(cli, photos: Path, tiny_model: Path, tmp_path: Path):
    target = tmp_path / "summary.json"
    code, _, _ = cli("scan", photos, "--model", tiny_model, "-q", "--summary-json", target, "--threshold", "0")
    summary = json.loads(target.read_text())
    assert summary["files_found"] == 4 and summary["scored"] == 3 and summary["errors"] == 1
    assert summary["fake"] == 3 and summary["threshold"] == 0 and summary["exit_code"] == code
    assert summary["model"].startswith("tiny.keras@sha256:")
    assert summary["inputs"] == [str(photos)] and summary["deepscan_version"] == deepscan.__version__
    made = datetime.datetime.fromisoformat(summary["created"])
    assert abs((datetime.datetime.now(datetime.timezone.utc) - made).total_seconds()) < 600


def test_the_summary_says_what_was_carried_over_and_why_no_model_ran(cli, photos: Path, tiny_model: Path, tmp_path):
    report, target = tmp_path / "r.csv", tmp_path / "summary.json"
    cli("scan", photos, "--model", tiny_model, "-q", "-o", report)
    code, _, err = cli("scan", photos, "--model", tiny_model, "-o", report, "--resume", "--summary-json", target)
    summary = json.loads(target.read_text())
    assert summary["carried_over"] == 4 and summary["from_cache"] == 0 and summary["device"] is None
    assert "carried over" in err and "every file was already known" in err
    cache = tmp_path / "c.db"
    cli("scan", photos, "--model", tiny_model, "-q", "--cache", cache, "-o", tmp_path / "a.csv")
    cli(
        "scan",
        photos,
        "--model",
        tiny_model,
        "-q",
        "--cache",
        cache,
        "-o",
        tmp_path / "b.csv",
        "--summary-json",
        target,
    )
    summary = json.loads(target.read_text())
    assert summary["from_cache"] == 4 and summary["carried_over"] == 0  # a corrupt file's error row too
    (tmp_path / "empty").mkdir()
    code, _, err = cli("scan", tmp_path / "empty", "--model", tiny_model, "-o", tmp_path / "e.csv")
    assert code == ExitCode.OK and "no file to score" in err and "already known" not in err


def test_provenance_columns(cli, photos: Path, tiny_model: Path):
    _, out, _ = cli(
        "scan",
        photos / "b.jpg",
        photos / "nested",
        "--model",
        tiny_model,
        "-q",
        "--columns",
        "sha256,bytes,format,width,height,model",
    )
    good, broken = rows_of(out)[0], rows_of(out)[1]
    data = (photos / "b.jpg").read_bytes()
    assert good["sha256"] == hashlib.sha256(data).hexdigest() and good["bytes"] == str(len(data))
    assert (good["format"], good["width"], good["height"]) == ("JPEG", "48", "40")
    assert good["model"] == f"tiny.keras@sha256:{hashlib.sha256(tiny_model.read_bytes()).hexdigest()}"
    assert broken["format"] == "" and broken["error"]
    code, _, err = cli("scan", photos, "--columns", "colour")
    assert code == ExitCode.USAGE and "unknown column" in err


def cache_log(err: str) -> str:
    return next(line for line in err.splitlines() if "cache:" in line)


def test_cache_hits_misses_and_invalidation(cli, photos: Path, tiny_model: Path, tmp_path: Path):
    db = tmp_path / "scores.db"
    scan = ("-v", "scan", photos, "--model", tiny_model, "-q", "--cache", db)
    _, first, err = cli(*scan)
    assert "0 hits, 4 misses" in cache_log(err)  # the broken file's error is cached too
    _, second, err = cli(*scan)
    assert "0 misses" in cache_log(err) and "loading model" not in err
    assert second == first  # every file still has its row, the error row included
    write_image(photos / "b.jpg", seed=42)  # changed content
    _, third, err = cli(*scan)
    assert "3 hits, 1 misses" in cache_log(err)
    changed = [a["path"] for a, b in zip(rows_of(second), rows_of(third), strict=True) if a != b]
    assert changed == [str(photos / "b.jpg")]
    other = tmp_path / "other.keras"
    model, spec = build_model("reference", 32)
    save_model(model, spec, other)
    _, _, err = cli("-v", "scan", photos, "--model", other, "-q", "--cache", db)
    assert "0 hits" in cache_log(err)


def test_a_fully_cached_rescan_never_imports_tensorflow(photos: Path, tiny_model: Path, tmp_path: Path):
    db = tmp_path / "scores.db"
    args = ["scan", str(photos), "--model", str(tiny_model), "-q", "--cache", str(db)]
    probe = (
        "import sys\nfrom deepscan.cli import main\nsys.argv = ['deepscan', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('TF', 'tensorflow' in sys.modules, file=sys.stderr)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    assert "TF True" in runs[0].stderr and "TF False" in runs[1].stderr
    assert runs[0].stdout == runs[1].stdout


def run_shell(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_jsonl_to_head_ends_quietly_on_a_broken_pipe(tmp_path: Path, tiny_model: Path):
    for i in range(1200):
        write_image(tmp_path / "many" / f"{i:04d}.png", i, size=(8, 8))
    command = f"deepscan scan many --model {tiny_model} --format jsonl --batch-size 8 --cache c.db | head -3"
    result = run_shell(command, tmp_path)
    assert len(result.stdout.splitlines()) == 3
    assert result.stderr == ""
    assert result.returncode == ExitCode.BROKEN_PIPE
    stored = sqlite3.connect(tmp_path / "c.db").execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 8 <= stored < 1200  # the scores computed before the pipe closed were kept


@pytest.fixture
def audit_folder(tmp_path: Path, tiny_model: Path) -> Path:
    """A folder laid out like the README examples expect: images/, and the model as model.keras."""
    for i in range(3):
        write_image(tmp_path / "images" / f"{i}.jpg", i)
    shutil.copy(tiny_model, tmp_path / "model.keras")
    return tmp_path


def readme_example(marker: str) -> str:
    """The shell line that follows `<!-- example: marker -->` in README.md."""
    lines = (Path(__file__).parent.parent / "README.md").read_text().splitlines()
    start = lines.index(f"<!-- example: {marker} -->")
    return next(line for line in lines[start + 1 :] if line and not line.startswith("```"))


def test_readme_crontab_line(audit_folder: Path):
    entry = readme_example("crontab")
    command = entry.split(None, 5)[5].replace("\\%", "%")  # drop the schedule; cron unescapes \%
    command = command.replace("/srv/uploads", "images").replace("/var/reports", "reports")
    (audit_folder / "reports").mkdir()
    for _ in range(2):  # the second night hits the cache
        result = run_shell(command.replace("deepscan scan", "deepscan scan --model model.keras"), audit_folder)
        assert result.returncode == 0, result.stderr
    (report,) = (audit_folder / "reports").glob("deepscan-*.csv")
    assert len(rows_of(report.read_text())) == 3


def test_readme_github_actions_step_fails_a_pr_adding_fakes(audit_folder: Path):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    images = audit_folder / "images"
    shutil.move(images, audit_folder / "incoming")
    subprocess.run([*git, "init", "-q"], cwd=audit_folder, check=True)
    (audit_folder / "README.txt").write_text("base\n")
    subprocess.run([*git, "add", "README.txt"], cwd=audit_folder, check=True)
    subprocess.run([*git, "commit", "-qm", "base"], cwd=audit_folder, check=True)
    step = readme_example("github-actions").split("run: ", 1)[1]
    step = step.replace("origin/${{ github.base_ref }}", "HEAD~1").replace(
        "deepscan scan", "deepscan scan --model model.keras"
    )
    shutil.move(audit_folder / "incoming", images)
    (audit_folder / "notes.md").write_text("not an image: filtered out by the pathspec\n")
    subprocess.run([*git, "add", "images", "notes.md"], cwd=audit_folder, check=True)
    subprocess.run([*git, "commit", "-qm", "add images"], cwd=audit_folder, check=True)
    passing = run_shell(step.replace("--fail-on-fake", "--fail-on-fake --threshold 1"), audit_folder)
    assert passing.returncode == 0, passing.stderr
    assert len(rows_of((audit_folder / "deepscan-report.csv").read_text())) == 3
    failing = run_shell(step.replace("--fail-on-fake", "--fail-on-fake --threshold 0"), audit_folder)
    assert failing.returncode == ExitCode.FAKE_FOUND
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "no images"], cwd=audit_folder, check=True)
    assert run_shell(step, audit_folder).returncode == 0  # a PR without images passes


def test_readme_find_and_jq_pipelines(audit_folder: Path):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    command = readme_example("find-jq").replace("deepscan scan", "deepscan scan --model model.keras --threshold 0")
    result = run_shell(command.replace("/srv/uploads", "images"), audit_folder)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split()) == sorted(str(Path("images") / f"{i}.jpg") for i in range(3))
    none = run_shell(command.replace("--threshold 0", "--threshold 1").replace("/srv/uploads", "images"), audit_folder)
    assert none.returncode == 0 and none.stdout == ""


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux script for a terminal")
def test_no_color_is_honoured_on_a_terminal(photos: Path, tiny_model: Path, tmp_path: Path):
    def on_terminal(env: dict[str, str]) -> str:
        command = f"deepscan scan {photos / 'b.jpg'} --model {tiny_model} --out {tmp_path / 'r.csv'}"
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env}
        return subprocess.run(["script", "-qc", command, "/dev/null"], env=env, capture_output=True, text=True).stdout

    colour = re.compile(r"\x1b\[(?:\d+;)*3[0-8](?:;\d+)*m")  # an ANSI foreground colour (italic is 3 alone)
    assert colour.search(on_terminal({}))
    assert not colour.search(on_terminal({"NO_COLOR": "1"}))
