"""The summary of a scan: counts kept as files stream past, a Rich table for people, a dict for dashboards."""

from __future__ import annotations

import datetime
import heapq
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from deepscan import __version__
from deepscan.evidence import EVIDENCE_COLUMN, declares_ai
from deepscan.record import Record
from deepscan.scorers import ScanModel

SHOWN_FAILURES = 5
SHOWN_INPUTS = 10
EVIDENCE_KINDS = {"c2pa": "C2PA manifest", "xmp": "IPTC/XMP", "png": "generator metadata", "exif": "generator metadata"}


# Control characters (terminal escape sequences begin with one) and bidi overrides that could reorder a line.
UNSHOWABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain(value: object) -> Text:
    """A string from a file (its name, its metadata) as terminal text: never Rich markup, never a control sequence.

    Unshowable characters are written as escapes (``\\x1b``, ``\\u202e``), so the text stays legible and whole.
    """
    return Text(UNSHOWABLE.sub(lambda found: found.group().encode("unicode_escape").decode(), str(value)))


@dataclass
class Summary:
    """What a scan found, counted per file (in face mode, a file's verdict is its most suspicious face)."""

    found: int
    models: list[ScanModel]
    faces_mode: bool = False
    inputs: list[str] = field(default_factory=list)  # what the scan was given, as the user named it
    top: int = 5
    scored: int = 0
    real: int = 0
    fake: int = 0
    errors: int = 0
    evidence: Counter[str] = field(default_factory=Counter)  # files by kind of metadata evidence
    faces: int = 0  # face mode: faces scored
    files_without_faces: int = 0  # face mode: readable files scored whole for want of a face
    known: Counter[str] = field(default_factory=Counter)  # files not scored now: "resumed", "cache"
    failures: list[tuple[str, str]] = field(default_factory=list)  # the first few (path, error)
    device: str | None = None  # where the models ran; None when none had to be loaded
    destination: str | None = None  # the report file, once written
    started: float = field(default_factory=time.perf_counter)
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )
    elapsed: float = 0.0
    _suspicious: list[tuple[float, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.scored + self.errors

    def add(self, verdict: Record, faces: int = 0, origin: str = "scanned") -> None:
        """Count a file by the record that decides it; ``faces``: how many of its faces were scored; ``origin``:
        "scanned" now, or known from the "cache" or the "resumed" report.

        A file declared AI-made by its metadata counts as fake even when it could not be scored.
        """
        self.elapsed = time.perf_counter() - self.started
        if origin != "scanned":
            self.known[origin] += 1
        self.fake += verdict.label == "fake"
        self.real += verdict.label == "real"
        self._count_evidence(verdict.columns.get(EVIDENCE_COLUMN) or [])
        if verdict.score is None:
            self.errors += 1
            if len(self.failures) < SHOWN_FAILURES:
                self.failures.append((verdict.path, verdict.error))
            return
        self.faces += faces
        self.files_without_faces += faces == 0
        self.scored += 1
        item = (verdict.score, verdict.path)
        if len(self._suspicious) < self.top:
            heapq.heappush(self._suspicious, item)
        else:
            heapq.heappushpop(self._suspicious, item)

    def _count_evidence(self, items: list[dict[str, Any]]) -> None:
        kinds = {EVIDENCE_KINDS.get(item["source"], item["source"]) for item in items if item["detail"] != "unreadable"}
        flags = {
            "declared AI-made": declares_ai(items),
            "C2PA manifest invalid": any(item["status"].startswith("invalid") for item in items),
            "metadata unreadable": any(item["detail"] == "unreadable" for item in items),
        }
        self.evidence.update(kinds | {name for name, present in flags.items() if present})

    def most_suspicious(self) -> list[tuple[float, str]]:
        return sorted(self._suspicious, reverse=True)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        face_counts = {"faces": self.faces, "files_without_faces": self.files_without_faces}
        return {
            "created": self.created,
            "deepscan_version": __version__,
            "inputs": self.inputs,
            "files_found": self.found,
            "scored": self.scored,
            "real": self.real,
            "fake": self.fake,
            "errors": self.errors,
            "carried_over": self.known["resumed"],
            "from_cache": self.known["cache"],
            **(face_counts if self.faces_mode else {}),
            "evidence": dict(sorted(self.evidence.items())),
            "threshold": self.models[0].threshold,
            "model": self.models[0].identity,
            "models": [
                {
                    "role": model.role,
                    "model": model.identity,
                    "threshold": model.threshold,
                    "trained_on": model.spec.trained_on,
                }
                for model in self.models
            ],
            "device": self.device,
            "report": self.destination,
            "elapsed_seconds": round(self.elapsed, 3),
            "images_per_second": round(self.rate, 1),
            "most_suspicious": [{"path": path, "score": round(score, 6)} for score, path in self.most_suspicious()],
            "failures": [{"path": path, "error": error} for path, error in self.failures],
        }

    def facts(self) -> list[tuple[str, str]]:
        """The summary as (name, value) lines, for the table and the HTML report."""
        counts = [("files found", self.found), ("scored", self.scored), ("real", self.real), ("fake", self.fake)]
        counts.append(("errors", self.errors))
        if self.faces_mode:
            counts += [("faces", self.faces), ("files without faces", self.files_without_faces)]
        lines = [(name, str(value)) for name, value in counts]
        if self.known["resumed"]:
            lines.append(("carried over", f"{self.known['resumed']} (rows of the resumed report, not scored again)"))
        if self.known["cache"]:
            lines.append(("from cache", f"{self.known['cache']} (unchanged files, not scored again)"))
        if self.evidence:
            lines.append(("evidence", ", ".join(f"{kind} {count}" for kind, count in sorted(self.evidence.items()))))
        for model in self.models:
            lines.append(("model", f"{model.path.name} ({model.role}), threshold {model.threshold:.3f}"))
            lines.append(("trained on", model.spec.trained_on))
        lines.append(("device", self.device or self._why_no_device()))
        lines.append(("elapsed", f"{self.elapsed:.1f} s ({self.rate:.1f} images/s)"))
        return lines

    def provenance(self) -> list[tuple[str, str]]:
        """When, by which deepscan and of what the scan was made (the models are in ``facts``), for the HTML page."""
        shown = ", ".join(self.inputs[:SHOWN_INPUTS]) + (
            f" and {len(self.inputs) - SHOWN_INPUTS} more" if len(self.inputs) > SHOWN_INPUTS else ""
        )
        return [("made", f"{self.created} by deepscan {__version__}"), ("scanned", shown)]

    def _why_no_device(self) -> str:
        if self.done == 0:
            return "none (no file to score)"
        if sum(self.known.values()) == self.done:
            return "none (every file was already known)"
        return "none (no file needed it)"

    def render(self, console: Console, *, interrupted: bool = False) -> None:
        title = f"deepscan: stopped after {self.done} of {self.found} files" if interrupted else "deepscan summary"
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for name, value in self.facts():
            table.add_row(name, plain(value))
        console.print(table)
        if self.failures:
            console.print("[bold]could not be scored[/]")
            for path, error in self.failures:
                console.print(plain(f"  {path}: {error}"), highlight=False, soft_wrap=True)
            if self.errors > len(self.failures):
                console.print(f"  ... and {self.errors - len(self.failures)} more (see their error rows)")
        suspicious = self.most_suspicious()
        if suspicious:
            top = Table(title="most suspicious", title_justify="left")
            top.add_column("score", justify="right")
            top.add_column("path", overflow="fold")
            for score, path in suspicious:
                top.add_row(f"{score:.3f}", plain(path))
            console.print(top)
        if self.destination:
            done = f"kept the rows so far in {self.destination} (continue with --resume)" if interrupted else "wrote"
            line = done if interrupted else f"{done} {self.destination}"
            console.print(plain(line), highlight=False, soft_wrap=True)
