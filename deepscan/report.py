"""Report writers (CSV, JSON, JSON Lines), reading a report back, atomic output files."""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from enum import Enum
from pathlib import Path
from typing import IO, Any

from deepscan.errors import INTERRUPTS, OutputError
from deepscan.evidence import EVIDENCE_COLUMN, evidence_text
from deepscan.files import umask
from deepscan.record import BASE_COLUMNS, FACE_COLUMNS, MODEL_COLUMN, Record, format_score


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
    """--format, else the file's extension, else CSV on stdout and devices; an extension's contradiction is refused."""
    if is_stdout(destination) or is_special(resolved(destination)):  # type: ignore[arg-type]
        return explicit or OutputFormat.csv
    assert destination is not None
    implied = _EXTENSIONS.get(destination.suffix.lower())
    if explicit is not None and implied is not None and explicit is not implied:
        raise OutputError(
            f"--format {explicit.value} contradicts the extension of {destination} ({implied.value}): "
            "rename the file or drop --format"
        )
    if explicit is None and implied is None:
        raise OutputError(
            f"cannot tell the format of {destination} from its extension: use .csv, .json or .jsonl, or --format"
        )
    return explicit or implied  # type: ignore[return-value]


class CsvFormat:
    """RFC 4180 CSV with '\\n' line ends: a cell holding a comma, quote, '\\n' or '\\r' is quoted.

    (The csv module leaves '\\r' unquoted when lines end in '\\n', which splits a
    name holding a carriage return into two rows.)

    A format is one class: it writes rows to a stream (``write``, then
    ``close``) and reads a report of its own back (``rows``).
    """

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._stream, self._columns = stream, columns
        self._stream.write(_csv_line(columns))

    def write(self, values: dict[str, Any]) -> None:
        self._stream.write(_csv_line([_cell(column, values[column]) for column in self._columns]))

    def close(self) -> None:
        pass

    @staticmethod
    def rows(handle: IO[str]) -> Iterable[dict[str, Any]]:
        return csv.DictReader(handle)


class SpreadsheetCsvFormat(CsvFormat):
    """CSV for spreadsheets (--csv-safe): a text cell that a spreadsheet would run as a formula
    (it starts with = + - @, a tab or a carriage return, as in a file named '=HYPERLINK(...).png') gets a
    leading apostrophe, which shows it as text. Such a report is for people: its paths no longer round-trip."""

    def write(self, values: dict[str, Any]) -> None:
        cells = [_cell(column, values[column]) for column in self._columns]
        self._stream.write(_csv_line([_defused(cell) for cell in cells]))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _defused(cell: Any) -> Any:
    return "'" + cell if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) else cell


def _csv_line(cells: Sequence[Any]) -> str:
    return ",".join(_quoted(str(cell)) for cell in cells) + "\n"


def _quoted(text: str) -> str:
    if any(special in text for special in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _cell(column: str, value: Any) -> Any:
    """A CSV cell: None is empty, a score has six decimals, evidence is its short text, a face box comma-joined."""
    if value is None:
        return ""
    if column == "score":
        return format_score(value)
    if column == EVIDENCE_COLUMN:
        return evidence_text(value)
    return ",".join(map(str, value)) if isinstance(value, list) else value


def _json_object(values: dict[str, Any], columns: Sequence[str]) -> str:
    """One row as a JSON object; the score printed as in CSV (0.000020, not 2e-05)."""
    fields = []
    for column in columns:
        value = values[column]
        text = format_score(value) if column == "score" and value is not None else _json_value(value)
        fields.append(f"{json.dumps(column)}: {text}")
    return "{" + ", ".join(fields) + "}"


def _json_value(value: Any) -> str:
    """UTF-8 JSON text; a file name that is not valid UTF-8 keeps its undecodable bytes as \\udcXX escapes."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


class JsonLinesFormat:
    """One JSON object per line, read back a line at a time (each at most MAX_ROW_CHARS)."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        self._stream, self._columns = stream, columns

    def write(self, values: dict[str, Any]) -> None:
        self._stream.write(_json_object(values, self._columns) + "\n")

    def close(self) -> None:
        pass

    @staticmethod
    def rows(handle: IO[str]) -> Iterable[dict[str, Any]]:
        return (json.loads(line) for line in _bounded_lines(handle) if line.strip())


class JsonFormat(JsonLinesFormat):
    """A JSON array written row by row, so the report never sits in memory; read back whole (MAX_JSON_REPORT_BYTES)."""

    def __init__(self, stream: IO[str], columns: Sequence[str]) -> None:
        super().__init__(stream, columns)
        self._separator = "[\n"

    def write(self, values: dict[str, Any]) -> None:
        self._stream.write(self._separator + _json_object(values, self._columns))
        self._separator = ",\n"

    def close(self) -> None:
        self._stream.write("[]\n" if self._separator == "[\n" else "\n]\n")

    @staticmethod
    def rows(handle: IO[str]) -> Iterable[dict[str, Any]]:
        if os.fstat(handle.fileno()).st_size > MAX_JSON_REPORT_BYTES:
            raise ValueError(f"over {MAX_JSON_REPORT_BYTES >> 20} MiB of JSON: write large reports as JSON Lines")
        rows: list[dict[str, Any]] = json.load(handle)
        return rows


FORMATS = {OutputFormat.csv: CsvFormat, OutputFormat.json: JsonFormat, OutputFormat.jsonl: JsonLinesFormat}


def report_columns(faces: bool, extra: Sequence[str] = (), evidence: bool = False) -> tuple[str, ...]:
    """The columns of a report, in order: path, label, score, error, evidence, face columns in face mode, extras."""
    return BASE_COLUMNS + ((EVIDENCE_COLUMN,) if evidence else ()) + (FACE_COLUMNS if faces else ()) + tuple(extra)


class Report:
    """Records going to one destination in one format; ``flush`` after each batch."""

    def __init__(
        self,
        stream: IO[str],
        fmt: OutputFormat,
        columns: Sequence[str] = BASE_COLUMNS,
        name: str = "the report",
        *,
        spreadsheet_safe: bool = False,
    ) -> None:
        self._stream, self._name = stream, name
        writer = SpreadsheetCsvFormat if spreadsheet_safe and fmt is OutputFormat.csv else FORMATS[fmt]
        with self._errors():
            self._writer = writer(stream, columns)

    def write(self, record: Record) -> None:
        with self._errors():
            self._writer.write(record.values())

    def flush(self) -> None:
        with self._errors():
            self._stream.flush()

    def close(self) -> None:
        with self._errors():
            self._writer.close()
            self._stream.flush()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A write that fails (a full disk) is an OutputError naming the report; a closed pipe stays BrokenPipeError."""
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as err:
            raise OutputError(f"cannot write {self._name}: {err.strerror or err}") from None


def read_report(path: Path, fmt: OutputFormat | None = None) -> dict[str, list[Record]]:
    """The records of a report deepscan wrote, by path (to resume an interrupted scan)."""
    records: dict[str, list[Record]] = {}
    for group in report_files(path, fmt):
        records.setdefault(group[0][0].path, []).extend(record for record, _ in group)
    return records


def report_files(path: Path, fmt: OutputFormat | None = None) -> Iterator[list[tuple[Record, dict[str, Any]]]]:
    """A report's rows as (Record, raw values), grouped by file (a file's rows are consecutive), streamed.

    The raw values keep what a Record does not (the evidence column, as text in CSV).
    """
    fmt = fmt or choose_format(path, None)
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            rows = FORMATS[fmt].rows(handle)
            for _, group in itertools.groupby(((_parsed(values), values) for values in rows), lambda row: row[0].path):
                yield list(group)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, csv.Error) as err:
        raise OutputError(f"cannot read {path}: not a deepscan {fmt.value} report ({err})") from None


MAX_ROW_CHARS = 16 << 20  # a JSON Lines row (CSV fields are bounded by the csv module's field limit)
MAX_JSON_REPORT_BYTES = 256 << 20  # read whole: larger reports belong in JSON Lines, read a row at a time


def _bounded_lines(handle: IO[str]) -> Iterator[str]:
    """Lines of at most MAX_ROW_CHARS: a 1 GiB line is refused, never read into memory."""
    while line := handle.readline(MAX_ROW_CHARS + 1):
        if len(line) > MAX_ROW_CHARS:
            raise ValueError(f"a row over {MAX_ROW_CHARS >> 20} MiB")
        yield line


def _parsed(values: dict[str, Any]) -> Record:
    """A report row back as a Record (CSV cells are text: empty means None)."""

    def value(name: str) -> Any:
        found = values.get(name)
        return None if found in ("", None) else found

    box = value("box")
    if isinstance(box, str):
        box = [int(v) for v in box.split(",")]
    score, face, confidence = value("score"), value("face"), value("face_confidence")
    if score is not None and not 0 <= float(score) <= 1:  # NaN fails too: it would pass any fake budget
        raise ValueError(f"the row of {values['path']!r} has the score {score!r}, not a number from 0 to 1")
    return Record(
        values["path"],
        None if score is None else float(score),
        values["label"] or "",
        values["error"] or "",
        model=value(MODEL_COLUMN) or "",
        face=None if face is None else int(face),
        box=None if box is None else tuple(box),  # type: ignore[arg-type]
        face_confidence=None if confidence is None else float(confidence),
    )


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
def atomic_file(
    target: Path, *, interrupted_to: Path | None = None, keep_interrupted: bool = True
) -> Iterator[IO[str]]:
    """A text file written under a temporary name beside ``target``, then renamed over it.

    The rename happens when the block ends; when it ends with Ctrl-C or
    SIGTERM, what was written is renamed to ``interrupted_to`` instead
    (default: ``target``), unless ``keep_interrupted`` is False (a page
    that is only whole or useless). Any other failure removes the
    temporary file and leaves an existing ``target`` untouched.
    """
    target = Path(target)
    check_destination(target)
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed and renamed by _commit
            "w",
            encoding="utf-8",
            errors="surrogateescape",
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
        if keep_interrupted:
            _commit(handle, interrupted_to or target)
            raise
        handle.close()
        os.unlink(handle.name)
        raise
    except BaseException:
        handle.close()
        os.unlink(handle.name)
        raise
    _commit(handle, target)


def _commit(handle: IO[str], target: Path) -> None:
    try:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.chmod(handle.name, 0o666 & ~umask())
        os.replace(handle.name, target)
    except OSError as err:  # a full or read-only disk: keep what was there, leave no temporary file
        with contextlib.suppress(OSError):
            handle.close()
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None


def write_atomically(target: Path, text: str) -> None:
    """Write a small text file atomically, through symbolic links, and directly to devices and pipes."""
    try:
        with _text_stream(target) as handle:
            handle.write(text)
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None


def partial_path(destination: Path) -> Path:
    """Where an interrupted run keeps its rows when a report is already at ``destination``."""
    return destination.with_name(f"{destination.stem}.partial{destination.suffix}")


def interrupted_destination(destination: Path, resumed_from: Path | None) -> Path:
    """Where the rows of an interrupted run go, so that no report ever ends up shorter than it was.

    A resumed run goes on writing where it resumed from (its rows are a
    superset); otherwise a report already at ``destination`` is left whole and
    the rows go to its partial file, which ``--resume`` continues from.
    """
    if resumed_from is not None:
        return resumed_from
    target = resolved(destination)
    holds_report = target.is_file() and target.stat().st_size > 0
    return partial_path(destination) if holds_report else destination


def resume_source(destination: Path) -> Path:
    """The report ``--resume`` continues: an interrupted run's partial file if there is one, else the report."""
    partial = partial_path(destination)
    return partial if partial.exists() else destination


def resolved(destination: Path) -> Path:
    """The file a path writes to: symbolic links followed, as a shell redirection follows them."""
    return Path(os.path.realpath(destination)) if destination.is_symlink() else destination


def is_special(destination: Path) -> bool:
    """An existing device, FIFO or socket: written directly, never replaced."""
    try:
        mode = os.stat(destination).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _text_stream(destination: Path, interrupted_to: Path | None = None) -> AbstractContextManager[IO[str]]:
    target = resolved(destination)
    if is_special(target):
        return _direct_file(target)
    return atomic_file(target, interrupted_to=interrupted_to and resolved(interrupted_to))


@contextmanager
def _direct_file(target: Path) -> Iterator[IO[str]]:
    """A device or pipe, written as it is (a rename would replace it with a regular file)."""
    try:
        handle = open(target, "w", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None
    try:
        yield handle
    except BaseException:
        with contextlib.suppress(OSError):
            handle.close()
        raise
    try:
        handle.close()
    except OSError as err:
        raise OutputError(f"cannot write {target}: {err.strerror or err}") from None


@contextmanager
def open_report(
    destination: Path | None,
    fmt: OutputFormat,
    columns: Sequence[str] = BASE_COLUMNS,
    *,
    interrupted_to: Path | None = None,
    spreadsheet_safe: bool = False,
) -> Iterator[Report]:
    """Rows to stdout, to a device or pipe directly, or atomically to a file (see atomic_file).

    After Ctrl-C the report is closed properly (a JSON array gets its
    bracket), so a partial report is still a valid one; it goes to
    ``interrupted_to`` if given.
    """
    if is_stdout(destination):
        if sys.stdout is None:
            raise OutputError("stdout is closed: give the report a file with --out")
        sys.stdout.reconfigure(errors="surrogateescape")  # type: ignore[union-attr]  # any file name, as bytes
        stream: AbstractContextManager[IO[str]] = nullcontext(sys.stdout)
    else:
        assert destination is not None
        stream = _text_stream(destination, interrupted_to)
    with stream as handle:
        name = "stdout" if is_stdout(destination) else str(destination)
        report = Report(handle, fmt, columns, name, spreadsheet_safe=spreadsheet_safe)
        try:
            yield report
        except INTERRUPTS:
            report.close()
            raise
        report.close()
