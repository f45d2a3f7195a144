"""A scan's output, owned by one object for its whole life.

``ScanOutput`` opens the report (an atomic file, a device or pipe, or
stdout), takes over the rows of a report being resumed, writes each batch of
finished files, keeps the summary and the HTML report's entries, and at the
end writes the HTML page and the summary JSON and decides the exit code. On
Ctrl-C or SIGTERM it leaves what the README promises: every row so far, the
resumed report's included, in a valid report at ``--out``, or beside it in
``<name>.partial.<ext>`` when a report was already there, with a note of
the models so that ``--resume`` continues with the same ones.

``scan_to_report`` is the whole of `deepscan scan` for library users.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deepscan.discovery import find_images
from deepscan.errors import INTERRUPTS, ExitCode, OutputClosed, OutputError
from deepscan.html_report import EntryStore, entries_from_records, thumbnail_folder, write_html
from deepscan.interrupts import raise_if_swallowed, signals_win
from deepscan.job import Backend, ScanJob, ScannedFile, ScanSettings, local_scorer, resume_marker
from deepscan.report import (
    OutputFormat,
    Report,
    check_destination,
    choose_format,
    interrupted_destination,
    is_special,
    is_stdout,
    open_report,
    partial_path,
    report_columns,
    resolved,
    resume_source,
    write_atomically,
)
from deepscan.summary import Summary

log = logging.getLogger("deepscan")


@dataclass(frozen=True)
class OutputSettings:
    """Where a scan's results go, and what makes its exit code 4; the defaults are `deepscan scan`'s."""

    out: Path | None = None  # the report file; None or '-': stdout
    format: OutputFormat | None = None  # None: from out's extension (CSV on stdout)
    resume: bool = False  # continue the report at out (or its partial file): its rows are kept, not scored again
    csv_safe: bool = False  # CSV for spreadsheets: formula-like cells shown as text
    html: Path | None = None  # an HTML report too, thumbnails in a folder beside it
    explain: int = 0  # Grad-CAM heat maps of the N most suspicious files in the HTML report
    summary_json: Path | None = None  # the summary as JSON too ('-': stdout)
    fail_on_fake: bool = False
    max_fake: int | None = None
    max_fake_fraction: float | None = None

    def __post_init__(self) -> None:
        for name in ("out", "html", "summary_json"):  # a library user may give strings
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def fmt(self) -> OutputFormat:
        return choose_format(self.out, self.format)

    def check(self) -> None:
        """Refuse, before any work, what could not be written or does not go together (OutputError)."""
        if self.resume and is_stdout(self.out):
            raise OutputError("--resume needs --out FILE: the report it continues")
        if self.summary_json is not None and is_stdout(self.summary_json) and is_stdout(self.out):
            raise OutputError("--summary-json - needs --out FILE: the report already goes to stdout")
        if sys.stdout is None and (is_stdout(self.out) or (self.summary_json and is_stdout(self.summary_json))):
            raise OutputError("stdout is closed: write the report and the summary to files (--out, --summary-json)")
        if self.csv_safe and (self.fmt is not OutputFormat.csv or self.resume):
            raise OutputError("--csv-safe writes CSV for spreadsheets: not with another --format, nor with --resume")
        if self.explain and self.html is None:
            raise OutputError("--explain draws heat maps into the HTML report: give --html FILE")
        for destination in (self.out, self.summary_json, self.html):
            check_destination(destination)

    def scan_settings(self, settings: ScanSettings) -> ScanSettings:
        """``settings`` with the report to resume, when there is one."""
        resume = resume_source(self.out) if self.resume and self.out is not None else None
        return replace(settings, resume=resume, resume_format=self.fmt)


Finished = Callable[[Summary, bool], None]  # the summary, and whether the scan was interrupted


class ScanOutput:
    """One scan's output: ``with ScanOutput(...) as output``, ``output.write`` each batch of files.

    When the block ends the report is complete (or, after Ctrl-C or SIGTERM,
    kept as the module docstring says), the HTML page and the summary JSON
    are written, ``finished`` has been told, and ``exit_code`` is set.
    """

    def __init__(
        self,
        settings: OutputSettings,
        job: ScanJob,
        found: int,
        inputs: Sequence[str] = (),
        finished: Finished = lambda summary, interrupted: None,
    ) -> None:
        self.settings, self.job, self.finished = settings, job, finished
        faces = job.settings.faces is not None
        self.summary = Summary(found=found, models=job.models, faces_mode=faces, inputs=list(inputs))
        out = settings.out
        self.to_file = out is not None and not is_stdout(out) and not is_special(resolved(out))
        self.interrupted_to = interrupted_destination(out, job.settings.resume) if self.to_file else None
        self.columns = report_columns(faces, job.settings.columns, job.settings.evidence)
        self.exit_code = ExitCode.OK
        self._report: Report | None = None
        self._store: EntryStore | None = None
        self._lifetime: contextlib.AbstractContextManager[ScanOutput] | None = None

    def refuse_clashes(self, images: Sequence[str]) -> None:
        """No output may be a file being scanned, a folder holding one, or another output (OutputError)."""
        html = self.settings.html
        refuse_clashing_outputs(
            {
                "--out": self.settings.out,
                "--summary-json": self.settings.summary_json,
                "--html": html,
                "--html's folder": thumbnail_folder(html) if html is not None else None,
                "--save-crops": self.job.settings.save_crops,
                "--cache": self.job.settings.cache,
            },
            images,
        )

    def __enter__(self) -> ScanOutput:
        self._lifetime = self._life()
        return self._lifetime.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        assert self._lifetime is not None
        try:
            return self._lifetime.__exit__(*exc)
        finally:
            if self._store is not None:
                self._store.close()

    def write(self, files: list[ScannedFile]) -> None:
        """A batch of finished files: their rows to the report (flushed, for pipelines), the summary, the page."""
        assert self._report is not None, "write inside the with block"
        for scanned in files:
            self._write_file(scanned)
        if self._store is not None:
            for entry in entries_from_records(files):
                self._store.add(entry)
        self._report.flush()
        raise_if_swallowed()

    @contextmanager
    def _life(self) -> Iterator[ScanOutput]:
        settings = self.settings
        self._store = EntryStore() if settings.html is not None else None
        try:
            opened = open_report(
                settings.out,
                settings.fmt,
                self.columns,
                interrupted_to=self.interrupted_to,
                spreadsheet_safe=settings.csv_safe,
            )
            with opened as self._report:
                try:
                    with signals_win():
                        yield self
                        raise_if_swallowed()  # before the report is renamed into place as complete
                except INTERRUPTS:
                    for scanned in self.job.unfinished_kept():  # rows kept from the report are never lost
                        self._write_file(scanned)
                    raise
        except INTERRUPTS:
            if self.interrupted_to is not None:
                self.job.mark_interrupted(self.interrupted_to)
            self._finish(interrupted=True)
            raise
        except BrokenPipeError:
            raise OutputClosed() from None
        if self.to_file:
            assert settings.out is not None
            partial = partial_path(settings.out)
            for leftover in (partial, resume_marker(settings.out), resume_marker(partial)):
                leftover.unlink(missing_ok=True)  # superseded by the finished report
        self._finish(interrupted=False)

    def _write_file(self, scanned: ScannedFile) -> None:
        assert self._report is not None
        for record in scanned.records:
            self._report.write(record)
        self.summary.add(scanned.verdict, scanned.faces, scanned.origin)
        if scanned.verdict.error:
            log.info("%s: %s", scanned.path, scanned.verdict.error)

    def _finish(self, interrupted: bool) -> None:
        summary, settings = self.summary, self.settings
        summary.device = self.job.device
        where = self.interrupted_to if interrupted and self.interrupted_to is not None else settings.out
        summary.destination = None if is_stdout(settings.out) else str(where)
        if not interrupted and self._store is not None and settings.html is not None:
            self._write_page(settings.html, self._store)
        self.finished(summary, interrupted)
        self.exit_code = exit_code(summary, settings)
        if settings.summary_json is not None:
            figures = {**summary.to_dict(), "interrupted": interrupted, "exit_code": int(self.exit_code)}
            try:
                _write_summary(settings.summary_json, json.dumps(figures, indent=2) + "\n")
            except OutputError as err:
                log.warning("%s (the report itself is complete)", err)

    def _write_page(self, page: Path, store: EntryStore) -> None:
        from deepscan.explain import explainer  # TensorFlow's Grad-CAM: only for heat maps

        heat = explainer(self.job.models) if self.settings.explain else None
        facts = [*self.summary.provenance(), ("this page", str(page.absolute())), *self.summary.facts()]
        write_html(
            page,
            store,
            facts,
            explain=heat,
            explain_count=self.settings.explain,
            threshold=self.job.models[0].threshold,
        )


@dataclass
class ScanEvents:
    """What `deepscan scan` shows while a scan runs: the job's stage, the files found, each batch finished."""

    status: Callable[[str], None] = lambda text: None
    found: Callable[[int], None] = lambda count: None
    advanced: Callable[[int], None] = lambda count: None
    finished: Finished = lambda summary, interrupted: None


def scan_to_report(
    paths: Iterable[str | os.PathLike[str]],
    output: OutputSettings,
    settings: ScanSettings | None = None,
    *,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    backend: Backend = local_scorer,
    named: Sequence[str] | None = None,
    events: ScanEvents | None = None,
) -> ScanOutput:
    """`deepscan scan` as a function: find the images under ``paths``, score them, write the report and the rest.

    Returns the finished output (its ``summary`` and ``exit_code``); raises
    OutputError for what cannot be written, and lets Ctrl-C and SIGTERM
    through once the rows so far are kept. ``named``: the inputs as the
    user gave them, for the page and the summary (default: ``paths``).
    """
    events = events or ScanEvents()
    output.check()
    paths = [os.fspath(path) for path in paths]
    with ScanJob(output.scan_settings(settings or ScanSettings()), backend=backend, status=events.status) as job:
        images = list(find_images(paths, recursive=recursive, include=include, exclude=exclude))
        if not images:
            log.warning("no image found in the given paths: nothing to scan")
        events.found(len(images))
        result = ScanOutput(output, job, len(images), paths if named is None else named, events.finished)
        result.refuse_clashes(images)
        with result:
            for files in job.run(images):
                result.write(files)
                events.advanced(len(files))
    return result


def refuse_clashing_outputs(outputs: dict[str, Path | None], images: list[str]) -> None:
    """No output may be a file being scanned, a folder holding one, or another output: one would overwrite the other.

    ``outputs`` maps each option to its path (files, and the folders --html and --save-crops write into).
    Devices, pipes and stdout are written through and never replaced, so they may repeat.
    """
    named = {
        option: path
        for option, path in outputs.items()
        if path is not None and not is_stdout(path) and not is_special(resolved(path))
    }
    real = {option: os.path.realpath(path) for option, path in named.items()}
    claimed: dict[str, str] = {}
    for option, where in real.items():
        if where in claimed:
            raise OutputError(f"{option} {named[option]} is also {claimed[where]}'s path: give each output its own")
        claimed[where] = option
    identities = {}
    for option, path in named.items():
        with contextlib.suppress(OSError):
            found = os.stat(path)
            identities[(found.st_dev, found.st_ino)] = option
    folders = [(real[option] + os.sep, option) for option in named if option in ("--save-crops", "--html's folder")]
    if not identities and not folders:
        return  # no existing output file and no output folder: nothing a scanned file could be
    for image in images:
        with contextlib.suppress(OSError, ValueError):
            found = os.stat(image)
            option = identities.get((found.st_dev, found.st_ino))
            if option is not None:
                raise OutputError(f"{option} {named[option]} is one of the files being scanned: choose another path")
        where = os.path.realpath(image) if folders else ""
        for folder, option in folders:
            if where.startswith(folder):
                raise OutputError(
                    f"{option} {named[option]} holds a file being scanned ({image}): choose another folder"
                )


def exit_code(summary: Summary, settings: OutputSettings) -> ExitCode:
    """4 when a fake budget is exceeded, else 3 when files could not be scored, else 0."""
    fraction = summary.fake / summary.scored if summary.scored else 0.0
    if (
        (settings.fail_on_fake and summary.fake > 0)
        or (settings.max_fake is not None and summary.fake > settings.max_fake)
        or (settings.max_fake_fraction is not None and fraction > settings.max_fake_fraction)
    ):
        return ExitCode.FAKE_FOUND
    return ExitCode.UNREADABLE if summary.errors else ExitCode.OK


def _write_summary(destination: Path, text: str) -> None:
    if is_stdout(destination):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomically(destination, text)
