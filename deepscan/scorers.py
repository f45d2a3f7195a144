"""The scorer seam: files in, unlabelled records out, one implementation per back end.

A scan job hands a scorer the files left to score (after resume and the
cache) and gets back, a batch at a time and in the same order, one or more
records per file: a score and the model that gave it, or an error. Labels
are not a scorer's business: the job applies the verdict rule.

A local scorer is two stages: ``decoder()`` turns one file into what its
model reads (a picklable function, so that another back end can run it
elsewhere), ``score_decoded`` turns a chunk of those into records. Here
tf.data runs the first in parallel; on a cluster (``ray_scorer``) tasks run
it and actors the second, and the cluster back end is transport only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from deepscan.model import Detector, ModelSpec, load_model, model_identity, read_spec
from deepscan.pipeline import Perturbation, Source, decode_or_error, image_batches
from deepscan.record import Record
from deepscan.runtime import device_name

log = logging.getLogger("deepscan")

DEFAULT_BATCH_SIZE = 64


@dataclass
class ScanModel:
    """A model as a scan uses it: file, spec, threshold and face-crop margins resolved once, loaded on first use."""

    path: Path
    role: str  # what it scores: "whole images", "faces", ...
    explicit_threshold: float | None = None  # --threshold, if given
    trust: bool = False
    explicit_margin: float | None = None  # --face-margin, if given
    spec: ModelSpec = field(init=False)
    threshold: float = field(init=False)
    margins: list[float] = field(init=False)  # each view's face-crop margin (face mode)
    _detector: Detector | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.spec = read_spec(self.path)
        # The threshold rule, applied here and nowhere else: an explicit option wins over the model's own.
        self.threshold = self.spec.threshold if self.explicit_threshold is None else self.explicit_threshold
        self.margins = self.spec.crop_margins(self.explicit_margin)

    @cached_property
    def identity(self) -> str:
        return model_identity(self.path)

    @property
    def loaded(self) -> bool:
        return self._detector is not None

    def detector(self) -> Detector:
        if self._detector is None:
            log.info("loading model %s", self.path)
            self._detector = load_model(self.path, trust=self.trust)
        return self._detector


class Scorer(Protocol):
    """What the scan job needs of a back end."""

    cache_key: str  # what the scores depend on besides the file: a cache entry is valid only under the same key

    @property
    def device(self) -> str | None:
        """Where the models ran (CPU, a GPU's name, a cluster); None before any model was loaded."""
        ...

    def models(self) -> list[ScanModel]:
        """The models whose identities the records carry."""
        ...

    def score(self, sources: Iterable[Source]) -> Iterator[list[Record]]:
        """Records for ``sources`` in order, a batch at a time; every file gets one at least; no labels."""
        ...


Decoder = Callable[[str, "bytes | None"], Any]  # (path, the file's bytes if read already) -> decoded, or error text


class LocalScorer(Scorer, Protocol):
    """A scorer of this machine, in two stages other back ends can run apart."""

    def decoder(self) -> Decoder:
        """The first stage: one file as the model reads it, or the error text (picklable: it may run elsewhere)."""
        ...

    def score_decoded(self, chunk: list[tuple[str, Any]]) -> list[Record]:
        """The second stage: records for decoded files (the decoder's results, error texts included), in order."""
        ...


@dataclass
class WholeImageScorer:
    """Each file decoded, resized to the model's input and scored whole, through tf.data."""

    model: ScanModel
    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    def cache_key(self) -> str:
        return self.model.identity

    @property
    def device(self) -> str | None:
        return device_name() if self.model.loaded else None

    def models(self) -> list[ScanModel]:
        return [self.model]

    def score(self, sources: Iterable[Source]) -> Iterator[list[Record]]:
        yield from score_files(sources, self.model.detector(), self.batch_size, model=self.model.identity)

    def decoder(self) -> Decoder:
        return partial(decode_whole, size=self.model.spec.image_size)

    def score_decoded(self, chunk: list[tuple[str, Any]]) -> list[Record]:
        readable = [pixels for _, pixels in chunk if not isinstance(pixels, str)]
        scores = self.model.detector().predict(np.stack(readable)) if readable else ()
        errors = [pixels if isinstance(pixels, str) else "" for _, pixels in chunk]
        return _records([path for path, _ in chunk], errors, scores, self.model.identity)


def decode_whole(path: str, data: bytes | None, size: int) -> np.ndarray | str:
    """A file (or its bytes) decoded and resized as the tf.data pipeline does it, or the error text."""
    pixels, error = decode_or_error(os.fsencode(path), size, data=data)
    return error.decode() if error else pixels


def score_files(
    sources: Iterable[Source | str],
    detector: Detector,
    batch_size: int = DEFAULT_BATCH_SIZE,
    perturb: Perturbation | None = None,
    *,
    model: str = "",
) -> Iterator[list[Record]]:
    """Unlabelled records for image files, a batch at a time, streaming through tf.data.

    Unreadable files come back with an ``error`` and never reach the model.
    ``perturb`` degrades each decoded image first (robustness tests);
    ``model`` is the identity the records carry.
    """
    spec = detector.spec
    for batch_paths, pixels, errors in image_batches(sources, spec.image_size, batch_size, perturb):
        messages = errors.numpy()
        readable = messages == b""
        scores: Iterable[float] = ()
        if readable.all():
            scores = detector.predict(pixels)
        elif readable.any():
            scores = detector.predict(pixels.numpy()[readable])
        paths = [os.fsdecode(raw_path) for raw_path in batch_paths.numpy()]
        yield _records(paths, [message.decode() for message in messages], scores, model)


def _records(paths: list[str], errors: list[str], scores: Iterable[float], model: str) -> list[Record]:
    """Each file's record: its error, or the next of ``scores`` (the readable files', in order)."""
    left = iter(scores)
    return [
        Record(path, error=error, model=model) if error else Record(path, float(next(left)), model=model)
        for path, error in zip(paths, errors, strict=True)
    ]
