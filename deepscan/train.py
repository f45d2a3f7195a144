"""Training: labelled datasets, augmentation, the callback-driven loop, threshold choice."""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from deepscan.errors import INTERRUPTS, DataError
from deepscan.evaluate import (
    GROUP_PATTERN,
    Evaluation,
    ScoredSet,
    calibration_error,
    choose_threshold,
    group_keys,
    labelled_images,
    report_card,
    roc_auc,
)
from deepscan.faces import FaceFinder, crop_face, detect_once, load_working_image
from deepscan.model import DEFAULT_FACE_MARGIN, ModelSpec, build_model, load_model, model_identity, save_model
from deepscan.pipeline import decode_map, gaussian_blur
from deepscan.runtime import tensorflow

# This module is imported only to train, so it loads TensorFlow up front.
tf = tensorflow()
import keras  # noqa: E402


@dataclass
class Augmentation:
    """Training-only augmentation; a zero (or False) turns a transform off."""

    rotation: float = 0.0  # fraction of a full turn (0.05 = +/-18 degrees)
    shift: float = 0.0  # fraction of the image size (every source's, unless TrainConfig.source_shifts)
    flip: bool = True
    brightness: float = 0.2  # fraction of the 0..255 range
    jpeg: float = 0.3  # probability of JPEG re-compression at quality 30..100 (Wang et al. 2020)
    blur: float = 0.3  # probability of Gaussian blur with sigma 0..3 (Wang et al. 2020)


SCHEDULES = ("cosine", "plateau")
Status = Callable[[str, int, "int | None"], None]  # what is being done, steps done, steps in all (None: unknown)


@dataclass
class TrainConfig:
    arch: str = "compact"
    image_size: int | None = None  # default: the architecture's own
    epochs: int = 24
    batch_size: int = 32
    learning_rate: float = 1e-3
    # "cosine": the rate decays to 0 over all epochs, which all run, and the last weights are kept;
    # "plateau": halved when val_loss stalls, early stopping after `patience`, the best weights kept.
    schedule: str = "cosine"
    val_split: float = 0.15
    group_pattern: str = GROUP_PATTERN  # files whose names share a match are one group (a video), split together
    patience: int = 10
    seed: int = 1234
    target_fpr: tuple[float, ...] = ()  # one rate for every source, or one per source; (): best balanced accuracy
    augmentation: Augmentation = field(default_factory=Augmentation)
    crop: int | None = None  # train on random crops of this size (fully convolutional archs)
    faces: bool = False  # train on face crops, found as scan --faces finds them
    face_margin: float = DEFAULT_FACE_MARGIN
    cache_file: str = ""  # "" caches decoded images in memory
    resume: bool = False
    tensorboard: Path | None = None
    trained_on: str = ""  # what the model covers, in a few words; default: the sources' names
    source_weights: tuple[float, ...] = ()  # each source's share of an epoch's draws; (): equal shares
    source_shifts: tuple[float, ...] = ()  # each source's random shift; (): augmentation.shift for all
    init_from: str = ""  # a deepscan model of the same architecture and size to start from (fine-tuning)


@dataclass
class Split:
    train_paths: list[str]
    train_labels: list[int]
    val_paths: list[str]
    val_labels: list[int]

    def counts(self) -> dict[str, dict[str, int]]:
        def count(labels: list[int]) -> dict[str, int]:
            return {"real": labels.count(0), "fake": labels.count(1)}

        return {"train": count(self.train_labels), "val": count(self.val_labels)}

    def without(self, excluded: set[str]) -> Split:
        """The same split minus some files (the unreadable ones)."""

        def keep(paths: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
            pairs = [(p, y) for p, y in zip(paths, labels, strict=True) if p not in excluded]
            return [p for p, _ in pairs], [y for _, y in pairs]

        return Split(*keep(self.train_paths, self.train_labels), *keep(self.val_paths, self.val_labels))


def split_dataset(data_dir: str | Path, val_split: float, seed: int, group_pattern: str = "") -> Split:
    """DATA_DIR/{train,val}/{real,fake}, or DATA_DIR/{real,fake} split by a seeded draw of groups.

    A group is the files whose names share ``group_pattern``'s match (its
    first group, if it has one), such as the frames ``v<video>_*`` of one
    video, whatever their class; a file it does not match is a group alone.
    Groups are drawn in a seeded order and go to validation while a class
    they hold still has fewer than ``val_split`` of its files there.
    """
    root = Path(data_dir)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_paths, train_labels = labelled_images(str(root / "train"))
        val_paths, val_labels = labelled_images(str(root / "val"))
        return Split(train_paths, train_labels, val_paths, val_labels)
    if not 0 < val_split < 1:
        raise DataError(f"--val-split must be between 0 and 1, not {val_split}")
    paths, labels = labelled_images(str(root))
    groups: dict[str, list[tuple[str, int]]] = {}
    for path, label, key in zip(paths, labels, group_keys(paths, group_pattern), strict=True):
        groups.setdefault(key, []).append((path, label))
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    wanted = {label: max(1, round(labels.count(label) * val_split)) for label in (0, 1)}
    in_val = dict.fromkeys((0, 1), 0)
    split = Split([], [], [], [])
    for key in order:
        members = groups[key]
        to_val = any(in_val[label] < wanted[label] for _, label in members)
        for path, label in members:
            if to_val:
                split.val_paths.append(path)
                split.val_labels.append(label)
                in_val[label] += 1
            else:
                split.train_paths.append(path)
                split.train_labels.append(label)
    return split


@dataclass
class TrainingSource:
    """One labelled folder of several: its name in reports and its split."""

    name: str
    split: Split


def training_sources(data_dirs: list[str | Path], config: TrainConfig) -> list[TrainingSource]:
    """Each DATA_DIR split on its own, named by its folder (with its parent where two names clash)."""
    roots = [Path(d) for d in data_dirs]
    names = [root.resolve().name for root in roots]
    if len(set(names)) < len(names):
        names = [f"{root.resolve().parent.name}/{root.resolve().name}" for root in roots]
    return [
        TrainingSource(name, split_dataset(root, config.val_split, config.seed, config.group_pattern))
        for name, root in zip(names, roots, strict=True)
    ]


def shortcut_aucs(paths: list[str], labels: list[int]) -> dict[str, float]:
    """How well file size, pixel count and JPEG quality alone separate the classes (ROC AUC, 0.5: not at all).

    A value far from 0.5 within one source is a shortcut a model could learn instead of the traces it should.
    """
    sizes, pixels, qualities = [], [], []
    for path in paths:
        try:
            size = os.path.getsize(path)
            with Image.open(path) as image:
                tables = getattr(image, "quantization", None) or {}
                found = (image.width * image.height, float(np.mean(tables[0])) if 0 in tables else 0.0)
        except (OSError, ValueError):  # unreadable files are skipped with a warning later
            size, found = 0, (0, 0.0)
        sizes.append(size)
        pixels.append(found[0])
        qualities.append(found[1])
    truth = np.array(labels, bool)
    return {
        name: round(roc_auc(np.array(values, float), truth), 4)
        for name, values in (("file_size", sizes), ("pixels", pixels), ("jpeg_quantisation", qualities))
    }


class RandomJpeg(keras.layers.Layer):
    """Re-compress each image, with probability ``rate``, at a JPEG quality in [30, 100]."""

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, images: Any) -> Any:
        def one(image: Any) -> Any:
            pixels = tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)
            recompressed = tf.cast(tf.image.random_jpeg_quality(pixels, 30, 100), image.dtype)
            return tf.where(tf.random.uniform(()) < self.rate, recompressed, image)

        return tf.map_fn(one, images)


class RandomBlur(keras.layers.Layer):
    """Blur each image, with probability ``rate``, by a Gaussian of sigma in (0, max_sigma]."""

    def __init__(self, rate: float, max_sigma: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.max_sigma = rate, max_sigma

    def call(self, images: Any) -> Any:
        def one(image: Any) -> Any:
            smooth = gaussian_blur(image, tf.random.uniform((), 0.1, self.max_sigma), self.max_sigma)
            return tf.where(tf.random.uniform(()) < self.rate, smooth, image)

        return tf.map_fn(one, images)


def augment_batches(aug: Augmentation, shifts: Sequence[float], crop: int | None = None) -> Callable[..., Any]:
    """The training map over (images, labels, source index) batches: ``aug``'s preprocessing layers over
    0..255 floats, with each source's own random shift (``shifts``) in place of ``aug.shift``.

    Shifts are per source because what they teach depends on the data: video
    frames cropped around a moving face gain from them, aligned faces (FFHQ and
    StyleGAN put the eyes at the same pixels) lose a cue that generalises.
    """
    steps: list[keras.layers.Layer] = [keras.layers.RandomCrop(crop, crop)] if crop else []
    if aug.jpeg:
        steps.append(RandomJpeg(aug.jpeg))
    if aug.blur:
        steps.append(RandomBlur(aug.blur))
    if aug.flip:
        steps.append(keras.layers.RandomFlip("horizontal"))
    if aug.rotation:
        steps.append(keras.layers.RandomRotation(aug.rotation, fill_mode="reflect"))
    if aug.brightness:
        steps.append(keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255)))
    augment = keras.Sequential(steps, name="augmentation") if steps else None  # an empty one cannot be built
    shifters = [keras.layers.RandomTranslation(s, s, fill_mode="reflect") if s else None for s in shifts]

    def apply(images: Any, labels: Any, sources: Any) -> tuple[Any, Any]:
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images = augment(images, training=True)
        for index, shifter in enumerate(shifters):
            if shifter is not None:
                mine = tf.equal(sources, index)[:, None, None, None]
                images = tf.where(mine, shifter(images, training=True), images)
        return images, labels

    return apply


def labelled_dataset(
    paths: list[str],
    labels: list[int],
    size: int,
    cache_file: str = "",
    read: Callable[[str], np.ndarray] | None = None,
) -> tuple[Any, list[str]]:
    """Decoded (pixels, label) pairs, cached; also returns the files that could not be decoded.

    Decoding is scan's own decode function (or ``read``, the face crops of
    scan --faces), so training sees a file exactly as scanning will.
    """
    decode = decode_map(size, read)
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.array(labels, np.float32)))
    dataset = dataset.map(lambda path, label: (*decode(path), label), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.cache(cache_file)
    unreadable = [path.decode() for path, _, error, _ in dataset.as_numpy_iterator() if error]  # fills the cache
    usable = dataset.filter(lambda path, pixels, error, label: tf.equal(error, b""))
    # A known length: Keras counts an extra optimizer step per epoch over a dataset of unknown length,
    # which would put a learning-rate schedule out of step.
    usable = usable.apply(tf.data.experimental.assert_cardinality(len(paths) - len(unreadable)))
    return usable.map(lambda path, pixels, error, label: (pixels, label)), unreadable


def source_mix(parts: list[tuple[Any, int]], seed: int, shares: Sequence[float] | None = None) -> Any:
    """Endless draws from each (dataset, size), reshuffled on every pass, in ``shares`` (equal by default)
    whatever their sizes."""
    endless = [dataset.shuffle(max(size, 1), seed=seed).repeat() for dataset, size in parts]
    if len(endless) == 1:
        return endless[0]
    return tf.data.Dataset.sample_from_datasets(endless, None if shares is None else list(shares), seed=seed)


def source_shares(count: int, weights: Sequence[float] = ()) -> np.ndarray:
    """Each of ``count`` sources' share of the draws: ``weights`` normalised, or equal shares."""
    if not weights:
        return np.full(count, 1 / count)
    if len(weights) != count or min(weights) <= 0:
        raise DataError(f"--source-weight: give one positive weight per DATA_DIR ({count}), not {list(weights)}")
    return np.asarray(weights, float) / sum(weights)


def source_shifts(count: int, shifts: Sequence[float], default: float) -> list[float]:
    """Each of ``count`` sources' random shift: ``shifts``, or ``default`` for all."""
    if not shifts:
        return [default] * count
    if len(shifts) != count or min(shifts) < 0:
        raise DataError(f"--source-shift: give one shift (0 or more) per DATA_DIR ({count}), not {list(shifts)}")
    return list(shifts)


class EpochLine(keras.callbacks.Callback):
    """One progress line per epoch, to ``write`` (stderr by default)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self.write = write
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        logs = dict(logs or {})
        rate = logs.pop("learning_rate", None)
        figures = "  ".join(f"{name} {value:.4f}" for name, value in sorted(logs.items()))
        lr = f"  lr {float(rate):.1e}" if rate is not None else ""
        self.write(f"epoch {epoch + 1}: {figures}{lr}  ({time.perf_counter() - self.started:.0f} s)")


class BatchProgress(keras.callbacks.Callback):
    """Each training batch, and each validation pass, to ``status`` (what is being done, steps done, steps in all)."""

    def __init__(self, status: Status, epochs: int, steps: int) -> None:
        super().__init__()
        self.status, self.epochs, self.steps = status, epochs, steps
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.epoch = epoch + 1
        self.status(f"epoch {self.epoch}/{self.epochs}", 0, self.steps)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.status(f"epoch {self.epoch}/{self.epochs}", batch + 1, self.steps)

    def on_test_begin(self, logs: Any = None) -> None:
        self.status(f"epoch {self.epoch}/{self.epochs}: validating", self.steps, self.steps)


class LogLearningRate(keras.callbacks.Callback):
    """Put the rate the optimizer uses now into the epoch's logs (a schedule does not log it)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


@dataclass
class TrainResult:
    model_path: Path
    epochs_run: int
    interrupted: bool
    evaluation: Evaluation  # pooled over the sources
    unreadable: list[str]
    sources: dict[str, Evaluation]


def train(
    data_dirs: list[str | Path],
    out: str | Path,
    config: TrainConfig,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
    status: Status = lambda what, done, total: None,
) -> TrainResult:
    """Train a model on one or more labelled folders and save it, with its threshold and recipe, to ``out``.

    Each source has its share of every epoch whatever its size (an epoch
    draws as many images as all sources hold together; equal shares unless
    ``config.source_weights`` says otherwise); validation is reported per
    source and pooled. Artefacts beside ``out``: ``<stem>.history.csv``
    (per-epoch metrics) and, while training or after an interruption,
    ``<stem>.training/`` (the weights kept so far and the backup that
    ``resume`` continues from).
    """
    if config.schedule not in SCHEDULES:
        raise DataError(f"unknown schedule {config.schedule!r} (known: {', '.join(SCHEDULES)})")
    if config.epochs == 0 and not config.init_from:
        raise DataError("--epochs 0 calibrates and thresholds an existing model: give it with --init-from")
    source_targets(len(data_dirs), config.target_fpr)  # a wrong count is refused before any work
    shares = source_shares(len(data_dirs), config.source_weights)
    shifts = source_shifts(len(data_dirs), config.source_shifts, config.augmentation.shift)
    out = Path(out)
    work = out.with_name(f"{out.stem}.training")
    if not config.resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)

    status("reading the sources", 0, None)
    sources = training_sources(data_dirs, config)
    shortcuts = {}
    for source in sources:
        shortcuts[source.name] = shortcut_aucs(source.split.train_paths, source.split.train_labels)
        for feature, auc in shortcuts[source.name].items():
            if abs(auc - 0.5) > 0.15:
                log(f"warning: in {source.name}, {feature} alone separates real from fake (ROC AUC {auc:.2f})")
    model, spec = build_model(config.arch, config.image_size, any_size=bool(config.crop))
    started_from = None
    if config.init_from:
        started_from = {
            "model": model_identity(Path(config.init_from)),
            "training": start_from(model, spec, config.init_from),
        }
        log(f"starting from the weights of {started_from['model']}")
    size = spec.image_size
    read, faces_found = None, None
    if config.faces:
        log("finding faces (once; kept in the .faces.json file beside the model)")
        every = [path for source in sources for path in source.split.train_paths + source.split.val_paths]
        found = detect_once(
            every,
            FaceFinder(),
            out.with_name(f"{out.stem}.faces.json"),
            progress=lambda done, total: status("finding faces", done, total),
        )
        faces_found = sum(face is not None for face in found.values())

        def read(path: str) -> np.ndarray:
            return crop_face(load_working_image(path), found[path], size, config.face_margin)

    train_parts, val_parts, unreadable = [], [], []
    status("reading the images", 0, None)
    for index, source in enumerate(sources):
        split = source.split
        train_ds, bad_train = labelled_dataset(
            split.train_paths, split.train_labels, size, _cache(config, f"train{index}"), read
        )
        val_ds, bad_val = labelled_dataset(split.val_paths, split.val_labels, size, _cache(config, f"val{index}"), read)
        for path in bad_train + bad_val:
            log(f"warning: skipped unreadable file {path}")
        unreadable += bad_train + bad_val
        source.split = split.without(set(bad_train + bad_val))
        tagged = train_ds.map(lambda pixels, label, index=index: (pixels, label, index))
        train_parts.append((tagged, len(source.split.train_paths)))
        val_parts.append((val_ds, len(bad_val)))
    train_total = sum(len(source.split.train_paths) for source in sources)
    if not train_total:
        raise DataError("no readable training image")

    augment = augment_batches(config.augmentation, shifts, config.crop)
    train_ds = (
        source_mix(train_parts, config.seed, shares)
        .batch(config.batch_size)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_batches = [
        ds.batch(config.batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(tf.data.AUTOTUNE)
        for ds, _ in val_parts
    ]
    pooled_val = val_batches[0]
    for more in val_batches[1:]:
        pooled_val = pooled_val.concatenate(more)

    # Classes weigh the same within the mixture the epochs draw (each source in its share).
    fake_share = float(np.dot(shares, [np.mean(source.split.train_labels or [0.5]) for source in sources]))
    class_weight = {0: 0.5 / max(1 - fake_share, 1e-6), 1: 0.5 / max(fake_share, 1e-6)}

    steps_per_epoch = -(-train_total // config.batch_size)
    cosine = config.schedule == "cosine"
    steps = steps_per_epoch * config.epochs
    rate = (
        keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)
        if cosine and steps
        else config.learning_rate
    )
    model.compile(
        optimizer=keras.optimizers.Adam(rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )
    kept_weights = work / "kept.weights.h5"  # the best epoch's (plateau) or the latest (cosine)
    callbacks = [
        LogLearningRate(),
        keras.callbacks.ModelCheckpoint(kept_weights, "val_loss", save_best_only=not cosine, save_weights_only=True),
        keras.callbacks.BackupAndRestore(str(work / "backup")),
        keras.callbacks.CSVLogger(str(out.with_name(f"{out.stem}.history.csv")), append=config.resume),
        EpochLine(log),
        BatchProgress(status, config.epochs, steps_per_epoch),
    ]
    if not cosine:
        callbacks += [
            keras.callbacks.EarlyStopping("val_loss", patience=config.patience, restore_best_weights=True),
            keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, config.patience // 3)),
        ]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(config.tensorboard)))

    interrupted = False
    try:
        if config.epochs:
            model.fit(
                train_ds,
                validation_data=pooled_val,
                epochs=config.epochs,
                steps_per_epoch=steps_per_epoch,
                class_weight=class_weight,
                callbacks=callbacks,
                verbose=0,
            )
    except INTERRUPTS:
        interrupted = True
        log(f"interrupted: keeping the {'latest' if cosine else 'best'} model so far (continue with --resume)")
        if not kept_weights.exists():
            raise
        model.load_weights(kept_weights)
    epochs_run = _epochs_logged(out) if config.epochs else 0  # no fit: an old history beside it says nothing
    status("calibrating and choosing the threshold", 0, None)

    # The images as trained on (whole, or face crops), each source apart.
    raw = {
        source.name: _score(model, ds, bad)
        for source, ds, (_, bad) in zip(sources, val_batches, val_parts, strict=True)
    }
    evaluation, cards, figures = calibrate_on_validation(model, spec, raw, config.target_fpr)
    spec.training = {
        "trained_on": config.trained_on or ", ".join(source.name for source in sources),
        "data": {source.name: source.split.counts() for source in sources},
        "unreadable_skipped": len(unreadable),
        "epochs_run": epochs_run,
        "interrupted": interrupted,
        "seed": config.seed,
        **({"init_from": started_from} if started_from else {}),
        "input": "face crops (as scan --faces)" if config.faces else "whole images",
        **({"faces_found": faces_found} if config.faces else {}),
        "config": _jsonable(asdict(config)),
        "shortcut_aucs": shortcuts,
        **figures,
    }
    if config.crop:  # the same weights in a model of the scanning input size
        model = _fixed_size_copy(model, spec)
    save_model(model, spec, out)
    if not interrupted:
        shutil.rmtree(work, ignore_errors=True)
    return TrainResult(out, epochs_run, interrupted, evaluation, unreadable, cards)


def start_from(model: keras.Model, spec: ModelSpec, path: str | Path) -> dict[str, Any]:
    """Load a trained deepscan model's weights into ``model`` (fine-tuning); its architecture and size must match.

    Returns that model's own training record, which the new model keeps (the whole recipe stays in the file).
    """
    trained = load_model(path)
    if (trained.spec.arch, trained.spec.image_size) != (spec.arch, spec.image_size):
        raise DataError(
            f"--init-from {path} is a {trained.spec.arch} network of {trained.spec.image_size} px; "
            f"this run trains a {spec.arch} network of {spec.image_size} px"
        )
    model.set_weights(trained.keras_model.get_weights())
    return trained.spec.training


def calibrate_on_validation(
    model: keras.Model, spec: ModelSpec, raw: dict[str, ScoredSet], target_fpr: Sequence[float] = ()
) -> tuple[Evaluation, dict[str, Evaluation], dict[str, Any]]:
    """Calibrate a model on its validation scores, each source apart, and choose its threshold (into ``spec``).

    A temperature fitted on the pooled scores goes into the model's weights
    where it lowers the calibration error. Returns the pooled report card,
    each source's, and the figures the spec keeps (calibration, val_metrics,
    val_sources).
    """
    pooled_raw = _pooled(list(raw.values()))
    temperature = fit_temperature(pooled_raw.scores, pooled_raw.labels)
    uncalibrated = calibration_error(pooled_raw.scores, pooled_raw.labels)
    if calibration_error(scaled(pooled_raw.scores, temperature), pooled_raw.labels) < uncalibrated:
        calibrate(model, temperature)
    else:
        temperature = 1.0  # calibrate only where it helps
    scored = {name: replace(s, scores=scaled(s.scores, temperature), fake=None) for name, s in raw.items()}
    spec.threshold = _threshold(list(scored.values()), target_fpr)
    pooled = _pooled(list(scored.values()))
    evaluation = report_card(pooled, spec.threshold)
    cards = {name: report_card(s, spec.threshold) for name, s in scored.items()}
    figures = {
        "calibration": {
            "temperature": temperature,
            "ece_before": {name: calibration_error(s.scores, s.labels) for name, s in raw.items()},
            "ece_after": {name: card.calibration_error for name, card in cards.items()},
        },
        "val_metrics": _metrics(evaluation, pooled),
        "val_sources": {name: _metrics(card, scored[name]) for name, card in cards.items()},
    }
    return evaluation, cards, figures


def _metrics(card: Evaluation, scored: ScoredSet) -> dict[str, float]:
    return {
        "roc_auc": card.roc_auc,
        "balanced_accuracy": card.balanced_accuracy,
        "accuracy": card.accuracy,
        "false_positive_rate": card.false_positive_rate,
        "calibration_error": card.calibration_error,
        "accuracy_at_0.5": report_card(scored, 0.5).accuracy,
    }


def _threshold(scored: list[ScoredSet], target_fpr: Sequence[float]) -> float:
    """With target false-positive rates: the lowest threshold meeting each source's; else the pooled best."""
    if not target_fpr:
        pooled = _pooled(scored)
        return choose_threshold(pooled.scores, pooled.labels)
    targets = source_targets(len(scored), target_fpr)
    return max(choose_threshold(s.scores, s.labels, target) for s, target in zip(scored, targets, strict=True))


def source_targets(count: int, targets: Sequence[float]) -> list[float]:
    """Each of ``count`` sources' target false-positive rate: one for all, or one each."""
    if len(targets) == 1:
        return list(targets) * count
    if len(targets) not in (0, count):
        raise DataError(f"--target-fpr: give one rate for all, or one per DATA_DIR ({count}), not {list(targets)}")
    return list(targets)


def _pooled(scored: list[ScoredSet]) -> ScoredSet:
    return ScoredSet(
        np.concatenate([s.scores for s in scored]),
        np.concatenate([s.labels for s in scored]),
        sum(s.unreadable for s in scored),
        sum(s.seconds for s in scored),
    )


def fit_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the log loss of sigmoid(logit(score) / T) on a labelled set (T > 1 softens)."""
    logits = _logit(scores)
    truth = np.asarray(labels, float)

    def loss(t: float) -> float:
        p = np.clip(1 / (1 + np.exp(-logits / t)), 1e-7, 1 - 1e-7)
        return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))

    candidates = np.exp(np.linspace(np.log(0.25), np.log(8.0), 241))  # 1.5% steps
    return float(round(min(candidates, key=loss), 4))


def scaled(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Scores as the calibrated model gives them."""
    return 1 / (1 + np.exp(-_logit(scores) / temperature))


def _logit(scores: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(scores, float), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def calibrate(model: keras.Model, temperature: float) -> None:
    """Divide the output layer's pre-sigmoid value by ``temperature``: calibration stored in the weights themselves."""
    output = model.get_layer("p_fake")
    kernel, bias = output.get_weights()
    output.set_weights([kernel / temperature, bias / temperature])


def _score(model: keras.Model, val_ds: Any, unreadable: int) -> ScoredSet:
    started = time.perf_counter()
    scores = model.predict(val_ds, verbose=0).ravel()
    labels = np.concatenate([y for _, y in val_ds.as_numpy_iterator()]).astype(bool)
    return ScoredSet(scores, labels, unreadable, time.perf_counter() - started)


def _fixed_size_copy(model: keras.Model, spec: ModelSpec) -> keras.Model:
    fixed, _ = build_model(spec.arch, spec.image_size)
    fixed.set_weights(model.get_weights())
    return fixed


def _cache(config: TrainConfig, name: str) -> str:
    return f"{config.cache_file}.{name}" if config.cache_file else ""


def _epochs_logged(out: Path) -> int:
    history = out.with_name(f"{out.stem}.history.csv")
    return max(0, len(history.read_text().splitlines()) - 1) if history.exists() else 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
