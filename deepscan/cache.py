"""A SQLite cache of a file's records keyed by its content and the scorer, for cheap re-audits (--cache).

A cache must never cost a report: if it cannot be opened, read or written
(a full or read-only disk, a corrupt file, another scan holding a lock too
long), the scan goes on without it and says so once on stderr.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from deepscan.record import Record

log = logging.getLogger("deepscan")

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    sha256 TEXT NOT NULL,   -- of the file's bytes, hashed from the very bytes that were decoded
    scorer TEXT NOT NULL,   -- Scorer.cache_key: the model(s) and settings the records depend on
    records TEXT NOT NULL,  -- JSON list: score, error, model, face, box, face_confidence of each record
    PRIMARY KEY (sha256, scorer)
)
"""
FIELDS = ("score", "error", "model", "face", "box", "face_confidence")
APPLICATION_ID = 0x64736361  # "dsca" in the SQLite header: this file is a deepscan cache
BUSY_TIMEOUT_S = 30.0


class ScoreCache:
    """The records of file contents under one scorer.

    A renamed or copied file hits; a changed file, or another model or face
    setting, misses. Only decoded content is stored: a file that could not
    be read at all is never cached. Writes are short transactions, one per
    batch, so scores are kept as they come and scans can share a cache.
    """

    def __init__(self, path: Path, scorer: str) -> None:
        self.path, self.scorer = path, scorer
        self.hits = self.misses = 0
        self._lock = threading.Lock()  # lookups come from the decoding thread, writes from the job's
        self._db: sqlite3.Connection | None = None
        self._warned_unreadable = False
        try:
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            self._claim(self._db)
        except sqlite3.Error as err:
            self._give_up(err)

    @staticmethod
    def _claim(db: sqlite3.Connection) -> None:
        """Create the table in a new database; refuse one that holds anything but a deepscan cache."""
        with db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            (owner,) = db.execute("PRAGMA application_id").fetchone()
            columns = [row[1] for row in db.execute("PRAGMA table_info(results)")]
            ours = owner == APPLICATION_ID or (owner == 0 and tables == {"results"})
            if tables and not (ours and columns == ["sha256", "scorer", "records"]):
                shown = ", ".join(sorted(tables)[:5])
                raise sqlite3.DatabaseError(f"not a deepscan cache (it holds the tables {shown}); choose another file")
            db.execute(SCHEMA)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    @property
    def usable(self) -> bool:
        return self._db is not None

    def lookup(self, path: str, digest: str) -> list[Record] | None:
        """The cached records of this content, relabelled with ``path``; None on a miss."""
        with self._lock:
            if self._db is None:
                return None
            try:
                found = self._db.execute(
                    "SELECT records FROM results WHERE sha256 = ? AND scorer = ?", (digest, self.scorer)
                ).fetchone()
            except sqlite3.Error as err:
                self._give_up(err)
                return None
        records = None if found is None else self._records(path, found[0])
        if records is None:
            self.misses += 1
            return None
        self.hits += 1
        return records

    def _records(self, path: str, text: str) -> list[Record] | None:
        """A cached row's records; None (a miss, said once) for a row this version cannot read."""
        try:
            return [_record(path, values) for values in json.loads(text)]
        except (ValueError, TypeError, AttributeError) as err:
            if not self._warned_unreadable:
                self._warned_unreadable = True
                log.warning("cache %s holds rows deepscan cannot read (%s): scoring those files again", self.path, err)
            return None

    def store(self, entries: Iterable[tuple[str, list[Record]]]) -> None:
        """Keep (digest, records) pairs, in one short transaction."""
        rows = [(digest, self.scorer, json.dumps([_values(r) for r in records])) for digest, records in entries]
        with self._lock:
            if self._db is None or not rows:
                return
            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", rows)
            except sqlite3.Error as err:
                self._give_up(err)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _give_up(self, err: sqlite3.Error) -> None:
        log.warning("cache %s cannot be used (%s): scanning without it", self.path, err)
        if self._db is not None:
            self._db.close()
        self._db = None


def _values(record: Record) -> dict[str, object]:
    return {name: getattr(record, name) for name in FIELDS}


def _record(path: str, values: dict[str, object]) -> Record:
    box = values.get("box")
    return Record(path, **{**values, "box": tuple(box) if box else None})  # type: ignore[arg-type]
