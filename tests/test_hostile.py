"""Nothing lost, part two: hostile names, special files, full disks, interrupted and concurrent runs."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from deepscan.errors import ExitCode, ModelError
from deepscan.files import umask
from deepscan.job import ScanSettings, scan
from deepscan.model import SPEC_MEMBER, read_spec
from deepscan.pipeline import DecodeBudget

from .conftest import write_image
from .test_awkward import interrupt_mid_scan, many_images, start_scan

BAD_UTF8 = os.fsdecode(b"bad\xff\xfename.png")  # not valid UTF-8: kept as surrogate escapes


def deepscan(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in this process (fast), output as bytes (names need not be UTF-8)."""
    from typer.testing import CliRunner

    from deepscan.cli import app

    here = os.getcwd()
    try:
        os.chdir(cwd or here)
        result = CliRunner().invoke(app, [str(arg) for arg in args], catch_exceptions=False)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout_bytes, result.stderr_bytes)


def deepscan_process(*args: str | Path, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """The CLI in a child process, for faults a test must be able to time out of."""
    command = [sys.executable, "-m", "deepscan", *map(str, args)]
    return subprocess.run(command, capture_output=True, cwd=cwd, timeout=timeout)


def csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")))


@pytest.fixture
def special(tmp_path: Path) -> Path:
    """A folder of files that are not regular files, named like images, beside one real image."""
    root = tmp_path / "special"
    write_image(root / "good.png")
    os.mkfifo(root / "fifo.jpg")
    (root / "urandom.jpg").symlink_to("/dev/urandom")
    (root / "zero.png").symlink_to("/dev/zero")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(root / "socket.png"))
    yield root
    server.close()


@pytest.mark.parametrize("extra", [[], ["--cache", "c.db"], ["--columns", "sha256,format"]])
def test_special_files_are_error_rows_at_once_and_never_hang(special: Path, tiny_model: Path, extra: list[str]):
    started = time.monotonic()
    result = deepscan_process("scan", ".", "--model", tiny_model, "-q", *extra, cwd=special, timeout=60)
    assert time.monotonic() - started < 60
    rows = {row["path"]: row for row in csv_rows(result.stdout)}
    assert result.returncode == ExitCode.UNREADABLE
    assert rows["./fifo.jpg"]["error"] == "not a regular file: a FIFO (named pipe)"
    assert rows["./urandom.jpg"]["error"] == "not a regular file: a character device"
    assert rows["./zero.png"]["error"] == "not a regular file: a character device"
    assert rows["./socket.png"]["error"] == "not a regular file: a socket"
    assert rows["./good.png"]["score"]


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_names_that_are_not_utf8_or_hold_line_breaks_round_trip(tmp_path: Path, tiny_model: Path, fmt: str):
    folder = tmp_path / "names"
    names = [BAD_UTF8, "carriage\rreturn.png", "line\u2028separator.png", "new\nline.png"]
    for index, name in enumerate(names):
        write_image(folder / name, index)
    report = tmp_path / f"r.{fmt}"
    result = deepscan("scan", folder, "--model", tiny_model, "-q", "--out", report)
    assert result.returncode == ExitCode.OK, result.stderr
    raw = report.read_bytes()
    raw.decode("utf-8", "strict") if fmt != "csv" else None  # JSON stays valid UTF-8 (\udcXX escapes)
    if fmt == "csv":
        paths = [row["path"] for row in csv_rows(raw)]
    elif fmt == "json":
        paths = [row["path"] for row in json.loads(raw)]
    else:
        paths = [json.loads(line)["path"] for line in raw.split(b"\n") if line]
    assert sorted(os.fsencode(p) for p in paths) == sorted(os.fsencode(str(folder / n)) for n in names)
    again = deepscan("scan", folder, "--model", tiny_model, "-q", "--out", report, "--resume")
    assert again.returncode == ExitCode.OK, again.stderr  # the report reads back as written
    assert report.read_bytes() == raw


def test_path_lists_split_on_newlines_only_and_survive_a_strict_locale(tmp_path: Path, tiny_model: Path):
    odd = [write_image(tmp_path / name, i) for i, name in enumerate([BAD_UTF8, "a\u2028b.png", "c\rd.png"])]
    listing = b"".join(os.fsencode(path) + b"\n" for path in odd)
    result = subprocess.run(
        [sys.executable, "-m", "deepscan", "scan", "-", "--model", str(tiny_model), "-q"],
        input=listing,
        capture_output=True,
        env={**os.environ, "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"},
        timeout=120,
    )
    assert result.returncode == ExitCode.OK, result.stderr
    assert [os.fsencode(row["path"]) for row in csv_rows(result.stdout)] == [os.fsencode(p) for p in odd]


def test_a_nul_byte_in_a_list_is_an_error_row(tmp_path: Path, tiny_model: Path):
    good = write_image(tmp_path / "good.png")
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"bro\0ken.png\n" + os.fsencode(good) + b"\n")
    result = deepscan("scan", "--files-from", listing, "--model", tiny_model, "-q")
    rows = csv_rows(result.stdout)
    assert result.returncode == ExitCode.UNREADABLE
    assert rows[0]["error"] == "invalid path: it contains a NUL byte" and rows[1]["score"]


def test_very_deep_trees_and_over_long_paths(tmp_path: Path, tiny_model: Path):
    deep = tmp_path / "deep"
    here = os.getcwd()
    try:
        deep.mkdir()
        os.chdir(deep)
        for _ in range(1100):  # deeper than Python's recursion limit
            os.mkdir("d")
            os.chdir("d")
        write_image(Path("deep.png"))
        os.chdir(deep)
        os.mkdir("long")
        os.chdir("long")
        for _ in range(20):  # past PATH_MAX (4096)
            os.mkdir("x" * 250)
            os.chdir("x" * 250)
        write_image(Path("far.png"))
    finally:
        os.chdir(here)
    result = deepscan("scan", ".", "--model", tiny_model, "-q", cwd=deep)
    subprocess.run(["rm", "-rf", str(deep)], check=True)  # pytest's own clean-up recurses, and would overflow
    rows = csv_rows(result.stdout)
    assert result.returncode == ExitCode.UNREADABLE
    assert rows[0]["path"].endswith("/d/deep.png") and rows[0]["score"]
    assert rows[1]["path"].startswith("./long/") and rows[1]["error"] == "path too long for the file system"


def test_messages_name_what_was_found(tmp_path: Path, tiny_model: Path):
    info = PngImagePlugin.PngInfo()
    info.add_text("huge", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "text_bomb.png", pnginfo=info)
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "folder.png" / "inside.png").write_bytes(b"")
    records = {Path(r.path).name: r.error for r in scan([tmp_path], ScanSettings(model=tiny_model))}
    assert records["text_bomb.png"].startswith("metadata over Pillow's safety limit")
    assert records["inside.png"] == "empty file"


def test_output_to_a_device_a_pipe_or_a_link_writes_through_it(tmp_path: Path, tiny_model: Path):
    image = write_image(tmp_path / "in" / "a.png")
    result = deepscan("scan", image, "--model", tiny_model, "-q", "--out", "/dev/null")
    assert result.returncode == ExitCode.OK and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    target = tmp_path / "real.csv"
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert deepscan("scan", image, "--model", tiny_model, "-q", "--out", link).returncode == ExitCode.OK
    assert link.is_symlink() and len(csv_rows(target.read_bytes())) == 1
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert deepscan("scan", image, "--model", tiny_model, "-q", "--out", fifo).returncode == ExitCode.OK
    assert len(csv_rows(reader.communicate(timeout=30)[0])) == 1 and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path: Path, tiny_model: Path):
    image = write_image(tmp_path / "a.png")
    full = tmp_path / "full.csv"
    full.symlink_to("/dev/full")
    result = deepscan("scan", image, "--model", tiny_model, "-q", "--out", full)
    assert result.returncode == ExitCode.USAGE and b"Traceback" not in result.stderr
    assert result.stderr.decode().strip() == f"deepscan: error: cannot write {full}: No space left on device"
    report = tmp_path / "r.csv"
    result = deepscan("scan", image, "--model", tiny_model, "-q", "--out", report, "--summary-json", "/dev/full")
    assert result.returncode == ExitCode.OK and b"No space left" in result.stderr and b"Traceback" not in result.stderr
    assert len(csv_rows(report.read_bytes())) == 1
    result = deepscan("scan", image, "--model", tiny_model, "-q", "--out", report, "--cache", "/dev/full")
    assert result.returncode == ExitCode.OK and b"scanning without it" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "full.csv", "r.csv"]  # no .part left


def test_out_may_not_name_a_scanned_file(tmp_path: Path, tiny_model: Path):
    image = write_image(tmp_path / "a.png")
    before = image.read_bytes()
    result = deepscan("scan", tmp_path, "--model", tiny_model, "--out", image, "--format", "csv")
    assert result.returncode == ExitCode.USAGE and b"is one of the files being scanned" in result.stderr
    assert image.read_bytes() == before


def test_an_interrupted_run_never_shortens_an_existing_report(tmp_path: Path, tiny_model: Path):
    folder = many_images(tmp_path / "many", 400)
    report = tmp_path / "r.csv"
    assert start_scan(folder, "--model", tiny_model, "--out", report, "-q").wait(timeout=120) == ExitCode.OK
    complete = report.read_bytes()
    process = start_scan(folder, "--model", tiny_model, "--out", report, "--batch-size", "2")
    err = interrupt_mid_scan(process, signal.SIGTERM, tmp_path, "r.csv")
    assert process.returncode == ExitCode.TERMINATED
    assert report.read_bytes() == complete  # untouched
    partial = tmp_path / "r.partial.csv"
    assert 4 <= len(csv_rows(partial.read_bytes())) < 400 and str(partial) in " ".join(err.split())
    resumed = start_scan(folder, "--model", tiny_model, "--out", report, "--resume", "-q")
    assert resumed.wait(timeout=120) == ExitCode.OK
    assert report.read_bytes() == complete and not partial.exists()


def test_rows_kept_by_resume_are_safe_from_the_first_moment(tmp_path: Path, tiny_model: Path):
    folder = many_images(tmp_path / "many", 60)
    report = tmp_path / "r.csv"
    assert start_scan(folder, "--model", tiny_model, "--out", report, "-q").wait(timeout=120) == ExitCode.OK
    lines = report.read_text().splitlines()
    kept = [lines[0], *lines[2:]]  # the first file is missing: every kept row comes after a file to score
    report.write_text("\n".join(kept) + "\n")
    process = start_scan(folder, "--model", tiny_model, "--out", report, "--resume")
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".r.csv.*.part")):  # the report is open; TensorFlow is still loading
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == ExitCode.TERMINATED, process.stderr.read()
    assert set(report.read_text().splitlines()) >= set(kept)


def test_resume_refuses_a_report_another_model_began(tmp_path: Path, tiny_model: Path):
    from deepscan.model import build_model, save_model

    folder = many_images(tmp_path / "many", 400)
    report = tmp_path / "r.csv"
    process = start_scan(folder, "--model", tiny_model, "--out", report, "--batch-size", "2")
    interrupt_mid_scan(process, signal.SIGINT, tmp_path, "r.csv")
    other = tmp_path / "other.keras"
    model, spec = build_model("reference", 32)
    save_model(model, spec, other)
    before = report.read_bytes()
    refused = deepscan("scan", folder, "--model", other, "--out", report, "--resume")
    assert refused.returncode == ExitCode.USAGE and b"tiny.keras" in refused.stderr and b"other.keras" in refused.stderr
    assert report.read_bytes() == before
    resumed = deepscan("scan", folder, "--model", tiny_model, "--out", report, "--resume", "-q")
    assert resumed.returncode == ExitCode.OK and len(csv_rows(report.read_bytes())) == 400
    assert [p.name for p in tmp_path.glob(".r.csv*")] == []  # the note is gone with the finished report


def test_two_scans_share_one_cache(tmp_path: Path, tiny_model: Path):
    folder = many_images(tmp_path / "many", 150)
    cache = tmp_path / "shared.db"
    runs = [
        start_scan(
            folder, "--model", tiny_model, "--cache", cache, "--batch-size", "4", "-q", "--out", tmp_path / f"{i}.csv"
        )
        for i in range(2)
    ]
    assert [run.wait(timeout=300) for run in runs] == [ExitCode.OK, ExitCode.OK]
    assert (tmp_path / "0.csv").read_text() == (tmp_path / "1.csv").read_text()
    assert sqlite3.connect(cache).execute("SELECT COUNT(*) FROM results").fetchone()[0] == 150


def test_a_corrupt_cache_is_ignored_with_a_warning(tmp_path: Path, tiny_model: Path):
    image = write_image(tmp_path / "a.png")
    cache = tmp_path / "c.db"
    cache.write_bytes(b"SQLite format 3\0" + os.urandom(4096))
    result = deepscan("scan", image, "--model", tiny_model, "-q", "--cache", cache)
    assert result.returncode == ExitCode.OK and len(csv_rows(result.stdout)) == 1
    assert b"scanning without it" in result.stderr and b"Traceback" not in result.stderr


def test_closed_stdout_and_a_vanished_stderr_reader(tmp_path: Path, tiny_model: Path):
    folder = tmp_path / "in"
    write_image(folder / "a.png")
    (folder / "broken.png").write_bytes(b"nope")
    report, summary = tmp_path / "r.csv", tmp_path / "s.json"
    base = f"{sys.executable} -m deepscan scan {folder} --model {tiny_model}"
    closed = subprocess.run(["bash", "-c", f"{base} --out {report} >&-"], capture_output=True, timeout=120)
    assert closed.returncode == ExitCode.UNREADABLE and len(csv_rows(report.read_bytes())) == 2
    closed = subprocess.run(["bash", "-c", f"{base} >&-"], capture_output=True, timeout=120)
    assert closed.returncode == ExitCode.USAGE and b"stdout is closed" in closed.stderr
    command = f"{base} --out {report} --summary-json {summary} 2>&1 | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}"
    gone = subprocess.run(["bash", "-c", command], capture_output=True, timeout=120)
    assert gone.returncode == ExitCode.UNREADABLE
    assert json.loads(summary.read_text())["exit_code"] == ExitCode.UNREADABLE


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", "0.5"), ("threshold", None), ("threshold", float("nan")), ("threshold", 7), ("classes", ["fake"])],
)
def test_a_model_spec_of_the_wrong_type_is_refused(tmp_path: Path, tiny_model: Path, field: str, value: object):
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(tiny_model) as source, zipfile.ZipFile(broken, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == SPEC_MEMBER:
                spec = json.loads(data)
                spec[field] = value
                data = json.dumps(spec).encode()
            target.writestr(item, data)
    result = deepscan("scan", tmp_path, "--model", broken, "-q")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == ExitCode.USAGE and len(lines) == 1 and field in lines[0]


def test_an_inflating_spec_is_refused_before_it_is_read(tmp_path: Path):
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(SPEC_MEMBER, b" " * (64 << 20))  # compresses to about 64 KB
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ModelError, match="refusing"):
        read_spec(bomb)


def test_the_decode_budget_holds_large_images_back():
    """Whatever the threads, the pixels being decoded at once never exceed the budget (one image alone fits)."""
    import threading

    budget = DecodeBudget(100)
    peak, lock = [0], threading.Lock()

    def decode(pixels: int) -> None:
        with budget.share(pixels):
            with lock:
                peak[0] = max(peak[0], budget.used)
            time.sleep(0.01)

    threads = [threading.Thread(target=decode, args=(size,)) for size in [60, 60, 30, 30, 120, 10] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= 120 and budget.used == 0


def test_markup_and_escape_sequences_from_files_are_shown_as_text(tmp_path: Path, tiny_model: Path):
    """A folder 'x[', a file 'y].png', an escape sequence in a name, '[/oops]' in metadata: no crash, no live escape."""
    folder = tmp_path / "x["
    write_image(folder / "y].png", 1)
    write_image(folder / "esc\x1b[31mred.png", 2)
    exif = Image.Exif()
    exif[0x0131] = "Midjourney [/oops]"
    Image.new("RGB", (16, 16)).save(folder / "made.jpg", exif=exif)
    summary = tmp_path / "summary.json"
    result = deepscan("scan", folder, "--model", tiny_model, "--fail-on-fake", "--summary-json", summary, "-o", "-")
    assert result.returncode == ExitCode.FAKE_FOUND  # the metadata declares AI: exit 4, not a crash
    assert json.loads(summary.read_text())["files_found"] == 3
    assert b"\x1b" not in result.stderr and b"x1b[31mred" in result.stderr  # escaped (a table may fold it)
    shown = deepscan("inspect", folder / "made.jpg")
    assert shown.returncode == ExitCode.OK and b"Midjourney [/oops]" in shown.stdout


def test_inspect_says_what_it_found_on_stderr(tmp_path: Path):
    (tmp_path / "README.md").write_text("# not a picture\n")
    missing = deepscan("inspect", tmp_path / "nothing.jpg")
    assert missing.returncode == ExitCode.UNREADABLE and missing.stdout == b""
    assert b"file not found" in missing.stderr
    text = deepscan("inspect", tmp_path / "README.md")
    assert text.returncode == ExitCode.UNREADABLE and b"not an image" in text.stderr
    assert b"no declaration" not in text.stdout + text.stderr


def test_a_cache_refuses_another_programs_database_and_survives_rows_it_cannot_read(tmp_path: Path, tiny_model: Path):
    image = write_image(tmp_path / "a.png")
    theirs = tmp_path / "app.db"
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    result = deepscan("scan", image, "--model", tiny_model, "-q", "--cache", theirs)
    assert result.returncode == ExitCode.OK and len(csv_rows(result.stdout)) == 1
    assert b"not a deepscan cache" in result.stderr
    with sqlite3.connect(theirs) as db:  # left as it was: no table of ours added
        assert [name for (name,) in db.execute("SELECT name FROM sqlite_master")] == ["users"]
    ours = tmp_path / "c.db"
    first = deepscan("scan", image, "--model", tiny_model, "-q", "--cache", ours)
    with sqlite3.connect(ours) as db:
        db.execute("UPDATE results SET records = ?", (json.dumps([{"unexpected": 1}]),))
    again = deepscan("scan", image, "--model", tiny_model, "-q", "--cache", ours)
    assert again.returncode == ExitCode.OK and again.stdout == first.stdout  # scored afresh, same row
    assert b"cannot read" in again.stderr and b"Traceback" not in again.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["scan", "{image}", "--model", "{model}"],
        ["info", "{model}"],
        ["combine", "{folder}", "--out", "{out}", "--view", "{model}", "--view", "{model}"],
    ],
)
def test_a_model_path_that_is_a_fifo_or_a_device_is_refused_at_once(tmp_path: Path, command: list[str]):
    image = write_image(tmp_path / "in" / "real" / "a.png")
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    device = tmp_path / "device.keras"
    device.symlink_to("/dev/zero")
    for model in (fifo, device):
        fill = {"image": image, "folder": tmp_path / "in", "out": tmp_path / "v.keras", "model": model}
        result = deepscan_process(*[a.format(**fill) for a in command], cwd=tmp_path, timeout=120)  # blocked before
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert b"not a regular file" in result.stderr and b"Traceback" not in result.stderr


def test_resume_with_another_folder_keeps_every_row_it_is_handed(tmp_path: Path, tiny_model: Path):
    """A mistyped folder never costs a report: rows for paths outside this scan's inputs stay, after its own."""
    first, other = tmp_path / "first", tmp_path / "other"
    for index in range(6):
        write_image(first / f"{index}.png", index)
    write_image(other / "new.png", 9)
    report = tmp_path / "results.csv"
    assert deepscan("scan", first, "--model", tiny_model, "-q", "-o", report).returncode == ExitCode.OK
    before = csv_rows(report.read_bytes())
    resumed = deepscan("scan", other, "--model", tiny_model, "-q", "-o", report, "--resume")
    assert resumed.returncode == ExitCode.OK and b"not among this scan's inputs" in resumed.stderr
    after = csv_rows(report.read_bytes())
    assert [row["path"] for row in after] == [str(other / "new.png")] + [row["path"] for row in before]
    assert after[1:] == before


@pytest.mark.parametrize("score", ["nan", "inf", "-0.5", "1.5"])
def test_resume_refuses_a_score_that_is_not_a_probability(tmp_path: Path, tiny_model: Path, score: str):
    image = write_image(tmp_path / "in" / "a.png")
    report = tmp_path / "r.csv"
    report.write_text(f"path,label,score,error\n{image},real,{score},\n")
    result = deepscan("scan", tmp_path / "in", "--model", tiny_model, "-q", "-o", report, "--resume")
    assert result.returncode == ExitCode.USAGE and b"not a number from 0 to 1" in result.stderr
    assert report.read_text() == f"path,label,score,error\n{image},real,{score},\n"  # left as it was


def test_no_output_may_overwrite_an_input_or_another_output(tmp_path: Path, tiny_model: Path):
    folder = tmp_path / "in"
    images = [write_image(folder / f"{index}.png", index) for index in range(2)]
    images.append(write_image(tmp_path / "in_files" / "000000.jpg", 7))  # where in.html's thumbnails would go
    before = [image.read_bytes() for image in images]
    report = tmp_path / "same.csv"
    for args, said in (
        (["--html", images[0]], b"--html"),
        (["--summary-json", images[1]], b"--summary-json"),
        (["-o", report, "--html", report], b"give each output its own"),
        (["-o", report, "--summary-json", report], b"give each output its own"),
        (["--html", folder.with_name("in.html")], b"holds a file being scanned"),  # thumbnails go to in_files/
        (["--faces", "--save-crops", folder], b"holds a file being scanned"),
    ):
        result = deepscan("scan", folder, tmp_path / "in_files", "--model", tiny_model, "-q", *args)
        assert result.returncode == ExitCode.USAGE and said in result.stderr, (args, result.stderr)
        assert [image.read_bytes() for image in images] == before and not report.exists()


def test_thumbnails_go_to_a_fresh_folder_never_through_a_planted_link(tmp_path: Path, tiny_model: Path):
    folder = tmp_path / "in"
    for index in range(3):
        write_image(folder / f"{index}.png", index)
    victim, victim_folder = tmp_path / "victim.jpg", tmp_path / "victim_folder"
    victim.write_bytes(b"precious")
    victim_folder.mkdir()
    page, assets = tmp_path / "page.html", tmp_path / "page_files"
    assets.mkdir()
    (assets / "000000.jpg").symlink_to(victim)
    (assets / "999999.jpg").write_bytes(b"an old thumbnail")
    assert deepscan("scan", folder, "--model", tiny_model, "-q", "--html", page, "-o", "-").returncode == 0
    assert victim.read_bytes() == b"precious" and not (assets / "000000.jpg").is_symlink()
    assert sorted(p.name for p in assets.iterdir()) == ["000000.jpg", "000001.jpg", "000002.jpg"]  # no old one
    assert assets.stat().st_mode & 0o777 == 0o777 & ~umask()  # an ordinary folder, as a web server expects
    shutil.rmtree(assets)
    assets.symlink_to(victim_folder, target_is_directory=True)  # the whole folder planted
    assert deepscan("scan", folder, "--model", tiny_model, "-q", "--html", page, "-o", "-").returncode == 0
    assert list(victim_folder.iterdir()) == [] and assets.is_dir() and not assets.is_symlink()
    shutil.rmtree(assets)
    assets.write_text("a file where the folder goes")
    result = deepscan("scan", folder, "--model", tiny_model, "-q", "--html", page, "-o", "-")
    assert result.returncode == ExitCode.USAGE and b"a file is in the way" in result.stderr
    assert b"Traceback" not in result.stderr and result.stdout == b""  # refused before any scoring
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left


def test_a_model_is_saved_through_a_fresh_file_never_a_planted_link(tmp_path: Path, tiny_model: Path):
    from deepscan.model import load_model, save_model

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".m.tmp.keras").symlink_to(victim)  # the fixed name earlier versions wrote through
    detector = load_model(tiny_model)
    save_model(detector.keras_model, detector.spec, tmp_path / "m.keras")
    assert victim.read_text() == "precious" and read_spec(tmp_path / "m.keras") == detector.spec
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.tmp.keras", "m.keras", "victim.txt"]
    assert (tmp_path / "m.keras").stat().st_mode & 0o777 == 0o666 & ~umask()


def test_csv_safe_shows_formula_like_names_as_text_and_the_default_keeps_them_exact(tmp_path: Path, tiny_model: Path):
    """Relative names, as `git diff --name-only | deepscan scan -` gives them, can start a spreadsheet formula."""
    names = ["=HYPERLINK(1).png", "+1.png", "-2.png", "@SUM(1).png", "plain.png"]
    for index, name in enumerate(names):
        write_image(tmp_path / name, index)
    exact = csv_rows(deepscan("scan", "--model", tiny_model, "-q", "--", *names, cwd=tmp_path).stdout)
    assert [row["path"] for row in exact] == names  # by default a report round-trips exactly
    safe = deepscan("scan", "--model", tiny_model, "-q", "--csv-safe", "--", *names, cwd=tmp_path)
    assert safe.returncode == ExitCode.OK
    assert [row["path"] for row in csv_rows(safe.stdout)] == ["'" + name for name in names[:4]] + ["plain.png"]
    refused = deepscan("scan", "--model", tiny_model, "-q", "--csv-safe", "-f", "json", "--", *names, cwd=tmp_path)
    assert refused.returncode == ExitCode.USAGE and b"--csv-safe" in refused.stderr


# The process's own peak since exec (VmHWM): getrusage's ru_maxrss keeps a forking parent's peak across exec.
PEAK_KIB = "re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_report_with_a_giant_row_is_refused_in_one_line(tmp_path: Path, fmt: str):
    """A 64 MiB row: one line and exit 2, in bounded memory, not gigabytes and a traceback."""
    report = tmp_path / f"r.{fmt}"
    giant = "x" * (64 << 20)
    if fmt == "csv":
        report.write_text(f"path,label,score,error\n/a.png,real,0.1,{giant}\n")
    else:
        report.write_text(json.dumps({"path": "/a.png", "label": "real", "score": 0.1, "error": giant}) + "\n")
    code = (
        "import re, sys; from deepscan.cli import main; sys.argv = ['deepscan', 'report', sys.argv[1], "
        "'--html', sys.argv[2]]\ntry:\n    main()\nexcept SystemExit as e:\n"
        f"    print({PEAK_KIB}, file=sys.stderr); raise"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(report), str(tmp_path / "p.html")], capture_output=True, timeout=300
    )
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == ExitCode.USAGE and "not a deepscan" in lines[0] and "Traceback" not in lines[0]
    assert int(lines[-1]) < 1_000_000  # KiB: well under the gigabytes it took


def test_huge_images_scan_in_bounded_memory(tmp_path: Path):
    """Eight 40-byte WebPs of 10,900 x 10,900 pixels peaked at 2.5 GB: Pillow alone needs 1.8 GB for one, so such
    a file is now an error row naming the limit, and smaller ones (6,000 x 6,000, 0.55 GB each to decode) are
    scored one at a time. A 1 MB 16-bit PNG of 10,950 x 10,950 took 2.4 GB (full-size float and RGB copies) and
    100 MB of JPEG metadata 1.1 GB: both are scored now. Measured in a child process as a user's scan runs,
    with the packaged model."""
    folder = tmp_path / "huge"
    folder.mkdir()
    for side in (10_900, 6_000):
        image = Image.new("RGBA", (side, side), (30, 120, 200, 255))
        image.paste((200, 40, 40, 0), (0, 0, side // 2, side))  # half transparent: composited on white
        buffer = io.BytesIO()
        image.save(buffer, "WEBP", lossless=True)
        del image
        for index in range(4):
            (folder / f"{side}_{index}.webp").write_bytes(buffer.getvalue())
    side = 10_950
    ramp = (np.arange(side, dtype=np.uint32) * 6).astype("<u2")
    Image.frombytes("I;16", (side, side), np.broadcast_to(ramp, (side, side)).tobytes()).save(folder / "deep.png")
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 200)).save(jpeg, "JPEG")
    body = b"c2pa" + b"x" * 65_525
    segment = b"\xff\xeb" + (len(body) + 2).to_bytes(2, "big") + body
    (folder / "bloated.jpg").write_bytes(jpeg.getvalue()[:2] + segment * 1_600 + jpeg.getvalue()[2:])
    code = (
        "import re, sys; from deepscan.cli import main; sys.argv = ['deepscan', 'scan', sys.argv[1], '-q']\n"
        "try:\n    main()\nexcept SystemExit:\n"
        f"    print({PEAK_KIB}, file=sys.stderr); raise"
    )
    result = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, timeout=600)
    assert result.returncode == ExitCode.UNREADABLE, result.stderr
    rows = {Path(row["path"]).name: row for row in csv_rows(result.stdout)}
    assert all(rows[f"6000_{i}.webp"]["score"] for i in range(4))
    assert rows["deep.png"]["score"] and rows["bloated.jpg"]["score"] and "16 MiB" in rows["bloated.jpg"]["evidence"]
    assert all("too large to decode in bounded memory" in rows[f"10900_{i}.webp"]["error"] for i in range(4))
    peak_kib = int(result.stderr.decode().strip().splitlines()[-1])
    assert peak_kib < 1_500_000, f"peak {peak_kib / 1024:.0f} MiB"
