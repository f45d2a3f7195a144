"""Architectures, the model's input contract (ModelSpec), and saving and loading.

A deepscan model file is a native Keras ``.keras`` archive with one extra
member, ``deepscan.json``, holding the :class:`ModelSpec`. The spec travels
with the weights, so input size, threshold and class meaning are never
guessed at scan time, and it can be read without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepscan import __version__
from deepscan.errors import ModelError
from deepscan.files import file_digest, umask, unreadable_reason
from deepscan.runtime import tensorflow

if TYPE_CHECKING:
    import keras
    import numpy as np

SPEC_MEMBER = "deepscan.json"
MAX_SPEC_BYTES = 1 << 20  # a spec is a few KiB; a larger one is refused before it is inflated
MAX_CONFIG_BYTES = 16 << 20  # Keras' config.json and metadata.json: a few hundred KiB for our architectures
MAX_WEIGHTS_BYTES = 2 << 30  # the weights; zipfile refuses a member that inflates past its declared size
CLASS_NAMES = ("real", "fake")


DEFAULT_FACE_MARGIN = 0.1  # around each face, as a fraction of its size, for models that do not record theirs


@dataclass
class ModelSpec:
    """What a saved model needs to be used correctly: it is stored inside the file."""

    arch: str
    image_size: int
    threshold: float = 0.5
    # The model outputs P(classes[1]); a score >= threshold is labelled classes[1].
    classes: tuple[str, str] = CLASS_NAMES
    deepscan_version: str = __version__
    # How the model was made: data counts, epochs, seed, validation metrics...
    training: dict[str, Any] = field(default_factory=dict)
    # A model of several views (deepscan.views): the face-crop margin of each, side by side in its input.
    views: list[float] = field(default_factory=list)

    @property
    def view_count(self) -> int:
        return max(1, len(self.views))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The pixels one image gives the model: its views side by side."""
        return self.image_size, self.image_size * self.view_count, 3

    @property
    def trained_on(self) -> str:
        """What the model covers, in a few words (recorded at training), so a low score elsewhere means little."""
        return str(self.training.get("trained_on") or "not recorded")

    @property
    def face_margin(self) -> float | None:
        """The margin of the face crops the model was trained on, its first view's (None: not a face-crop model)."""
        if self.views:
            return self.views[0]
        config = self.training.get("config") or {}
        return config.get("face_margin") if config.get("faces") else None

    def crop_margins(self, asked: float | None = None) -> list[float]:
        """The face-crop margin of each view: the first the one ``asked`` (if any), else the one the model was
        trained with, else DEFAULT_FACE_MARGIN; the other views' as stored."""
        first = next(m for m in (asked, self.face_margin, DEFAULT_FACE_MARGIN) if m is not None)
        return [first, *self.views[1:]]

    def label(self, score: float, threshold: float | None = None) -> str:
        """The class name for a score, at ``threshold`` or the model's own."""
        cut = self.threshold if threshold is None else threshold
        return self.classes[1] if score >= cut else self.classes[0]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Parse and check a stored spec: a wrongly typed or impossible value raises ValueError, naming it."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the spec is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        spec = cls(**{k: v for k, v in data.items() if k in names})
        _check(isinstance(spec.arch, str) and spec.arch != "", "arch", spec.arch, "a non-empty string")
        _check(_is_int(spec.image_size) and spec.image_size > 0, "image_size", spec.image_size, "a positive integer")
        _check(
            _is_number(spec.threshold) and 0 <= spec.threshold <= 1,
            "threshold",
            spec.threshold,
            "a number from 0 to 1",
        )
        _check(
            isinstance(spec.classes, (list, tuple)) and len(spec.classes) == 2
            and all(isinstance(name, str) and name for name in spec.classes) and spec.classes[0] != spec.classes[1],
            "classes", spec.classes, "two different class names",
        )  # fmt: skip
        _check(isinstance(spec.training, dict), "training", type(spec.training).__name__, "an object")
        _check(
            isinstance(spec.views, list) and all(_is_number(m) and 0 <= m <= 10 for m in spec.views),
            "views", spec.views, "a list of face-crop margins from 0 to 10",
        )  # fmt: skip
        spec.threshold = float(spec.threshold)
        spec.views = [float(margin) for margin in spec.views]
        spec.classes = tuple(spec.classes)  # type: ignore[assignment]
        return spec


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} is {value!r}, expected {expected}")


# --- architecture registry -------------------------------------------------

Builder = Callable[[int | None], "keras.Model"]


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Builder
    default_size: int
    summary: str
    any_size: bool  # fully convolutional: can train on crops and score whole images


ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, default_size: int, summary: str, *, any_size: bool = False) -> Callable[[Builder], Builder]:
    """Add an architecture builder (image_size, or None for any size -> uncompiled Keras model)."""

    def decorate(build: Builder) -> Builder:
        ARCHITECTURES[name] = Architecture(name, build, default_size, summary, any_size)
        return build

    return decorate


def list_architectures() -> list[str]:
    return sorted(ARCHITECTURES)


def build_model(arch: str, image_size: int | None = None, *, any_size: bool = False) -> tuple[keras.Model, ModelSpec]:
    """Build an untrained model of a registered architecture and its spec.

    With ``any_size`` the model takes images of any size (for training on
    crops); the spec still records ``image_size``, the size scanning uses.
    """
    try:
        entry = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(list_architectures())
        raise ModelError(f"unknown architecture {arch!r} (known: {known})") from None
    if any_size and not entry.any_size:
        raise ModelError(f"architecture {arch!r} needs a fixed input size, so it cannot train on crops")
    size = image_size or entry.default_size
    tensorflow()
    return entry.build(None if any_size else size), ModelSpec(arch=arch, image_size=size)


@register("reference", 128, "the published card's CNN: 3 conv blocks, Flatten, Dense(128)")
def _reference(image_size: int | None) -> keras.Model:
    """The published card's architecture, kept as the baseline to beat."""
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(1e-4)
    x = inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255)(x)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, activation="relu", kernel_regularizer=l2)(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", kernel_regularizer=l2)(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="p_fake")(x)
    return keras.Model(inputs, outputs, name="reference")


@register(
    "residual",
    256,
    "native-resolution residual CNN: high-pass stem, three BatchNorm stages, global pooling",
    any_size=True,
)
def _residual(image_size: int | None) -> keras.Model:
    """The first default: no resize for 256x256 crops, three stages."""
    return _high_pass_resnet(image_size, (32, 64, 128), "residual")


@register(
    "compact",
    128,
    "residual CNN at 128 px with four stages: the default, the fastest and the most accurate here",
    any_size=True,
)
def _compact(image_size: int | None) -> keras.Model:
    """Four stages on a 128 px image: a third of residual's multiply-adds, a receptive field over the whole face."""
    return _high_pass_resnet(image_size, (32, 64, 128, 256), "compact")


def _high_pass_resnet(image_size: int | None, widths: tuple[int, ...], name: str) -> keras.Model:
    """Pixels beside their high-pass residual, a strided stem, residual stages, global pooling.

    The first layer sees the image beside its residual after a 2x down- and
    up-sampling (the NPR of Tan et al., CVPR 2024), where generators leave
    traces; each stage halves the resolution (BatchNorm, L2); global average
    pooling instead of a large Flatten/Dense keeps the model small and fast.
    """
    import keras
    from keras import layers, regularizers

    l2 = regularizers.L2(1e-4)

    def conv_bn(x: Any, filters: int, stride: int = 1) -> Any:
        x = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, kernel_regularizer=l2)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    def stage(x: Any, filters: int) -> Any:
        shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False, kernel_regularizer=l2)(x)
        shortcut = layers.BatchNormalization()(shortcut)
        y = conv_bn(x, filters, stride=2)
        y = layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=l2)(y)
        y = layers.BatchNormalization()(y)
        return layers.ReLU()(layers.Add()([shortcut, y]))

    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255)(inputs)
    blurred = layers.UpSampling2D(2)(layers.AveragePooling2D(2)(x))
    residual = layers.Subtract()([x, blurred])
    x = layers.Concatenate()([x, layers.Rescaling(4.0)(residual)])
    x = conv_bn(x, 24, stride=2)
    for filters in widths:
        x = stage(x, filters)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="p_fake")(x)
    return keras.Model(inputs, outputs, name=name)


# --- saving and loading ----------------------------------------------------


def packaged_model(faces: bool = False) -> Path:
    """A model shipped inside the package: for whole images, or (``faces``) for the face crops of --faces."""
    return Path(str(resources.files("deepscan") / "models" / ("faces.keras" if faces else "default.keras")))


@cache
def model_identity(path: Path) -> str:
    """A model file as ``name@sha256:<hex>``: the same bytes give the same identity."""
    return f"{path.name}@sha256:{file_digest(path)}"


def save_model(model: keras.Model, spec: ModelSpec, path: str | Path) -> None:
    """Save weights and architecture (no optimizer state) plus the spec, atomically."""
    tensorflow()
    import keras

    path = Path(path)
    tmp = fresh_file(path)
    try:
        # The same layers in an uncompiled model: no optimizer state goes into the file.
        clean = keras.Model(model.inputs, model.outputs, name=model.name)
        clean.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(SPEC_MEMBER, spec.to_json())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def fresh_file(beside: Path, suffix: str = ".keras") -> Path:
    """A new, empty file of our own beside ``beside`` (mkstemp: no name a planted link could claim first)."""
    handle, name = tempfile.mkstemp(dir=beside.parent, prefix=f".{beside.stem}.", suffix=suffix)
    os.close(handle)
    os.chmod(name, 0o666 & ~umask())  # as an ordinary new file, not mkstemp's 0600
    return Path(name)


def read_spec(path: str | Path) -> ModelSpec:
    """Read and check a model file's spec without loading TensorFlow; at most MAX_SPEC_BYTES are inflated."""
    path = Path(path)
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block, a device never end
        raise ModelError(f"cannot read model {path}: {unreadable_reason(path)}")
    try:
        with zipfile.ZipFile(path) as archive, archive.open(SPEC_MEMBER) as member:
            raw = member.read(MAX_SPEC_BYTES + 1)
        if len(raw) > MAX_SPEC_BYTES:
            raise ModelError(f"{path}: {SPEC_MEMBER} is over {MAX_SPEC_BYTES // 1024} KiB; refusing to read it")
        text = raw.decode()
    except FileNotFoundError:
        raise ModelError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelError(f"model path is a directory, not a .keras file: {path}") from None
    except zipfile.BadZipFile:
        raise ModelError(f"not a Keras model file (.keras zip archive): {path}") from None
    except KeyError:
        raise ModelError(f"{path} is a Keras model but not a deepscan one (no {SPEC_MEMBER})") from None
    except (OSError, zipfile.LargeZipFile, EOFError) as err:
        raise ModelError(f"cannot read model {path}: {err}") from None
    except UnicodeDecodeError:
        raise ModelError(f"{path}: {SPEC_MEMBER} is not UTF-8 text") from None
    try:
        return ModelSpec.from_json(text)
    except (ValueError, TypeError) as err:
        raise ModelError(f"{path}: unusable {SPEC_MEMBER}: {err}") from None


@dataclass
class Detector:
    """A loaded model with its spec: turns batches of uint8 pixels into P(fake)."""

    keras_model: keras.Model
    spec: ModelSpec
    path: Path
    _predict: Any = field(default=None, repr=False)

    def predict(self, pixels: Any) -> np.ndarray:
        """Scores for a batch of uint8 images shaped (n, size, size, 3), or (n, *spec.input_shape).

        A model of several views given single images sees each image in every view.
        """
        tf = tensorflow()
        if self.spec.view_count > 1 and pixels.shape[2] == self.spec.image_size:
            pixels = tf.tile(pixels, [1, 1, self.spec.view_count, 1])
        if self._predict is None:
            signature = [tf.TensorSpec([None, *self.spec.input_shape], tf.uint8)]

            @tf.function(input_signature=signature, autograph=False)
            def predict(batch: tf.Tensor) -> tf.Tensor:
                scores = self.keras_model(tf.cast(batch, tf.float32), training=False)
                return tf.reshape(scores, [-1])

            self._predict = predict
        return self._predict(pixels).numpy()


def load_model(path: str | Path | None = None, *, trust: bool = False) -> Detector:
    """Load a deepscan model (the packaged default when ``path`` is None).

    Keras safe mode stays on unless ``trust`` is set: a model holding
    arbitrary Python code (a Lambda layer) is refused.
    """
    path = Path(path) if path is not None else packaged_model()
    spec = read_spec(path)
    _check_archive(path)
    tensorflow()
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=not trust)
    except ValueError as err:
        if "safe_mode" in str(err) or "Lambda" in str(err):
            raise ModelError(
                f"{path} contains arbitrary code (a Lambda layer); load it only if you trust it (--trust-model)"
            ) from None
        raise ModelError(f"cannot load model {path}: {_first_line(err)}") from None
    except Exception as err:  # Keras raises many types for a damaged archive
        raise ModelError(f"cannot load model {path}: {_first_line(err)}") from None
    expected_in = (None, *spec.input_shape)
    if tuple(model.input_shape) != expected_in or tuple(model.output_shape) != (None, 1):
        raise ModelError(
            f"{path}: model takes {model.input_shape} and gives {model.output_shape}; "
            f"deepscan needs {expected_in} -> (None, 1)"
        )
    return Detector(model, spec, path)


def _check_archive(path: Path) -> None:
    """Refuse an archive whose members would inflate past sane sizes, before Keras reads any of them."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            limit = MAX_CONFIG_BYTES if member.filename.endswith(".json") else MAX_WEIGHTS_BYTES
            if member.file_size > limit:
                raise ModelError(f"{path}: {member.filename} would inflate to {member.file_size:,} bytes; refusing it")


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
