"""One report row: what a scan says about a file, or about one face in it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BASE_COLUMNS = ("path", "label", "score", "error")
FACE_COLUMNS = ("face", "box", "face_confidence")
MODEL_COLUMN = "model"


@dataclass(frozen=True)
class Record:
    """A file's (or a face's) score and label, or why it could not be scored.

    ``model`` names the model that scored it (``name@sha256:...``; on an
    error row, the run's model). In face mode ``face`` is the face's index,
    most confident first, or None when no face was found and the whole image
    was scored. ``columns`` holds the values of the extra column providers.
    """

    path: str
    score: float | None = None
    label: str = ""
    error: str = ""
    model: str = ""
    face: int | None = None
    box: tuple[int, int, int, int] | None = None
    face_confidence: float | None = None
    columns: Mapping[str, Any] = field(default_factory=dict)

    def values(self) -> dict[str, Any]:
        """Every column as a plain value (the score rounded to 6 decimals, the box as a list)."""
        return {
            "path": self.path,
            "label": self.label,
            "score": None if self.score is None else round(self.score, 6),
            "error": self.error,
            MODEL_COLUMN: self.model,
            "face": self.face,
            "box": None if self.box is None else list(self.box),
            "face_confidence": None if self.face_confidence is None else round(self.face_confidence, 4),
            **self.columns,
        }


def format_score(score: float) -> str:
    """The one way a score is printed, in CSV and JSON alike: six fixed decimals (0.000020, never 2e-05)."""
    return f"{score:.6f}"
