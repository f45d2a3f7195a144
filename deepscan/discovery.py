"""Paths in, image paths out: recursion, extension filter, order, de-duplication."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

from deepscan.pipeline import decodable_extensions

IMAGE_EXTENSIONS = decodable_extensions()


def is_image_name(name: str) -> bool:
    """True when a file name has an image extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def find_images(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Iterator[str]:
    """Yield the image files under ``inputs``, each path once, in a stable order.

    Every path found or given is yielded once, so each gets its row: two
    names of one file (a hard link, a symbolic link) are two paths. Directories
    are walked in name order (recursively unless told otherwise), following
    symbolic links but never entering a directory twice, so a link cycle
    cannot loop. Inside directories, files count by extension:
    every format the installed Pillow can decode (IMAGE_EXTENSIONS). A file
    named explicitly is always yielded, and so is a path that does not
    exist: scanning reports it as an error row instead of losing it.

    ``include``/``exclude`` are glob patterns, as ``fd`` and ``rg -g`` take
    them: a pattern without '/' matches a file's name; one with '/' matches
    its path relative to the folder given (``sub/*.jpg``) or its path as
    found (``*/sub/*``). With includes, a file must match one; a file that
    matches an exclude is dropped.
    """
    seen_files: set[str] = set()  # absolute paths
    seen_dirs: set[tuple[int, int]] = set()  # (device, inode)
    for item in inputs:
        path = os.fspath(item)
        is_dir = os.path.isdir(path)
        found = _walk(path, recursive, seen_dirs, seen_files) if is_dir else iter([path])
        for candidate in found:
            relative = os.path.relpath(candidate, path) if is_dir else candidate
            if _wanted(candidate, relative, include, exclude) and (candidate != path or _first_path(path, seen_files)):
                yield candidate


def _wanted(path: str, relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    def matches(pattern: str) -> bool:
        if "/" not in pattern:
            return fnmatch.fnmatch(os.path.basename(path), pattern)
        return fnmatch.fnmatch(relative, pattern.removeprefix("./")) or fnmatch.fnmatch(path, pattern)

    if include and not any(matches(p) for p in include):
        return False
    return not any(matches(p) for p in exclude)


def read_path_list(stream: IO[bytes], *, null: bool = False) -> list[str]:
    """Paths from a list: one per line, separated by '\\n' alone, or NUL-separated as ``find -print0`` writes.

    The list is read as bytes and each name decoded as the file system does
    (``os.fsdecode``), so a name that is not valid UTF-8 is kept exactly,
    whatever the locale. Empty entries are skipped.
    """
    data = stream.read()
    parts = data.split(b"\0") if null else data.split(b"\n")
    return [os.fsdecode(part) for part in parts if part.strip()]


def _walk(top: str, recursive: bool, seen_dirs: set[tuple[int, int]], seen_files: set[str]) -> Iterator[str]:
    """Image files under ``top`` in name order, depth first, without recursion (any depth is fine).

    A folder that cannot be listed is yielded itself: it becomes an error row saying why.
    """
    if not _first_visit(top, seen_dirs):
        return
    listing = _listing(top)
    if listing is None:
        yield top
        return
    stack = [iter(listing)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
        elif _is_dir(entry):
            if recursive and _first_visit(entry.path, seen_dirs):
                listing = _listing(entry.path)
                if listing is None:
                    yield entry.path
                else:
                    stack.append(iter(listing))
        elif is_image_name(entry.name) and _first_path(entry.path, seen_files):
            yield entry.path


def _listing(directory: str) -> list[os.DirEntry[str]] | None:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError:
        return None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _first_path(path: str, seen: set[str]) -> bool:
    """Record a file by its absolute path; False if that path was seen before."""
    key = os.path.abspath(path)
    if key in seen:
        return False
    seen.add(key)
    return True


def _first_visit(path: str, seen: set[tuple[int, int]]) -> bool:
    """Record a directory by identity (a link to it is the same directory); False if it was seen before."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # missing, dangling, or a name with a NUL byte
        return True  # keep it: it becomes an error row
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True
