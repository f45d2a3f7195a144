"""Paths in, image paths out: recursion, extension filter, order, de-duplication."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def is_image_name(name: str) -> bool:
    """True when a file name has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def find_images(inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = True) -> Iterator[str]:
    """Yield the image files under ``inputs``, each file once, in a stable order.

    Directories are walked in name order (recursively unless told otherwise),
    following symbolic links but never entering a directory twice, so a
    link cycle cannot loop. Inside directories only image extensions count;
    a file named explicitly is always yielded, and so is a path that does
    not exist: scanning reports it as an error row instead of losing it.
    """
    seen_files: set[tuple[int, int]] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for item in inputs:
        path = os.fspath(item)
        if os.path.isdir(path):
            yield from _walk(path, recursive, seen_dirs, seen_files)
        elif _first_visit(path, seen_files):
            yield path


def _walk(
    directory: str, recursive: bool, seen_dirs: set[tuple[int, int]], seen_files: set[tuple[int, int]]
) -> Iterator[str]:
    if not _first_visit(directory, seen_dirs):
        return
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError:
        yield directory  # cannot be listed: reported as an error row rather than skipped
        return
    for entry in entries:
        if _is_dir(entry):
            if recursive:
                yield from _walk(entry.path, recursive, seen_dirs, seen_files)
        elif is_image_name(entry.name) and _first_visit(entry.path, seen_files):
            yield entry.path


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _first_visit(path: str, seen: set[tuple[int, int]]) -> bool:
    """Record a file or directory by identity; False if it was seen before."""
    try:
        info = os.stat(path)
    except OSError:
        return True  # missing or dangling: keep it, it becomes an error row
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True
