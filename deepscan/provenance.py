"""Facts that tie a report row to the exact file and model behind it (--columns)."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image

PROVENANCE_COLUMNS = ("sha256", "bytes", "format", "width", "height", "model")


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def model_identity(path: Path) -> str:
    """A model file as ``name@sha256:<hex>``: the same bytes give the same identity."""
    return f"{path.name}@sha256:{file_digest(path)}"


def provenance(path: str, columns: tuple[str, ...], model: Path, digest: str | None = None) -> dict[str, Any]:
    """The requested provenance columns for one file; values that cannot be read are None."""
    values: dict[str, Any] = dict.fromkeys(columns)
    if "model" in columns:
        values["model"] = model_identity(model)
    try:
        if "bytes" in columns:
            values["bytes"] = os.path.getsize(path)
        if "sha256" in columns:
            values["sha256"] = digest or file_digest(path)
        if {"format", "width", "height"} & set(columns):
            with Image.open(path) as image:  # reads the header only
                values["format"], (values["width"], values["height"]) = image.format, image.size
    except Exception:  # the row's own error column says what is wrong with the file
        pass
    return {column: values[column] for column in columns}
