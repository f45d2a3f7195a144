"""Typed exceptions and the exit codes the CLI maps them to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, stable and documented for CI jobs."""

    OK = 0
    INTERNAL = 1  # an unexpected crash (a bug): never used on purpose
    USAGE = 2  # bad arguments or options, a model or output that cannot be used
    UNREADABLE = 3  # the scan finished, but some files could not be scored
    FAKE_FOUND = 4  # a fake budget (--fail-on-fake, --max-fake...) was exceeded
    BROKEN_PIPE = 141  # stdout closed by the reader (`| head`), as if killed by SIGPIPE
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class DeepscanError(Exception):
    """Base class for errors deepscan reports as one line, without a traceback."""

    exit_code: ExitCode = ExitCode.USAGE


class ModelError(DeepscanError):
    """A model file that is missing, unsafe, corrupt or of the wrong shape."""


class OutputError(DeepscanError):
    """A report destination that cannot be written."""


class DataError(DeepscanError):
    """A training or evaluation folder that is not laid out as expected."""


class OutputClosed(DeepscanError):
    """The reader of stdout went away (``deepscan scan ... | head``): stop quietly."""

    exit_code = ExitCode.BROKEN_PIPE


class Terminated(BaseException):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""


# What stops a run from outside: partial reports are kept on these.
INTERRUPTS = (KeyboardInterrupt, Terminated)
