"""Report writers (CSV, JSON, JSON Lines), atomic output files, and the summary."""

from __future__ import annotations

import csv
import heapq
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table

from deepscan.errors import INTERRUPTS, OutputError
from deepscan.scan import ScanRow

COLUMNS = ("path", "label", "score", "error")


class OutputFormat(str, Enum):
    csv = "csv"
    json = "json"
    jsonl = "jsonl"


_EXTENSIONS = {
    ".csv": OutputFormat.csv,
    ".json": OutputFormat.json,
    ".jsonl": OutputFormat.jsonl,
    ".ndjson": OutputFormat.jsonl,
}


def is_stdout(destination: Path | None) -> bool:
    return destination is None or str(destination) == "-"


def choose_format(destination: Path | None, explicit: OutputFormat | None) -> OutputFormat:
    """--format wins; otherwise the file's extension; CSV on stdout."""
    if explicit is not None:
        return explicit
    if is_stdout(destination):
        return OutputFormat.csv
    assert destination is not None
    try:
        return _EXTENSIONS[destination.suffix.lower()]
    except KeyError:
        raise OutputError(
            f"cannot tell the format of {destination} from its extension: use .csv, .json or .jsonl, or --format"
        ) from None


def record(row: ScanRow, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A row as plain values (score rounded to 6 decimals), plus any extra columns."""
    score = None if row.score is None else round(row.score, 6)
    return {"path": row.path, "label": row.label, "score": score, "error": row.error, **(extra or {})}


class CsvWriter:
    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._columns = columns
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(columns)

    def write(self, values: dict[str, Any]) -> None:
        score = values["score"]
        values = {**values, "score": "" if score is None else f"{score:.6f}"}
        self._writer.writerow(_cell(values[c]) for c in self._columns)

    def close(self) -> None:
        pass


def _cell(value: Any) -> Any:
    """A CSV cell: None is empty, a list (a face box) is comma-joined."""
    if value is None:
        return ""
    return ",".join(map(str, value)) if isinstance(value, list) else value


class JsonLinesWriter:
    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._stream, self._columns = stream, columns

    def write(self, values: dict[str, Any]) -> None:
        self._stream.write(json.dumps({c: values[c] for c in self._columns}, ensure_ascii=False) + "\n")

    def close(self) -> None:
        pass


class JsonWriter(JsonLinesWriter):
    """A JSON array written row by row, so the report never sits in memory."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        super().__init__(stream, columns)
        self._separator = "[\n"

    def write(self, values: dict[str, Any]) -> None:
        self._stream.write(self._separator + json.dumps({c: values[c] for c in self._columns}, ensure_ascii=False))
        self._separator = ",\n"

    def close(self) -> None:
        self._stream.write("[]\n" if self._separator == "[\n" else "\n]\n")


_WRITERS = {OutputFormat.csv: CsvWriter, OutputFormat.json: JsonWriter, OutputFormat.jsonl: JsonLinesWriter}


class Report:
    """Rows going to one destination in one format; ``flush`` after each batch."""

    def __init__(self, stream: IO[str], fmt: OutputFormat, columns: Sequence[str] = COLUMNS) -> None:
        self._stream = stream
        self._writer = _WRITERS[fmt](stream, columns)

    def write(self, row: ScanRow, extra: Mapping[str, Any] | None = None) -> None:
        self._writer.write(record(row, extra))

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self._writer.close()
        self._stream.flush()


def read_report(path: Path, fmt: OutputFormat) -> dict[str, ScanRow]:
    """The rows of a report deepscan wrote, by path (to resume an interrupted scan)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if fmt is OutputFormat.csv:
            records: list[dict[str, Any]] = list(csv.DictReader(io.StringIO(text)))
        elif fmt is OutputFormat.json:
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        rows = {}
        for values in records:
            score = values["score"]
            score = None if score in ("", None) else float(score)
            rows[values["path"]] = ScanRow(values["path"], score, values["label"] or "", values["error"] or "")
        return rows
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OutputError(f"cannot resume from {path}: not a deepscan {fmt.value} report ({err})") from None


def check_destination(destination: Path | None) -> None:
    """Raise OutputError now if a report could not be written to ``destination``."""
    if is_stdout(destination):
        return
    assert destination is not None
    folder = destination.parent
    if destination.is_dir():
        raise OutputError(f"output path is a directory: {destination}")
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder is not writable: {folder}")


@contextmanager
def atomic_file(target: Path) -> Iterator[IO[str]]:
    """A text file written under a temporary name beside ``target``, then renamed over it.

    The rename happens when the block ends, also when it ends with
    Ctrl-C or SIGTERM (what was written is kept); any other failure removes
    the temporary file and leaves an existing ``target`` untouched.
    """
    target = Path(target)
    check_destination(target)
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed and renamed by _commit
            "w",
            encoding="utf-8",
            newline="",
            dir=target.parent,
            prefix=f".{target.name}.",
            suffix=".part",
            delete=False,
        )
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None
    try:
        yield handle
    except INTERRUPTS:
        _commit(handle, target)
        raise
    except BaseException:
        handle.close()
        os.unlink(handle.name)
        raise
    _commit(handle, target)


def _commit(handle: IO[str], target: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    os.chmod(handle.name, 0o666 & ~_umask())
    os.replace(handle.name, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(target: Path, text: str) -> None:
    with atomic_file(target) as handle:
        handle.write(text)


@contextmanager
def open_report(destination: Path | None, fmt: OutputFormat, columns: Sequence[str] = COLUMNS) -> Iterator[Report]:
    """Rows to stdout or, atomically, to a file (see atomic_file).

    After Ctrl-C the report is closed properly (a JSON array gets its
    bracket), so a partial report is still a valid one.
    """
    target = None if is_stdout(destination) else destination
    with nullcontext(sys.stdout) if target is None else atomic_file(target) as stream:
        report = Report(stream, fmt, columns)
        try:
            yield report
        except INTERRUPTS:
            report.close()
            raise
        report.close()


@dataclass
class Summary:
    """Counts for the summary table, kept as rows stream past (no rows stored)."""

    found: int
    threshold: float
    model: str
    top: int = 5
    scored: int = 0
    fake: int = 0
    errors: int = 0
    faces: int | None = None  # face mode only: faces scored, and files scored whole for want of one
    files_without_faces: int = 0
    started: float = field(default_factory=time.perf_counter)
    elapsed: float = 0.0
    _suspicious: list[tuple[float, str]] = field(default_factory=list)

    @property
    def real(self) -> int:
        return self.scored - self.fake

    @property
    def done(self) -> int:
        return self.scored + self.errors

    def add(self, row: ScanRow, faces: int = 0) -> None:
        """Count a file's result; in face mode, ``faces`` is how many of its faces were scored."""
        self.elapsed = time.perf_counter() - self.started
        if row.score is None:
            self.errors += 1
            return
        if self.faces is not None:
            self.faces += faces
            self.files_without_faces += faces == 0
        self.scored += 1
        if row.label == "fake":
            self.fake += 1
        item = (row.score, row.path)
        if len(self._suspicious) < self.top:
            heapq.heappush(self._suspicious, item)
        else:
            heapq.heappushpop(self._suspicious, item)

    def to_dict(self) -> dict[str, Any]:
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        return {
            "files_found": self.found,
            "scored": self.scored,
            "real": self.real,
            "fake": self.fake,
            "errors": self.errors,
            **(
                {"faces": self.faces, "files_without_faces": self.files_without_faces} if self.faces is not None else {}
            ),
            "threshold": self.threshold,
            "elapsed_seconds": round(self.elapsed, 3),
            "images_per_second": round(rate, 1),
            "most_suspicious": [{"path": path, "score": round(score, 6)} for score, path in self.most_suspicious()],
        }

    def most_suspicious(self) -> list[tuple[float, str]]:
        return sorted(self._suspicious, reverse=True)

    def render(self, console: Console, *, interrupted: bool = False) -> None:
        rate = self.done / self.elapsed if self.elapsed > 0 else 0.0
        title = f"deepscan: stopped after {self.done} of {self.found} files" if interrupted else "deepscan summary"
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(justify="right")
        for name, value in (
            ("files found", self.found),
            ("scored", self.scored),
            ("real", self.real),
            ("fake", self.fake),
            ("errors", self.errors),
            *(
                [("faces", self.faces), ("files without faces", self.files_without_faces)]
                if self.faces is not None
                else []
            ),
            ("threshold", f"{self.threshold:.3f}"),
            ("elapsed", f"{self.elapsed:.1f} s"),
            ("images/s", f"{rate:.1f}"),
            ("model", self.model),
        ):
            table.add_row(name, str(value))
        console.print(table)
        suspicious = self.most_suspicious()
        if suspicious:
            top = Table(title="most suspicious", title_justify="left")
            top.add_column("score", justify="right")
            top.add_column("path", overflow="fold")
            for score, path in suspicious:
                top.add_row(f"{score:.3f}", path)
            console.print(top)
