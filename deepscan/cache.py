"""A SQLite cache of scores keyed by file content and model, for cheap re-audits (--cache)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from deepscan.errors import OutputError
from deepscan.pipeline import describe_read_error
from deepscan.provenance import file_digest
from deepscan.scan import ScanRow

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    sha256 TEXT NOT NULL,      -- of the file's bytes
    model TEXT NOT NULL,       -- model_identity(): name and sha256 of the model file
    score REAL,                -- probability of fake; NULL when the file could not be decoded
    error TEXT NOT NULL,       -- why it could not be decoded; '' when scored
    PRIMARY KEY (sha256, model)
)
"""


class ScoreCache:
    """Scores (or decode errors) of file contents under one model.

    A renamed or copied file hits; a changed file, or any other model, misses.
    Files that cannot even be read are never cached.
    """

    def __init__(self, path: Path, model: str) -> None:
        self.model = model
        self.hits = self.misses = 0
        self._digests: dict[str, str] = {}
        self._missed: set[str] = set()  # paths to store once scored
        try:
            self._db = sqlite3.connect(path)
            self._db.execute(SCHEMA)
        except sqlite3.Error as err:
            raise OutputError(f"cannot use cache {path}: {err}") from None

    def digest(self, path: str) -> str | None:
        """The content hash this cache computed for ``path``, if any."""
        return self._digests.get(path)

    def lookup(self, path: str) -> tuple[float | None, str] | None:
        """(score, error) for the file's current content, or None on a miss.

        A file that cannot be read gives (None, reason) and is not cached.
        """
        try:
            digest = file_digest(path)
        except OSError as err:
            return None, describe_read_error(err)
        self._digests[path] = digest
        found = self._db.execute(
            "SELECT score, error FROM scores WHERE sha256 = ? AND model = ?", (digest, self.model)
        ).fetchone()
        if found is None:
            self.misses += 1
            self._missed.add(path)
            return None
        self.hits += 1
        return found[0], found[1]

    def store(self, row: ScanRow) -> None:
        """Remember a freshly scored row; rows that came from the cache, or never asked it, are skipped."""
        if row.path in self._missed:
            digest = self._digests[row.path]
            self._db.execute(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", (digest, self.model, row.score, row.error)
            )

    def close(self) -> None:
        self._db.commit()
        self._db.close()
