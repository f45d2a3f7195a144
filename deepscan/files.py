"""Reading input files safely: regular files only, each read once, every failure named."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import BinaryIO

CHUNK = 1 << 20


class ReadError(OSError):
    """A path that cannot be read as a regular file; the message is the report's error text."""


_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file.

    The file is opened without blocking and checked on its descriptor, so a
    FIFO never hangs the caller and a file swapped for a device between a
    check and the open is still refused. Raises ReadError with a reason.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ReadError(describe_read_error(err, path)) from None
    except ValueError:
        raise ReadError("invalid path: it contains a NUL byte") from None
    try:
        problem = _mode_problem(os.fstat(fd).st_mode, path)
        if problem is not None:
            raise ReadError(problem)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def unreadable_reason(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a regular file, from its metadata alone (None: it looks readable).

    Cheap (one stat), so a scan can answer for missing or special files
    without sending them through decoding and the model; the reasons are
    the ones open_regular gives.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        return describe_read_error(err, path)
    except ValueError:
        return "invalid path: it contains a NUL byte"
    return _mode_problem(mode, path)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """A regular file's whole content (see open_regular)."""
    with open_regular(path) as handle:
        return handle.read()


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a regular file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_read_error(err: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """The report's words for a file that could not be opened or read."""
    if isinstance(err, ReadError):
        return str(err)
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, IsADirectoryError):
        return "not a regular file: a directory"
    if err.errno == errno.ENAMETOOLONG:
        return "path too long for the file system"
    if err.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if err.errno == errno.ENXIO and path is not None:  # opening a socket
        try:
            return f"not a regular file: {_kind(os.stat(path).st_mode)}"
        except OSError:
            pass
    return f"cannot read file: {err.strerror or err}"


def _mode_problem(mode: int, path: str | os.PathLike[str]) -> str | None:
    """Why a file of this mode cannot be read as an image (None: a regular file)."""
    if stat.S_ISDIR(mode):
        return _folder_problem(path)
    if not stat.S_ISREG(mode):
        return f"not a regular file: {_kind(mode)}"
    return None


def _folder_problem(path: str | os.PathLike[str]) -> str:
    """Why a folder reached the reader: discovery yields the folders it could not list."""
    try:
        os.scandir(path).close()
    except OSError as err:
        return f"a folder that cannot be listed: {describe_read_error(err, path)}"
    return "not a regular file: a directory"


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
