"""Shared fixtures: tiny generated images and tiny models keep the suite fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from deepscan.cli import app
from deepscan.model import build_model, save_model

TINY = 32  # input size of the test models


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (48, 40), fmt: str | None = None) -> Path:
    """A small random RGB image; the format follows the extension unless given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained reference-architecture model at 32x32, saved as deepscan saves models."""
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model, spec = build_model("reference", TINY)
    save_model(model, spec, path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of 3 images in a nested layout, one broken file and one non-image."""
    root = tmp_path / "photos"
    write_image(root / "b.jpg", 1)
    write_image(root / "a.PNG", 2)
    write_image(root / "nested" / "deeper" / "c.webp", 3)
    (root / "nested" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


class Cli:
    """Runs the real CLI in-process and returns (exit code, stdout, stderr)."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str | Path, input: str | None = None) -> tuple[int, str, str]:
        result = self.runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli() -> Cli:
    return Cli()
