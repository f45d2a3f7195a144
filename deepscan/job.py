"""A scan from image paths to finished records: the one owner of models, thresholds, reuse and columns.

The flow is the same for the CLI and the library: the job resolves the
model(s) and their thresholds once, takes every file it can from a report
being resumed or from the score cache, hands the rest to a scorer (the
seam where back ends plug in), labels each record by the verdict rule,
adds the extra columns, and yields files in input order, a batch at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from deepscan.cache import ScoreCache
from deepscan.discovery import find_images
from deepscan.errors import OutputError
from deepscan.evidence import EVIDENCE_COLUMN, EvidenceColumn, declares_ai
from deepscan.faces import FaceScorer, FaceSettings, check_detector
from deepscan.files import describe_read_error, read_bytes, unreadable_reason
from deepscan.identity import IDENTITY_COLUMNS, FileIdentity
from deepscan.model import packaged_model
from deepscan.pipeline import Source
from deepscan.record import MODEL_COLUMN, Record
from deepscan.report import OutputFormat, read_report
from deepscan.scorers import DEFAULT_BATCH_SIZE, LocalScorer, ScanModel, Scorer, WholeImageScorer

log = logging.getLogger("deepscan")

EXTRA_COLUMNS = (*IDENTITY_COLUMNS, MODEL_COLUMN)


@dataclass(frozen=True)
class ScanSettings:
    """What a scan's results depend on and how it runs; the defaults are `deepscan scan`'s."""

    model: Path | None = None  # None: the packaged model(s) of the mode
    threshold: float | None = None  # None: each model's own
    batch_size: int = DEFAULT_BATCH_SIZE
    trust_model: bool = False
    faces: FaceSettings | None = None  # None: whole images
    save_crops: Path | None = None
    columns: tuple[str, ...] = ()  # extra columns, from EXTRA_COLUMNS
    cache: Path | None = None
    resume: Path | None = None  # a report to continue: its rows are kept, not scored again
    resume_format: OutputFormat | None = None  # None: from the report's extension
    evidence: bool = True  # read C2PA, IPTC/XMP and generator metadata (the evidence column)

    @property
    def face_margin(self) -> float | None:
        """--face-margin, in face mode (None: each face model's own)."""
        return self.faces.margin if self.faces is not None else None

    def __post_init__(self) -> None:
        unknown = [name for name in self.columns if name not in EXTRA_COLUMNS]
        if unknown:
            raise OutputError(f"unknown column {unknown[0]!r}; choose from {', '.join(EXTRA_COLUMNS)}")
        if self.faces is not None:
            check_detector()


class ColumnProvider(Protocol):
    """Extra per-file columns; a provider reports its own failures in its own columns and never fails a row."""

    columns: tuple[str, ...]

    def values(self, path: str, digest: str | None) -> dict[str, Any]: ...


def scan_models(settings: ScanSettings) -> list[ScanModel]:
    """The models of a scan, threshold resolved: the mode's model first; in face mode, then the whole-image one.

    ``--model`` serves both roles in face mode; otherwise the packaged models do.
    """

    def resolve(path: Path, role: str) -> ScanModel:
        return ScanModel(
            path, role, settings.threshold, trust=settings.trust_model, explicit_margin=settings.face_margin
        )

    if settings.faces is None:
        return [resolve(settings.model or packaged_model(), "whole images")]
    if settings.model is not None:
        return [resolve(settings.model, "faces and whole images")]
    return [resolve(packaged_model(faces=True), "faces"), resolve(packaged_model(), "files without a face")]


def local_scorer(settings: ScanSettings, models: list[ScanModel]) -> LocalScorer:
    """Today's back end on this machine: tf.data whole images, or faces."""
    if settings.faces is None:
        return WholeImageScorer(models[0], settings.batch_size)
    return FaceScorer(models[0], models[-1], settings.faces, settings.batch_size, settings.save_crops)


Backend = Callable[[ScanSettings, list[ScanModel]], Scorer]


@dataclass
class ScannedFile:
    """A file's finished records: one, or one per face; ``origin`` says where they came from."""

    records: list[Record]
    origin: str = "scanned"  # "scanned" now (or found unreadable), "cache", or "resumed" from the report

    @property
    def path(self) -> str:
        return self.records[0].path

    @property
    def verdict(self) -> Record:
        """The record that decides the file: its most suspicious face, or its only record."""
        return max(self.records, key=lambda record: -1.0 if record.score is None else record.score)

    @property
    def faces(self) -> int:
        return sum(record.face is not None for record in self.records)


@dataclass
class _Entry:
    path: str
    known: list[Record] | None  # from the resumed report or the cache; None: left to the scorer
    digest: str | None = None  # of the bytes handed to the scorer, when the cache hashed them
    origin: str = "scanned"


@dataclass
class ScanJob:
    """One scan: ``run`` yields batches of finished files; ``close`` releases the cache.

    ``backend`` builds the scorer (default: this machine); ``status`` hears
    what the job is doing ("loading model", "scanning") for a progress display.
    """

    settings: ScanSettings = field(default_factory=ScanSettings)
    backend: Backend = local_scorer
    status: Callable[[str], None] = lambda _: None

    def __post_init__(self) -> None:
        self.models = scan_models(self.settings)
        self.scorer = self.backend(self.settings, self.models)
        self._by_identity = {model.identity: model for model in self.models}
        identity = tuple(c for c in self.settings.columns if c in IDENTITY_COLUMNS)
        self.providers: list[ColumnProvider] = [FileIdentity(identity)] if identity else []
        if self.settings.evidence:
            self.providers.append(EvidenceColumn())
        self.cache = ScoreCache(self.settings.cache, self.scorer.cache_key) if self.settings.cache else None
        self.previous = self._read_previous()
        self._finished: set[str] = set()

    @property
    def device(self) -> str | None:
        """Where the models ran (CPU, a GPU's name, a cluster); None when no model had to be loaded."""
        return self.scorer.device

    def __enter__(self) -> ScanJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            log.info("cache: %d hits, %d misses", self.cache.hits, self.cache.misses)

    def run(self, paths: Iterable[str]) -> Iterator[list[ScannedFile]]:
        """Finished files in the order of ``paths``, a batch at a time.

        Files known from the resumed report or the cache come out without a
        model; the scorer (and TensorFlow) starts only if a file is left.
        """
        queue: deque[_Entry] = deque()

        def sources() -> Iterator[Source]:
            for path in paths:
                entry, source = self._plan(path)
                queue.append(entry)
                if source is not None:
                    yield source

        left = sources()
        first = next(left, None)  # plans every file up to the first one left to score
        if first is None:
            yield from self._chunks(self._known(queue, until_empty=True))
            yield from self._carried_over()
            return
        yield from self._chunks(self._known(queue))
        self.status("loading model")
        scored = self.scorer.score(_chained(first, left))
        for records in scored:
            self.status("scanning")
            files: list[ScannedFile] = []
            fresh: list[tuple[str, list[Record]]] = []
            for group in _by_file(records):
                files += self._known(queue)
                entry = queue.popleft()
                assert entry.known is None and entry.path == group[0].path, "scorer broke the order"
                if entry.digest is not None and not _transient(group):
                    fresh.append((entry.digest, group))
                files.append(self._finish(group, entry.digest))
            if self.cache is not None:
                self.cache.store(fresh)
            yield files
        yield from self._chunks(self._known(queue, until_empty=True))
        yield from self._carried_over()

    def _carried_over(self) -> Iterator[list[ScannedFile]]:
        """The resumed report's rows for paths this scan was not given, kept after its own: a mistyped folder
        never costs a report."""
        kept = self.unfinished_kept()
        if kept:
            log.warning(
                "kept %d files' rows of %s that are not among this scan's inputs", len(kept), self.settings.resume
            )
        yield from self._chunks(kept)

    def verdict(self, record: Record) -> Record:
        """The verdict rule, the one place a label is decided.

        A file whose own metadata declares generative AI is fake whatever its
        score (the score stays the model's); otherwise a score at or above
        the model's threshold is fake. Metadata never makes a file real.
        """
        if declares_ai(record.columns.get(EVIDENCE_COLUMN, [])):
            return replace(record, label="fake")
        if record.score is None:
            return replace(record, label="")
        model = self._by_identity[record.model]
        return replace(record, label=model.spec.label(record.score, model.threshold))

    def _plan(self, path: str) -> tuple[_Entry, Source | None]:
        """What is known of a file already, or what the scorer must read."""
        kept = self.previous.get(path)
        if kept is not None:
            return _Entry(path, kept, origin="resumed"), None
        reason = unreadable_reason(path)  # missing and special files need no decoding and no model
        if reason is not None:
            return self._unreadable(path, reason), None
        if self.cache is None or not self.cache.usable:
            return _Entry(path, None), Source(path)
        try:
            data = read_bytes(path)  # read once: hashed here, decoded by the scorer
        except OSError as err:  # not cached: it says nothing about any content
            return self._unreadable(path, describe_read_error(err, path)), None
        digest = hashlib.sha256(data).hexdigest()
        hit = self.cache.lookup(path, digest)
        if hit is not None:
            return _Entry(path, hit, digest, "cache"), None
        return _Entry(path, None, digest), Source(path, data)

    def _unreadable(self, path: str, reason: str) -> _Entry:
        return _Entry(path, [Record(path, error=reason, model=self.models[0].identity)])

    def _known(self, queue: deque[_Entry], *, until_empty: bool = False) -> list[ScannedFile]:
        """Finish the known files at the head of the queue (all of it, at the end)."""
        files = []
        while queue and (until_empty or queue[0].known is not None):
            entry = queue.popleft()
            assert entry.known is not None
            files.append(self._finish(entry.known, entry.digest, entry.origin))
        return files

    def unfinished_kept(self) -> list[ScannedFile]:
        """The resumed report's files not yielded yet: an interrupted run writes them too, so none is lost."""
        previous = self.previous.items()
        return [self._finish(records, None, "resumed") for path, records in previous if path not in self._finished]

    def _finish(self, records: list[Record], digest: str | None, origin: str = "scanned") -> ScannedFile:
        columns = self._columns(records[0].path, digest)
        self._finished.add(records[0].path)
        return ScannedFile([self.verdict(replace(record, columns=columns)) for record in records], origin)

    def _columns(self, path: str, digest: str | None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for provider in self.providers:
            try:
                values.update(provider.values(path, digest))
            except Exception as err:  # a provider never fails a row
                log.warning("%s: %s failed: %s", path, type(provider).__name__, err)
                values.update(dict.fromkeys(provider.columns))
        return values

    def _chunks(self, files: list[ScannedFile]) -> Iterator[list[ScannedFile]]:
        size = self.settings.batch_size
        for start in range(0, len(files), size):
            yield files[start : start + size]

    def mark_interrupted(self, report: Path) -> None:
        """Note beside an interrupted report which models scored it, so --resume can refuse to mix in another."""
        with contextlib.suppress(OSError):
            resume_marker(report).write_text(json.dumps([model.identity for model in self.models]))

    def _read_previous(self) -> dict[str, list[Record]]:
        report = self.settings.resume
        if report is None or not report.exists():
            return {}
        marker = resume_marker(report)
        if marker.exists():
            scored_by = json.loads(marker.read_text())
            if scored_by != [model.identity for model in self.models]:
                raise OutputError(self._foreign_model(report, scored_by[0]))
        previous = read_report(report, self.settings.resume_format)
        for path, records in previous.items():
            for record in records:
                if record.model and record.model not in self._by_identity:
                    raise OutputError(self._foreign_model(report, record.model))
            previous[path] = [replace(record, model=record.model or self._assumed_model(record)) for record in records]
        return previous

    def _assumed_model(self, record: Record) -> str:
        """For a report without a model column: the face model scored faces, the last model files without one."""
        whole_image_row = record.face is None and record.score is not None
        return self.models[-1 if whole_image_row else 0].identity

    def _foreign_model(self, report: Path, model: str) -> str:
        ours = ", ".join(sorted({m.identity.split("@")[0] for m in self.models}))
        return (
            f"cannot resume {report}: its rows were scored by {model.split('@')[0] or 'another model'}, "
            f"this scan uses {ours}; rescan without --resume, or resume with the same --model"
        )


def resume_marker(report: Path) -> Path:
    """The note an interrupted run leaves beside its report: the identities of the models that scored it."""
    return report.with_name(f".{report.name}.models.json")


def _chained(first: Source, rest: Iterator[Source]) -> Iterator[Source]:
    yield first
    yield from rest


def _by_file(records: list[Record]) -> Iterator[list[Record]]:
    """Split a scorer's batch into files: a file's records are consecutive, its first has face None or 0."""
    group: list[Record] = []
    for record in records:
        if group and record.face in (None, 0):
            yield group
            group = []
        group.append(record)
    if group:
        yield group


def _transient(records: list[Record]) -> bool:
    """A failure that says nothing about the content (so it must not be cached)."""
    return any(record.error.startswith(("out of memory", "cannot read file")) for record in records)


def scan(
    paths: Iterable[str | os.PathLike[str]],
    settings: ScanSettings | None = None,
    *,
    recursive: bool = True,
) -> Iterator[Record]:
    """Every record `deepscan scan` would write for ``paths`` (files and folders), in the same order.

    ``settings`` carries the model, threshold, face mode, extra columns,
    cache and resume exactly as the command's options do.
    """
    with ScanJob(settings or ScanSettings()) as job:
        for files in job.run(list(find_images(paths, recursive=recursive))):
            for scanned in files:
                yield from scanned.records
