import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deepscan.pipeline import MAX_PIXELS, ImageError, decode_image, decode_or_error, image_batches

from .conftest import write_image

SIZE = 16


@pytest.mark.parametrize(
    ("name", "mode", "extra"),
    [
        ("grey.png", "L", {}),
        ("palette.gif", "P", {}),
        ("alpha.png", "RGBA", {}),
        ("cmyk.jpg", "CMYK", {}),
        ("plain.bmp", "RGB", {}),
        ("plain.tiff", "RGB", {}),
        ("plain.webp", "RGB", {}),
        ("tiny.png", "RGB", {"size": (1, 1)}),
        ("strip.png", "RGB", {"size": (2000, 3)}),
    ],
)
def test_unusual_but_valid_images_decode_to_the_model_shape(tmp_path: Path, name, mode, extra):
    size = extra.get("size", (40, 30))
    image = Image.new(mode, size)
    path = tmp_path / name
    image.save(path)
    pixels = decode_image(path, SIZE)
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == np.uint8


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(path)
    pixels = decode_image(path, SIZE)
    assert 120 <= pixels.mean() <= 135  # half of 65535 is half of 255


def test_transparent_pixels_become_white(tmp_path: Path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(path)
    assert decode_image(path, SIZE).min() == 255


def test_exif_orientation_is_applied(tmp_path: Path):
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :20] = 255  # left half white
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    pixels = decode_image(path, 20).astype(int)
    assert pixels[:10].mean() > 200 and pixels[10:].mean() < 60  # white half now on top


def test_first_frame_of_an_animated_gif(tmp_path: Path):
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 255, 255), (0, 0, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert decode_image(path, SIZE).mean() > 250


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"<html><body>hello</body></html>", "not an image"),
        (os.urandom(2000), "not an image"),
    ],
)
def test_broken_files_raise_a_clear_error(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        decode_image(path, SIZE)


def test_truncated_jpeg_is_an_error(tmp_path: Path):
    path = write_image(tmp_path / "whole.jpg", size=(200, 200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        decode_image(path, SIZE)


def test_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(ImageError, match="file not found"):
        decode_image(tmp_path / "nope.png", SIZE)


def test_decompression_bomb_is_refused_without_decoding(tmp_path: Path):
    side = int(MAX_PIXELS**0.5) + 1000
    path = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(path)  # a few kB on disk, >120 megapixels declared
    assert path.stat().st_size < 200_000
    with pytest.raises(ImageError, match="decompression bomb"):
        decode_image(path, SIZE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000))
def test_random_bytes_give_pixels_or_an_error_never_a_crash(tmp_path: Path, data: bytes):
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    pixels, error = decode_or_error(os.fsencode(path), SIZE)
    assert pixels.shape == (SIZE, SIZE, 3)
    assert error or pixels.dtype == np.uint8


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    fmt=st.sampled_from(["PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF"]),
    seed=st.integers(0, 1000),
)
def test_random_valid_images_decode(tmp_path: Path, width: int, height: int, fmt: str, seed: int):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    path = tmp_path / f"valid.{fmt.lower()}"
    path.write_bytes(buffer.getvalue())
    assert decode_image(path, SIZE).shape == (SIZE, SIZE, 3)


def test_batches_keep_order_and_carry_errors_beside_good_neighbours(tmp_path: Path):
    good = [write_image(tmp_path / f"{i}.png", i) for i in range(5)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    paths = [str(good[0]), str(good[1]), str(bad), str(good[2]), str(good[3]), str(good[4])]
    seen, errors = [], []
    for batch_paths, pixels, batch_errors in image_batches(paths, SIZE, batch_size=4):
        assert pixels.shape[1:] == (SIZE, SIZE, 3)
        seen += [p.decode() for p in batch_paths.numpy()]
        errors += [e.decode() for e in batch_errors.numpy()]
    assert seen == paths
    assert [bool(e) for e in errors] == [False, False, True, False, False, False]


@pytest.mark.parametrize("name", ["exact.png", "exact.jpg"])
def test_an_image_already_at_the_model_size_is_decoded_as_is(tmp_path: Path, name: str):
    pixels = np.random.default_rng(3).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name, quality=100)
    decoded = decode_image(tmp_path / name, SIZE)
    assert decoded.shape == (SIZE, SIZE, 3)
    if name.endswith(".png"):
        np.testing.assert_array_equal(decoded, pixels)


@pytest.mark.parametrize(
    ("mode", "values"),
    [("F", (0.0, 0.5)), ("F", (100.0, 4000.0)), ("I", (-70_000, 3_000_000)), ("I;16", (1000, 60_000))],
)
def test_high_bit_depth_greyscale_keeps_its_contrast(tmp_path: Path, mode: str, values: tuple[float, float]):
    """Float and 32-bit images were all white or all black: the darker half must stay darker after decoding."""
    from deepscan.pipeline import decode_image

    dark, light = values
    dtype = {"F": np.float32, "I": np.int32, "I;16": np.uint16}[mode]
    pixels = np.full((64, 64), light, dtype)
    pixels[:, :32] = dark
    path = tmp_path / ("deep.png" if mode == "I;16" else "deep.tif")  # 16-bit PNG, 32-bit and float TIFF
    image = Image.fromarray(pixels)
    assert image.mode == mode
    image.save(path)
    decoded = decode_image(str(path), 32).astype(int)
    assert decoded[:, :12].mean() + 100 < decoded[:, -12:].mean(), (
        mode,
        decoded[:, :12].mean(),
        decoded[:, -12:].mean(),
    )


def test_heic_photos_are_scored_with_the_plugin_and_say_which_plugin_without_it(tmp_path: Path, tiny_model: Path):
    """A folder of iPhone .HEIC photos: scored with pillow-heif; without it, each row names the plugin to install."""
    import subprocess
    import sys

    pillow_heif = pytest.importorskip("pillow_heif")
    folder = tmp_path / "iphone"
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pillow_heif.from_bytes(mode="RGB", size=(64, 64), data=pixels.tobytes()).save(folder / "IMG_0001.HEIC")
    scan = [sys.executable, "-c", "import sys; from deepscan.cli import main; sys.argv[0] = 'deepscan'; main()"]
    args = ["scan", str(folder), "--model", str(tiny_model), "-q", "-f", "jsonl"]
    with_plugin = subprocess.run([*scan, *args], capture_output=True, text=True, timeout=300)
    (row,) = map(json.loads, with_plugin.stdout.splitlines())
    assert with_plugin.returncode == 0 and row["score"] is not None and row["path"].endswith("IMG_0001.HEIC")
    hidden = [scan[0], "-c", "import sys; sys.modules['pillow_heif'] = None; " + scan[2].split("; ", 1)[1]]
    without = subprocess.run([*hidden, *args], capture_output=True, text=True, timeout=300)
    (row,) = map(json.loads, without.stdout.splitlines())
    assert without.returncode == 3 and row["score"] is None
    assert "HEIF image" in row["error"] and "pillow-heif" in row["error"]
