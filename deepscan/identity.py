"""File identity columns (--columns sha256,bytes,format,width,height): the exact file behind a row."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

from deepscan.files import file_digest, open_regular

IDENTITY_COLUMNS = ("sha256", "bytes", "format", "width", "height")


@dataclass(frozen=True)
class FileIdentity:
    """A column provider: the requested identity columns of a file; what cannot be read is None.

    The row's own ``error`` column says why a file could not be read, so
    this provider adds no error column of its own.
    """

    columns: tuple[str, ...]

    def values(self, path: str, digest: str | None) -> dict[str, Any]:
        values: dict[str, Any] = dict.fromkeys(self.columns)
        try:
            if "bytes" in self.columns:
                values["bytes"] = os.stat(path).st_size
            if "sha256" in self.columns:
                values["sha256"] = digest or file_digest(path)
            if {"format", "width", "height"} & set(self.columns):
                with open_regular(path) as handle, Image.open(handle) as image:  # reads the header only
                    values["format"], (values["width"], values["height"]) = image.format, image.size
        except Exception:  # unreadable: the row's error column says why
            pass
        return values
