"""Face mode: find the faces in each image (MTCNN), score each face crop.

The detector is the ``mtcnn`` package, whose wheel carries its weights, so
it works offline; it is an optional dependency (``deepscan-audit[faces]``).
Images are decoded once at a working size (longest side at most
DETECT_SIDE), faces are detected on a batch of them at a time, and every
crop is scored by the same model and batching as whole images.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from deepscan.errors import DeepscanError
from deepscan.files import ReadError, read_bytes
from deepscan.model import Detector
from deepscan.pipeline import ImageError, ImageInput, Source, decode_image, open_image, source_dataset
from deepscan.record import Record
from deepscan.report import write_atomically
from deepscan.runtime import device_name, tensorflow
from deepscan.scorers import DEFAULT_BATCH_SIZE, ScanModel

DETECT_SIDE = 1024  # longest side of the image faces are detected and cropped in
MISSING_DETECTOR = "--faces needs the face detector: pip install 'deepscan-audit[faces]'"


@dataclass(frozen=True)
class FaceSettings:
    """How faces are found and cropped: the one place their defaults live."""

    # Pixels in the original image; smaller faces are ignored. The models learnt faces of 114 px and more: one of
    # under 64 px, upscaled twice as much as any of them, holds too little detail (and gave false alarms).
    min_face_size: int = 64
    max_faces: int = 10  # per image, most confident first
    margin: float | None = None  # around each face, as a fraction of its size; None: the face model's own


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the original image's pixels
    confidence: float


@dataclass
class WorkingImage:
    pixels: np.ndarray  # upright RGB, longest side <= DETECT_SIDE
    scale: float  # original pixels per working pixel
    whole: np.ndarray | None = None  # the file as a plain scan decodes it, for the whole-image model


def load_working_image(source: ImageInput, whole_size: int | None = None) -> WorkingImage:
    """Decode once for detection and cropping; raises ImageError like decode_image.

    With ``whole_size``, the same bytes are also decoded exactly as a plain scan decodes them, at
    that size: a file without a face is scored on those pixels, so it gets a plain scan's score.
    """

    def shrink(image: Image.Image, original: tuple[int, int]) -> WorkingImage:
        image.thumbnail((DETECT_SIDE, DETECT_SIDE), Image.Resampling.BILINEAR)
        return WorkingImage(np.asarray(image, dtype=np.uint8), original[0] / image.size[0])

    if whole_size is None:
        return open_image(source, (DETECT_SIDE, DETECT_SIDE), shrink)
    if not isinstance(source, bytes):
        try:
            source = read_bytes(source)  # read once, decoded twice
        except ReadError as err:
            raise ImageError(str(err)) from None
    working = open_image(source, (DETECT_SIDE, DETECT_SIDE), shrink)
    working.whole = decode_image(source, whole_size)
    return working


def check_detector() -> None:
    """Raise the usage error for a missing face detector now, before any work starts."""
    if importlib.util.find_spec("mtcnn") is None:
        raise DeepscanError(MISSING_DETECTOR)


class FaceFinder:
    """MTCNN with deepscan's bounds: the smallest face worth scoring, and at most max_faces per image."""

    def __init__(self, settings: FaceSettings = FaceSettings()) -> None:
        tensorflow()  # quiet TensorFlow start-up first
        try:
            from mtcnn import MTCNN
        except ImportError:
            raise DeepscanError(MISSING_DETECTOR) from None
        self._mtcnn = MTCNN()  # all three stages: the last (ONet) removes most false boxes
        self.settings = settings

    def find(self, images: list[WorkingImage]) -> list[list[Face]]:
        """Faces per image, most confident first, boxes in original pixels.

        Images of the same shape go to MTCNN together; mixing shapes would make
        it pad them, and mtcnn 1.0 then misplaces the boxes of the padded ones.
        """
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            by_shape.setdefault(image.pixels.shape, []).append(index)
        faces: list[list[Face]] = [[] for _ in images]
        for members in by_shape.values():
            # mtcnn 1.0's own min_face_size above its default of 20 finds nothing: filter afterwards.
            found = self._mtcnn.detect_faces([images[i].pixels for i in members])
            for index, detections in zip(members, found, strict=True):
                faces[index] = self._faces(images[index], detections)
        return faces

    def _faces(self, image: WorkingImage, detections: list[dict]) -> list[Face]:
        faces = [Face(tuple(round(v * image.scale) for v in d["box"]), float(d["confidence"])) for d in detections]
        faces = [face for face in faces if min(face.box[2:]) >= self.settings.min_face_size]
        return sorted(faces, key=lambda face: -face.confidence)[: self.settings.max_faces]


def crop_face(image: WorkingImage, face: Face | None, size: int, margin: float) -> np.ndarray:
    """The face with a margin around it, square, resized to the model's input (no face: the whole image).

    The square stays inside the picture: moved in where it would cross an edge,
    and no larger than the picture's shorter side, so a crop never holds pixels
    the picture does not have (a face that fills its picture gives the picture).
    """
    picture = Image.fromarray(image.pixels)
    if face is not None:
        x, y, w, h = (v / image.scale for v in face.box)
        side = min(max(w, h) * (1 + 2 * margin), *picture.size)
        left = min(max(x + w / 2 - side / 2, 0), picture.width - side)
        top = min(max(y + h / 2 - side / 2, 0), picture.height - side)
        picture = picture.crop(tuple(round(v) for v in (left, top, left + side, top + side)))
    return np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def face_views(image: WorkingImage, face: Face | None, size: int, margins: list[float]) -> np.ndarray:
    """The face cropped at each margin, side by side: the input of a model of several views (one: crop_face)."""
    return np.concatenate([crop_face(image, face, size, margin) for margin in margins], axis=1)


def detect_once(
    paths: list[str],
    finder: FaceFinder,
    cache_file: Path,
    chunk: int = 16,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Face | None]:
    """The most confident face of each image (None: no face, or unreadable), detected once.

    Detections are kept in ``cache_file`` (JSON), so a resumed or repeated
    training run does not detect again; epochs read cached crops anyway.
    ``progress`` hears how many of the images not detected before are done.
    """
    known: dict[str, Face | None] = {}
    if cache_file.exists():
        for path, value in json.loads(cache_file.read_text()).items():
            known[path] = None if value is None else Face(tuple(value[:4]), value[4])
    missing = [path for path in paths if path not in known]
    for start in range(0, len(missing), chunk):
        images: dict[str, WorkingImage] = {}
        for path in missing[start : start + chunk]:
            try:
                images[path] = load_working_image(path)
            except ImageError:
                known[path] = None
        for path, faces in zip(images, finder.find(list(images.values())), strict=True):
            known[path] = faces[0] if faces else None
        progress(min(start + chunk, len(missing)), len(missing))
    if missing:
        stored = {path: None if face is None else [*face.box, face.confidence] for path, face in known.items()}
        write_atomically(cache_file, json.dumps(stored))
    return {path: known[path] for path in paths}


@dataclass
class _Pending:
    path: str
    error: str = ""
    faces: list[Face] = field(default_factory=list)


@dataclass
class FaceScorer:
    """Face mode behind the scorer seam: a record per face, the whole image where none is found.

    Decoding runs in parallel in tf.data; MTCNN sees a list of images per
    call; the crops of a batch go through the model together. A file with
    no face gives one record (face None) scored on the whole image by the
    ``whole`` model. A views model gets each face cropped once per view, side
    by side. A file's records always come in one batch.
    """

    faces: ScanModel
    whole: ScanModel
    settings: FaceSettings = FaceSettings()
    batch_size: int = DEFAULT_BATCH_SIZE
    save_crops: Path | None = None
    _finder: FaceFinder | None = field(default=None, init=False, repr=False)

    @property
    def cache_key(self) -> str:
        return json.dumps({"faces": self.faces.identity, "whole": self.whole.identity, **asdict(self.settings)})

    def models(self) -> list[ScanModel]:
        return [self.faces, self.whole]

    @property
    def device(self) -> str | None:
        return device_name() if self.faces.loaded or self.whole.loaded else None

    def score(self, sources: Iterable[Source]) -> Iterator[list[Record]]:
        size = self.whole.spec.image_size
        for chunk in _decoded_chunks(tensorflow(), sources, max(1, self.batch_size // 4), size):
            yield self.score_decoded(chunk)

    def decoder(self) -> Callable[[str, bytes | None], WorkingImage | str]:
        return partial(decode_working, whole_size=self.whole.spec.image_size)

    def score_decoded(self, chunk: list[tuple[str, WorkingImage | str]]) -> list[Record]:
        """Records for decoded files (path, working image or error text), in order: detect, crop, score."""
        if self._finder is None:
            self._finder = FaceFinder(self.settings)
        finder, detector, whole = self._finder, self.faces.detector(), self.whole.detector()
        margins = self.faces.margins
        pending, images = [], []
        for path, image in chunk:
            pending.append(_Pending(path, error=image if isinstance(image, str) else ""))
            if not isinstance(image, str):
                images.append(image)
        found = iter(finder.find(images))
        face_crops: list[np.ndarray] = []
        whole_crops: list[np.ndarray] = []
        readable = iter(images)
        for item in pending:
            if item.error:
                continue
            image, item.faces = next(readable), next(found)
            if item.faces:
                face_crops += [face_views(image, face, detector.spec.image_size, margins) for face in item.faces]
            else:
                assert image.whole is not None, "face mode decodes each file for the whole-image model too"
                whole_crops.append(image.whole)
        face_scores, whole_scores = _scored(face_crops, detector), _scored(whole_crops, whole)
        records: list[Record] = []
        scored_crops: list[np.ndarray] = []
        for item in pending:
            if item.error:
                records.append(Record(item.path, error=item.error, model=self.faces.identity))
                continue
            if not item.faces:
                crop, score = next(whole_scores)
                records.append(Record(item.path, score, model=self.whole.identity))
                scored_crops.append(crop)
            for index, face in enumerate(item.faces):
                crop, score = next(face_scores)
                records.append(
                    Record(
                        item.path,
                        score,
                        model=self.faces.identity,
                        face=index,
                        box=face.box,
                        face_confidence=face.confidence,
                    )
                )
                scored_crops.append(crop)
        if self.save_crops is not None:
            _save_crops(self.save_crops, records, scored_crops)
        return records


def _scored(crops: list[np.ndarray], detector: Detector) -> Iterator[tuple[np.ndarray, float]]:
    """(crop, score) pairs, the crops scored together."""
    scores = detector.predict(np.stack(crops)) if crops else []
    return zip(crops, map(float, scores), strict=True)


def decode_working(path: str, data: bytes | None, whole_size: int) -> WorkingImage | str:
    """A file (or its bytes) as the working image faces are found in (and its whole image), or the error text."""
    try:
        return load_working_image(path if data is None else data, whole_size)
    except ImageError as err:
        return str(err)


def _decoded_chunks(
    tf: ModuleType, sources: Iterable[Source], chunk: int, whole_size: int
) -> Iterator[list[tuple[str, WorkingImage | str]]]:
    """(path, working image or error text) in order, decoded in parallel by tf.data."""

    def decode(path: bytes, data: bytes, has_data: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, bytes]:
        image = decode_working(os.fsdecode(path), data if has_data else None, whole_size)
        if isinstance(image, str):
            blank = np.zeros((1, 1, 3), np.uint8)
            return blank, np.float32(1), np.zeros((whole_size, whole_size, 3), np.uint8), image.encode()
        return image.pixels, np.float32(image.scale), image.whole, b""

    def mapped(path: tf.Tensor, data: tf.Tensor, has_data: tf.Tensor) -> tuple[tf.Tensor, ...]:
        types = [tf.uint8, tf.float32, tf.uint8, tf.string]
        pixels, scale, whole, error = tf.numpy_function(decode, [path, data, has_data], types)
        return path, pixels, scale, whole, error

    dataset = source_dataset(sources)
    dataset = dataset.map(mapped, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(chunk)
    batch: list[tuple[str, WorkingImage | str]] = []
    for path, pixels, scale, whole, error in dataset.as_numpy_iterator():
        value: WorkingImage | str = error.decode() if error else WorkingImage(pixels, float(scale), whole)
        batch.append((os.fsdecode(path), value))
        if len(batch) == chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def _save_crops(folder: Path, records: list[Record], crops: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    scored = [record for record in records if record.score is not None]
    for record, crop in zip(scored, crops, strict=True):
        name = f"{Path(record.path).stem}.{hashlib.sha256(os.fsencode(record.path)).hexdigest()[:8]}"
        suffix = "whole" if record.face is None else f"face{record.face}"
        Image.fromarray(crop).save(folder / f"{name}.{suffix}.png")
