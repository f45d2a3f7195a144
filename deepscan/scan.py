"""The scanning job as a library: image paths in, one scored row per file out."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from deepscan.model import Detector, ModelSpec, load_model
from deepscan.pipeline import Perturbation, image_batches

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class ScanRow:
    """One input file's result: a score and label, or an error."""

    path: str
    score: float | None = None
    label: str = ""
    error: str = ""


def resolve_threshold(explicit: float | None, spec: ModelSpec) -> float:
    """The threshold to use: an explicit option wins over the model's own."""
    return spec.threshold if explicit is None else explicit


def scan_batches(
    paths: Iterable[str | os.PathLike[str]],
    detector: Detector | None = None,
    *,
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    perturb: Perturbation | None = None,
) -> Iterator[list[ScanRow]]:
    """Score image files batch by batch, streaming through tf.data.

    Yields a list of rows per batch, in the order of ``paths``, as soon as
    the batch is scored, so callers can write results without holding them.
    Unreadable files come back as rows with an ``error`` and no score.
    ``perturb`` degrades each decoded image first (robustness tests).
    """
    detector = detector or load_model()
    cut = resolve_threshold(threshold, detector.spec)
    spec = detector.spec
    for batch_paths, pixels, errors in image_batches(paths, spec.image_size, batch_size, perturb):
        scores = detector.predict(pixels)
        rows = []
        for raw_path, score, raw_error in zip(batch_paths.numpy(), scores, errors.numpy(), strict=True):
            path = os.fsdecode(raw_path)
            if raw_error:
                rows.append(ScanRow(path, error=raw_error.decode()))
            else:
                value = float(score)
                rows.append(ScanRow(path, value, spec.label(value, cut)))
        yield rows


def scan(
    paths: Iterable[str | os.PathLike[str]],
    model: Detector | str | os.PathLike[str] | None = None,
    *,
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[ScanRow]:
    """Score image files one row at a time (see scan_batches).

    ``model`` is a loaded Detector, a model file, or None for the default.
    Directories are not walked here: pass the output of find_images().
    """
    detector = model if isinstance(model, Detector) else load_model(model)
    for rows in scan_batches(paths, detector, threshold=threshold, batch_size=batch_size):
        yield from rows


def scan_reusing(
    paths: list[str],
    reuse: Callable[[str], ScanRow | None],
    load: Callable[[], Detector],
    *,
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[list[ScanRow]]:
    """Rows for ``paths`` in order, taking each row ``reuse`` knows instead of scoring it.

    ``reuse`` is asked about every path first (a previous report, a cache);
    the model is loaded with ``load`` only if some path is left to score,
    so a fully reused run never starts TensorFlow. Rows come in lists of
    about ``batch_size``, as soon as each is complete.
    """
    known = [reuse(path) for path in paths]
    missing = [path for path, row in zip(paths, known, strict=True) if row is None]
    fresh: Iterator[ScanRow] = iter(())
    if missing:
        detector = load()
        fresh = (
            row for rows in scan_batches(missing, detector, threshold=threshold, batch_size=batch_size) for row in rows
        )
    pending: list[ScanRow] = []
    for row in known:
        pending.append(row if row is not None else next(fresh))
        if len(pending) >= batch_size:
            yield pending
            pending = []
    if pending:
        yield pending
