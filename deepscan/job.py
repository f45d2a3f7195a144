"""A whole scan as `deepscan scan` runs it: reuse what is known, score the rest, whole images or faces."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepscan.cache import ScoreCache
from deepscan.faces import FaceFinder, FileVerdict, file_verdicts, scan_faces
from deepscan.model import Detector, load_model, read_spec
from deepscan.scan import DEFAULT_BATCH_SIZE, ScanRow, resolve_threshold, scan_reusing

log = logging.getLogger("deepscan")


@dataclass
class ScanBatch:
    rows: list[tuple[ScanRow, dict[str, Any]]]  # the report's rows, each with its face columns
    verdicts: list[FileVerdict]  # one per file: what the summary counts


@dataclass
class ScanJob:
    """Scoring options plus what can be reused: rows of a report being resumed, a score cache.

    The model is loaded only when a file is left to score; face mode has no
    reuse yet (its rows are per face).
    """

    model_path: Path
    threshold: float | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    trust_model: bool = False
    previous: dict[str, ScanRow] = field(default_factory=dict)
    cache: ScoreCache | None = None
    finder: FaceFinder | None = None
    whole_model_path: Path | None = None  # face mode: scores the files without a face (default: model_path)
    save_crops: Path | None = None

    def __post_init__(self) -> None:
        self.spec = read_spec(self.model_path)
        self.cut = resolve_threshold(self.threshold, self.spec)

    def run(self, images: list[str]) -> Iterator[ScanBatch]:
        if self.finder is not None:
            face_rows = scan_faces(
                images,
                self._load(),
                self.finder,
                whole=self._load(self.whole_model_path) if self.whole_model_path else None,
                threshold=self.threshold,
                batch_size=self.batch_size,
                save_crops=self.save_crops,
            )
            for rows in face_rows:
                yield ScanBatch([(face_row.row, face_row.columns()) for face_row in rows], file_verdicts(rows))
            return
        batches = scan_reusing(images, self._reuse, self._load, threshold=self.threshold, batch_size=self.batch_size)
        for rows in batches:
            if self.cache is not None:
                for row in rows:
                    self.cache.store(row)
            yield ScanBatch([(row, {}) for row in rows], [FileVerdict(row, 0) for row in rows])

    def scored_by(self, row: ScanRow, face_columns: dict[str, Any]) -> Path:
        """The model file of a row (in face mode, readable files without a face may have their own)."""
        if self.whole_model_path is not None and face_columns.get("face") is None and not row.error:
            return self.whole_model_path
        return self.model_path

    def _reuse(self, path: str) -> ScanRow | None:
        if path in self.previous:
            return self.previous[path]
        hit = self.cache.lookup(path) if self.cache is not None else None
        if hit is None:
            return None
        score, error = hit
        return ScanRow(path, score, self.spec.label(score, self.cut) if score is not None else "", error)

    def _load(self, path: Path | None = None) -> Detector:
        path = path or self.model_path
        log.info("loading model %s", path)
        return load_model(path, trust=self.trust_model)
