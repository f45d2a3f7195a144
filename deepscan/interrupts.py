"""Ctrl-C and SIGTERM: exceptions in the main thread, and never lost on their way."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from deepscan.errors import Terminated

_received: list[int] = []


def _raise(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()


@contextmanager
def raised() -> Iterator[None]:
    """While the block runs, SIGINT raises KeyboardInterrupt and SIGTERM raises Terminated (main thread only).

    A SIGINT that was ignored when the process started (a shell's background
    jobs) stays ignored.
    """
    caught = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        caught.append(signal.SIGINT)
    previous = {number: signal.signal(number, _raise) for number in caught}
    _received.clear()
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def raise_if_swallowed() -> None:
    """Raise again a signal that arrived but whose exception never reached the caller.

    Python drops whatever a finalizer raises (a generator closed by the
    garbage collector, a ``__del__``), a signal's exception included: a loop
    that must stop on Ctrl-C or SIGTERM calls this at safe points.
    """
    if _received:
        _raise(_received[-1], None)


@contextmanager
def signals_win() -> Iterator[None]:
    """An error raised after Ctrl-C or SIGTERM arrived is the signal's doing: raise the signal instead.

    A signal can land inside a library's own work (TensorFlow half imported, a
    tf.data iterator torn down) and come out as that library's error; the
    user asked to stop, so the run stops as interrupted and keeps its rows.
    """
    try:
        yield
    except Exception:
        raise_if_swallowed()
        raise


@contextmanager
def deferred() -> Iterator[None]:
    """While the block runs, Ctrl-C and SIGTERM (as ``raised`` handles them) are noted, not raised; the last one
    is raised when the block ends.

    For a library's start-up that a signal must not cut in half: Ray's
    ``ray.init`` interrupted midway left a core worker that crashed the
    process at exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = [number for number in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(number) is _raise]
    previous = {number: signal.signal(number, _note) for number in caught}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    raise_if_swallowed()


def _note(signum: int, frame: object) -> None:
    _received.append(signum)
