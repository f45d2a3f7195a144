"""Image decoding and the tf.data pipeline shared by scanning and training.

Decoding uses Pillow inside ``tf.numpy_function`` rather than TensorFlow's
own decoders: Pillow reads every format people have (CMYK JPEGs, 16-bit
PNGs, TIFF, WebP), honours EXIF orientation, decodes big JPEGs at reduced
size in the DCT domain (``draft``), and its failures can be caught per file.
A file that cannot be decoded becomes an error *value* travelling beside a
blank image, so one bad file never stops the dataset or its batch.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TypeVar

import numpy as np
from PIL import Image

from deepscan.files import ReadError, open_regular
from deepscan.runtime import tensorflow

if TYPE_CHECKING:
    import tensorflow as tf

# Formats Pillow can name but not decode on its own (stubs, or an external program such as Ghostscript).
UNDECODABLE_FORMATS = frozenset({"BUFR", "GRIB", "HDF5", "EPS", "WMF", "MPEG", "IPTC"})


def _register_optional_decoders() -> None:
    """HEIC/HEIF and JPEG XL, when their Pillow plugins are installed."""
    with contextlib.suppress(ImportError):
        from pillow_heif import register_heif_opener

        register_heif_opener()
    with contextlib.suppress(ImportError):
        import pillow_jxl  # noqa: F401  (registers itself)


# Formats Pillow decodes only with a plugin: their extensions always count as images, so a folder of iPhone
# photos without the plugin gives rows that say what to install, not "no image found".
PLUGIN_FORMATS = {  # Pillow's format name: extensions, the plugin that registers it
    "HEIF": ((".heic", ".heif", ".hif"), "pillow-heif (pip install 'deepscan-audit[heif]')"),
    "JXL": ((".jxl",), "pillow-jxl-plugin (pip install pillow-jxl-plugin)"),
}


def decodable_extensions() -> frozenset[str]:
    """Every file extension the installed Pillow (and its optional plugins) can decode, lower case,
    and those of the formats a plugin would decode (a file of them says which plugin it needs)."""
    _register_optional_decoders()
    Image.init()
    formats = set(Image.OPEN) - UNDECODABLE_FORMATS
    found = {ext for ext, fmt in Image.registered_extensions().items() if fmt in formats}
    return frozenset(found.union(*(extensions for extensions, _ in PLUGIN_FORMATS.values())))


def _plugin_needed(head: bytes) -> str | None:
    """For a file Pillow could not identify: the plugin its signature asks for, if that is the reason."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        kind = "HEIF"
    elif head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        kind = "JXL"
    else:
        return None
    if kind in Image.OPEN:  # the plugin is there: the file itself is broken
        return None
    return f"a {kind} image: decoding it needs the plugin {PLUGIN_FORMATS[kind][1]}"


# Refuse images larger than this before decoding them (decompression bombs).
# Pillow's own bomb check, which fires later (2x its MAX_IMAGE_PIXELS), is caught too.
MAX_PIXELS = 120_000_000

T = TypeVar("T")
EXIF_ORIENTATION = 0x0112
# Pillow's own guards against decompression bombs in metadata: a report should say that is what was found.
METADATA_LIMITS = ("Decompressed data too large", "Too much memory used in text chunks")


# What decoding one picture may hold in memory, and all decoding threads together: with TensorFlow and the
# model beside it (about 0.8 GB), a scan stays under 1.5 GB whatever the files and the core count.
MAX_DECODE_BYTES = 640 << 20
# Bytes Pillow holds per pixel while decoding: its image (at most 4 bands of 8 bits), or for WebP, which it
# decodes at full size through libwebp's animation decoder, about 16 (1.8 GB for 10,900 x 10,900 pixels).
DECODE_BYTES_PER_PIXEL = {"WEBP": 16}


def decode_cost(image: Image.Image) -> int:
    """The bytes decoding ``image`` will hold at its peak (an estimate that errs high), its metadata included:
    Pillow keeps every JPEG APP segment it read (``applist``), up to the file's size."""
    metadata = sum(len(data) for _, data in getattr(image, "applist", ()))
    return image.width * image.height * DECODE_BYTES_PER_PIXEL.get(image.format or "", 4) + metadata


class DecodeBudget:
    """Bytes being decoded at once in this process, whatever the number of decoding threads.

    An image waits until its cost fits beside those already being decoded
    (one image alone always fits: it was refused before if over the
    limit), so memory for decoding stays bounded by the budget however many
    large images come together.
    """

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._turn = threading.Condition()

    @contextmanager
    def share(self, cost: int) -> Iterator[None]:
        with self._turn:
            self._turn.wait_for(lambda: self.used == 0 or self.used + cost <= self.limit)
            self.used += cost
        try:
            yield
        finally:
            with self._turn:
                self.used -= cost
                self._turn.notify_all()


DECODE_BUDGET = DecodeBudget(MAX_DECODE_BYTES)  # all decoding threads together hold at most one largest image


class ImageError(Exception):
    """A file that cannot be turned into pixels; the message is the report's error text."""


class Source(NamedTuple):
    """A file to score: its path and, when the caller already read it (to hash it), its bytes."""

    path: str
    data: bytes | None = None


ImageInput = str | os.PathLike[str] | bytes  # a path, or a file's bytes


def decode_image(path: ImageInput, size: int) -> np.ndarray:
    """Read an image file (or its bytes) as RGB uint8 pixels resized to (size, size, 3).

    Raises ImageError with a one-line reason for anything that is not a
    readable image within MAX_PIXELS.
    """

    def pixels(image: Image.Image, _: tuple[int, int]) -> np.ndarray:
        if image.size != (size, size):  # resizing to the same size would only copy it
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(image)  # while the file is still open: Pillow decodes lazily

    return open_image(path, (size, size), pixels)


def open_image(source: ImageInput, draft: tuple[int, int], finish: Callable[[Image.Image, tuple[int, int]], T]) -> T:
    """Open an image as upright RGB and hand it, with its full upright size, to ``finish``.

    ``source`` is a path (opened only if it is a regular file) or the file's
    bytes. Every failure becomes an ImageError. JPEGs are decoded in the DCT
    domain at the smallest scale not below ``draft`` (far cheaper than a
    full decode followed by a resize).
    """
    try:
        handle: BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else open_regular(source)
    except ReadError as err:
        raise ImageError(str(err)) from None
    with handle:
        if handle.seek(0, io.SEEK_END) == 0:
            raise ImageError("empty file")
        handle.seek(0)
        return _decode(handle, draft, finish)


def _decode(handle: BinaryIO, draft: tuple[int, int], finish: Callable[[Image.Image, tuple[int, int]], T]) -> T:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns on odd but readable files
            with Image.open(handle) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageError(_too_large_message(f"{width}x{height}"))
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
                if orientation in (5, 6, 7, 8):  # turned a quarter
                    width, height = height, width
                if image.format == "JPEG":
                    image.draft("RGB", draft)
                cost = decode_cost(image)
                if cost > MAX_DECODE_BYTES:
                    raise ImageError(
                        f"image too large to decode in bounded memory: a {image.format} image of "
                        f"{width * height / 1e6:.1f} megapixels takes about {cost / 2**30:.1f} GiB to decode "
                        f"(limit {MAX_DECODE_BYTES >> 20} MiB)"
                    )
                with DECODE_BUDGET.share(cost):
                    image = _reduced(_to_8_bits(image) if image.mode in HIGH_BIT_MODES else image, draft)
                    if orientation in TRANSPOSITIONS:
                        image = image.transpose(TRANSPOSITIONS[orientation])
                    return finish(_to_rgb(image), (width, height))
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        handle.seek(0)
        raise ImageError(_plugin_needed(handle.read(16)) or "not an image, or an unsupported format") from None
    except Image.DecompressionBombError:
        raise ImageError(_too_large_message("its declared size")) from None
    except MemoryError:
        raise ImageError("out of memory while decoding") from None
    except OSError as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ImageError(f"cannot read file: {text}" if err.errno else f"corrupt or truncated image: {text}") from None
    except Exception as err:  # Pillow raises many types on corrupt data
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if text.startswith(METADATA_LIMITS):
            raise ImageError(f"metadata over Pillow's safety limit (possible decompression bomb): {text}") from None
        raise ImageError(f"corrupt or truncated image: {text}") from None


# EXIF orientation -> the transposition that makes the picture upright (as ImageOps.exif_transpose does).
TRANSPOSITIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
REDUCIBLE_MODES = ("RGB", "RGBA", "L", "LA")


def _reduced(image: Image.Image, draft: tuple[int, int]) -> Image.Image:
    """A picture far larger than what is made of it, shrunk by an integer box factor first (still twice the
    size asked for): the transposition and colour conversion that follow then copy megabytes, not gigabytes."""
    factor = min(image.width // (2 * draft[0]), image.height // (2 * draft[1]))
    if factor < 2 or image.mode not in REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa"):
        image = image.convert("RGBA")  # one copy at most (none for RGBA)
        alpha = image.getchannel("A")
        if alpha.getextrema() == (255, 255):
            return image.convert("RGB")  # opaque: nothing to composite
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=alpha)
        return background
    return image.convert("RGB")


ROWS_AT_ONCE = 512  # high-bit-depth pixels are read and scaled a band of rows at a time: no full-size copy
HIGH_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_8_bits(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale as 8-bit grey: 16-bit over its full range, the others over the values
    they hold (a float image in 0..1 or 0..4000, an int image of any range), never clipped to white or black."""
    width, height = image.size

    def bands() -> Iterator[tuple[int, np.ndarray]]:
        for top in range(0, height, ROWS_AT_ONCE):
            yield top, np.asarray(image.crop((0, top, width, min(top + ROWS_AT_ONCE, height))))

    if image.mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    else:
        low, high = np.inf, -np.inf
        for _, band in bands():
            band = band[np.isfinite(band)]
            if band.size:
                low, high = min(low, float(band.min())), max(high, float(band.max()))
        low, high = (low, high) if low <= high else (0.0, 0.0)
    scale = 255.0 / (high - low) if high > low else 0.0
    grey = np.empty((height, width), np.uint8)
    for top, band in bands():
        band = np.nan_to_num(band.astype(np.float32), nan=low, posinf=high, neginf=low)
        grey[top : top + ROWS_AT_ONCE] = np.clip((band - low) * scale, 0, 255)
    return Image.fromarray(grey, "L")


def _too_large_message(dimensions: str) -> str:
    limit = MAX_PIXELS // 1_000_000
    return f"image too large: {dimensions} is over the {limit} megapixel limit (possible decompression bomb)"


def decode_or_error(
    path: bytes, size: int, decode: Callable[[str], np.ndarray] | None = None, data: bytes | None = None
) -> tuple[np.ndarray, bytes]:
    """Pixels and '', or blank pixels and the error text: for tf.numpy_function, which must not raise.

    ``decode`` (path -> uint8 pixels of the model's shape) defaults to
    decode_image; ``data``, the file's bytes, is decoded instead of the path.
    """
    try:
        if decode is not None:
            return decode(os.fsdecode(path)), b""
        return decode_image(os.fsdecode(path) if data is None else data, int(size)), b""
    except ImageError as err:
        return np.zeros((int(size), int(size), 3), np.uint8), str(err).encode()


def decode_map(
    size: int, decode: Callable[[str], np.ndarray] | None = None
) -> Callable[..., tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """The map function ((path[, data, has_data]) -> path, pixels, error) of every dataset; see decode_or_error."""
    tf = tensorflow()

    def read(path: bytes, data: bytes, has_data: bool) -> tuple[np.ndarray, bytes]:
        return decode_or_error(path, size, decode, data if has_data else None)

    def mapped(path: tf.Tensor, data: tf.Tensor = b"", has_data: tf.Tensor = False) -> tuple[tf.Tensor, ...]:
        pixels, error = tf.numpy_function(read, [path, data, has_data], [tf.uint8, tf.string], stateful=False)
        pixels.set_shape((size, size, 3))
        error.set_shape(())
        return path, pixels, error

    return mapped


def source_dataset(sources: Iterable[Source | str]) -> tf.data.Dataset:
    """Files as a lazy dataset of (path, data, has_data): bytes a caller already read travel with their path."""
    tf = tensorflow()

    def generate() -> Iterable[tuple[bytes, bytes, bool]]:
        for item in sources:
            source = item if isinstance(item, Source) else Source(item)
            yield os.fsencode(source.path), source.data or b"", source.data is not None

    signature = (tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.bool))
    return tf.data.Dataset.from_generator(generate, output_signature=signature)


def image_batches(
    sources: Iterable[Source | str], size: int, batch_size: int, perturb: Perturbation | None = None
) -> tf.data.Dataset:
    """Stream files (paths, or Sources with their bytes) through parallel decode and resize into prefetched batches.

    Elements are (paths, pixels, errors) batches; order follows ``sources``.
    ``perturb`` (uint8 image -> uint8 image) degrades each decoded image,
    for robustness tests.
    """
    tf = tensorflow()
    dataset = source_dataset(sources).map(decode_map(size), num_parallel_calls=os.cpu_count() or 1, deterministic=True)
    if perturb is not None:
        dataset = dataset.map(
            lambda path, pixels, error: (path, perturb(pixels), error), num_parallel_calls=tf.data.AUTOTUNE
        )
    options = tf.data.Options()
    options.threading.private_threadpool_size = os.cpu_count() or 1
    # Two batches ahead keep the model busy; an AUTOTUNE'd buffer kept growing with the file count.
    return dataset.batch(batch_size).prefetch(2).with_options(options)


Perturbation = Callable[["tf.Tensor"], "tf.Tensor"]


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor | float, max_sigma: float = 3.0) -> tf.Tensor:
    """Blur one float image (H, W, 3) with a separable Gaussian; the kernel covers sigma <= max_sigma."""
    tf = tensorflow()
    radius = math.ceil(3 * max_sigma)
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / tf.maximum(tf.cast(sigma, tf.float32), 1e-3)))
    kernel /= tf.reduce_sum(kernel)
    column = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    row = tf.reshape(column, [1, -1, 3, 1])
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], "REFLECT")
    blurred = tf.nn.depthwise_conv2d(padded, column, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, row, [1, 1, 1, 1], "VALID")[0]


def blurred(sigma: float) -> Perturbation:
    """A perturbation: Gaussian blur of the given sigma (0: unchanged)."""
    tf = tensorflow()

    def apply(pixels: tf.Tensor) -> tf.Tensor:
        if sigma <= 0:
            return pixels
        smooth = gaussian_blur(tf.cast(pixels, tf.float32), sigma, max_sigma=max(sigma, 0.5))
        return tf.cast(tf.clip_by_value(tf.round(smooth), 0, 255), tf.uint8)

    return apply


def recompressed(quality: int) -> Perturbation:
    """A perturbation: JPEG re-compression at the given quality."""
    tf = tensorflow()
    return lambda pixels: tf.image.adjust_jpeg_quality(pixels, quality)
