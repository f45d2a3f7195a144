"""Nothing lost: every awkward, broken or hostile input gives exactly one row, and interruptions keep what was done."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepscan import interrupts
from deepscan.discovery import find_images
from deepscan.errors import ExitCode, Terminated
from deepscan.job import ScanJob, ScanSettings, scan
from deepscan.pipeline import MAX_PIXELS

from .conftest import write_image


def awkward_corpus(root: Path) -> dict[str, bool]:
    """Write the corpus; returns {relative path: scored?} for every row the scan must produce."""
    expect: dict[str, bool] = {}

    def image(name: str, mode: str = "RGB", size: tuple[int, int] = (40, 30), **save: object) -> None:
        Image.new(mode, size, color=None if mode in ("1", "P") else 128).save(root / name, **save)
        expect[name] = True

    image("grey.png", "L")
    image("palette.gif", "P")
    image("alpha.png", "RGBA")
    image("cmyk.jpg", "CMYK")
    image("plain.bmp")
    image("plain.tif")
    image("plain.webp")
    image("one_pixel.png", size=(1, 1))
    image("very_wide.png", size=(3000, 2))
    image("very_tall.jpg", size=(2, 3000))
    image("UPPER.JPG")
    image('with space, comma and "quotes".png')
    image("tab\there.png")
    image("ünïcødé_名前.jpg")
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(root / "sixteen_bit.png")
    expect["sixteen_bit.png"] = True
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:])
    expect["animated.gif"] = True
    rotated = Image.new("RGB", (40, 20), 90)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(root / "exif_rotated.jpg", exif=exif)
    expect["exif_rotated.jpg"] = True

    (root / "empty.jpg").write_bytes(b"")
    whole = write_image(root / "truncated.jpg", size=(200, 200)).read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "random.png").write_bytes(np.random.default_rng(0).bytes(4000))
    (root / "text.jpg").write_text("just some text\n")
    (root / "page.webp").write_text("<!doctype html><html><body>404</body></html>")
    (root / "dangling.jpg").symlink_to(root / "no-such-target.jpg")
    side = int(MAX_PIXELS**0.5) + 2000
    Image.new("1", (side, side)).save(root / "bomb.png")
    for name in ("empty.jpg", "truncated.jpg", "random.png", "text.jpg", "page.webp", "dangling.jpg", "bomb.png"):
        expect[name] = False

    (root / "folder.jpg").mkdir()  # a directory named like an image: not a row itself
    (root / "folder.jpg" / "inside.png").write_bytes(whole)
    expect["folder.jpg/inside.png"] = True
    (root / "folder.jpg" / "cycle").symlink_to(root, target_is_directory=True)
    (root / "notes.txt").write_text("not an image, not a row")
    return expect


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, bool]]:
    root = tmp_path / "dump"
    root.mkdir()
    return root, awkward_corpus(root)


def test_every_awkward_input_gives_exactly_one_row(cli, corpus, tiny_model: Path, tmp_path: Path):
    root, expect = corpus
    out = tmp_path / "report.csv"
    started = time.perf_counter()
    code, _, _ = cli("scan", root, "--model", tiny_model, "--out", out, "-q")
    assert time.perf_counter() - started < 60  # the bomb is refused, not decoded
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    by_name = {os.path.relpath(row["path"], root): row for row in rows}
    assert len(rows) == len(by_name) == len(expect)  # one row each, no duplicates (the cycle)
    assert set(by_name) == set(expect)  # names with commas, quotes, tabs, unicode round-trip
    for name, scored in expect.items():
        row = by_name[name]
        assert bool(row["score"]) is scored, (name, row)
        assert bool(row["error"]) is not scored, (name, row)
    assert "decompression bomb" in by_name["bomb.png"]["error"]
    assert by_name["empty.jpg"]["error"] == "empty file"
    assert by_name["dangling.jpg"]["error"] == "file not found"
    assert code == ExitCode.UNREADABLE


def test_a_file_that_vanishes_mid_scan_becomes_an_error_row(tmp_path: Path, tiny_model: Path):
    paths = [str(write_image(tmp_path / f"{i}.png", i)) for i in range(4)]
    listed = list(find_images([tmp_path]))
    os.remove(paths[1])  # gone between discovery and decoding
    with ScanJob(ScanSettings(model=tiny_model, batch_size=4)) as job:
        rows = [record for files in job.run(listed) for scanned in files for record in scanned.records]
    assert [row.error for row in rows] == ["", "file not found", "", ""]
    assert all(row.score is not None for row in rows if not row.error)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file_becomes_an_error_row(tmp_path: Path, tiny_model: Path):
    path = write_image(tmp_path / "locked.png")
    path.chmod(0)
    (row,) = scan([str(path)], ScanSettings(model=tiny_model))
    assert row.error == "permission denied"


def many_images(folder: Path, count: int) -> Path:
    """`count` small distinct PNGs, quick to write."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def start_scan(*args: str | Path) -> subprocess.Popen:
    """The CLI in a child process that takes Ctrl-C as a terminal would deliver it.

    A shell script's background jobs (CI runners among them) start with SIGINT
    ignored, and Python keeps it ignored; the child gets the default back.
    """
    command = [sys.executable, "-m", "deepscan", "scan", *map(str, args)]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_rows(part_folder: Path, report_name: str, at_least: int, timeout: float = 60) -> None:
    """Wait until the scan's temporary report holds some rows (it is flushed after each batch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for part in part_folder.glob(f".{report_name}.*.part"):
            if part.read_text(errors="replace").count("\n") > at_least:
                return
        time.sleep(0.05)
    raise AssertionError("the scan wrote no rows in time")


def interrupt_mid_scan(process: subprocess.Popen, sig: int, tmp_path: Path, report: str, timeout: float = 60) -> str:
    """Signal the scan once it has written some rows, while it is certainly still running.

    The process is frozen (SIGSTOP) first and its temporary report checked:
    that file is renamed into place only at the end, so the signal lands
    mid-scan however fast the machine, and is handled when it thaws.
    """
    wait_for_rows(tmp_path, report, at_least=4, timeout=timeout)
    process.send_signal(signal.SIGSTOP)
    assert list(tmp_path.glob(f".{report}.*.part")), "the scan ended before it could be interrupted"
    process.send_signal(sig)
    process.send_signal(signal.SIGCONT)
    return process.communicate(timeout=60)[1]


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)]
)
def test_a_signal_mid_scan_keeps_the_rows_done(tmp_path: Path, tiny_model: Path, sig: int, code: int):
    folder = many_images(tmp_path / "many", 400)
    out = tmp_path / "r.csv"
    process = start_scan(folder, "--model", tiny_model, "--out", out, "--batch-size", "2")
    err = interrupt_mid_scan(process, sig, tmp_path, "r.csv")
    assert process.returncode == code, err
    assert "Traceback" not in err and "stopped after" in err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert 4 <= len(rows) < 400
    assert all(row["label"] in ("real", "fake") for row in rows)  # no half-written row


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_a_finalizer_swallowed_is_raised_again_at_the_scan_loops_check():
    """Python drops what a finalizer raises, a signal's exception too; the scan loop checks after every batch."""

    def cleaning_up() -> Iterator[None]:
        try:
            yield
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here, inside the finalizer

    with interrupts.raised():
        unfinished = cleaning_up()
        next(unfinished)
        del unfinished  # finalized at once: the Terminated its clean-up raised went nowhere
        with pytest.raises(Terminated):
            interrupts.raise_if_swallowed()


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path: Path, tiny_model: Path):
    folder = many_images(tmp_path / "many", 400)
    whole, resumed = tmp_path / "whole.csv", tmp_path / "resumed.csv"
    process = start_scan(folder, "--model", tiny_model, "--out", resumed, "--batch-size", "2")
    interrupt_mid_scan(process, signal.SIGINT, tmp_path, "resumed.csv")
    assert process.returncode == ExitCode.INTERRUPTED
    done_before = len(resumed.read_text().splitlines()) - 1
    assert 4 <= done_before < 400

    again = start_scan(folder, "--model", tiny_model, "--out", resumed, "--resume", "-q")
    assert again.wait(timeout=120) == ExitCode.OK
    first = start_scan(folder, "--model", tiny_model, "--out", whole, "-q")
    assert first.wait(timeout=120) == ExitCode.OK
    assert resumed.read_text() == whole.read_text()
    assert len(whole.read_text().splitlines()) == 1 + 400


def test_an_error_a_signal_caused_inside_a_library_stops_the_scan_as_the_signal():
    """SIGTERM landing inside TensorFlow's own work can come out as TensorFlow's error: the scan sees the signal."""

    def library_call() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises Terminated here...
        except BaseException as err:
            raise RuntimeError("iterator torn down") from err  # ...and the library turns it into its own error

    with interrupts.raised(), pytest.raises(Terminated), interrupts.signals_win():
        library_call()
    with interrupts.raised(), pytest.raises(RuntimeError), interrupts.signals_win():  # no signal: the error stays
        raise RuntimeError("a real failure")


def test_a_signal_during_a_deferred_start_up_is_raised_when_it_ends():
    """Ray's start-up must not be cut in half by Ctrl-C (a half-made core worker crashed the process at exit)."""
    finished = []  # SIGTERM: a test run started in the background has SIGINT ignored, and deepscan keeps it so
    with interrupts.raised(), pytest.raises(Terminated), interrupts.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # without the deferral, Terminated would be raised here
        finished.append(True)
    assert finished == [True]
    with interrupts.raised(), interrupts.deferred():  # no signal: nothing raised
        finished.append(True)
    assert finished == [True, True]
