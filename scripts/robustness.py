"""How much a model's validation figures survive ordinary changes to the files (for MODEL_CARD.md).

    python scripts/robustness.py ../shared/data/val ../shared/faceswap/val [--faces] [--model M]

Each labelled folder (real/ and fake/ inside) is copied once per change, every file
changed the same way in both classes (seeded by its name, so a rerun makes the same
copies), and `deepscan evaluate` scores each copy: ROC AUC and balanced accuracy at
the stored threshold, per source. A model that only reads its validation set's exact
framing or encoding loses its figures here; no change alters what a file shows.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from deepscan.discovery import find_images

Change = Callable[[Image.Image, random.Random], Image.Image]  # (image, rng) -> the changed image
PNG = {"format": "PNG"}  # lossless: the change alone alters the pixels
BACKGROUNDS = ("coffee.jpg", "chelsea_cat.jpg", "rocket.jpg", "hubble_deep_field.jpg")  # sample_images/ without a face


def unchanged(image: Image.Image, rng: random.Random) -> Image.Image:
    return image


def crop(share: float) -> Change:
    """A crop of ``share`` of each side at a random place: the content moves by up to 1 - share."""

    def change(image: Image.Image, rng: random.Random) -> Image.Image:
        w, h = round(image.width * share), round(image.height * share)
        x, y = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
        return image.crop((x, y, x + w, y + h))

    return change


def resize(share: float) -> Change:
    def change(image: Image.Image, rng: random.Random) -> Image.Image:
        size = (round(image.width * share), round(image.height * share))
        return image.resize(size, Image.Resampling.BILINEAR)

    return change


def in_a_picture(backgrounds: list[Image.Image]) -> Change:
    """The image, at its own scale, at a random place in a photo twice its size (the face inside a larger picture)."""

    def change(image: Image.Image, rng: random.Random) -> Image.Image:
        side = 2 * max(image.size)
        back = rng.choice(backgrounds)
        scale = side / min(back.size) * rng.uniform(1.0, 1.5)
        back = back.resize((round(back.width * scale), round(back.height * scale)), Image.Resampling.BILINEAR)
        x, y = rng.randint(0, back.width - side), rng.randint(0, back.height - side)
        canvas = back.crop((x, y, x + side, y + side))
        canvas.paste(image, (rng.randint(0, side - image.width), rng.randint(0, side - image.height)))
        return canvas

    return change


def changes(sample_images: Path) -> dict[str, tuple[Change, dict]]:
    """Each change by name, with the options its copies are saved with."""
    backgrounds = [Image.open(sample_images / name).convert("RGB") for name in BACKGROUNDS]
    return {
        "jpeg 80": (unchanged, {"format": "JPEG", "quality": 80}),
        "crop 97%": (crop(0.97), PNG),
        "crop 90%": (crop(0.90), PNG),
        "resize 75%": (resize(0.75), PNG),
        "in a picture": (in_a_picture(backgrounds), PNG),
    }


def copy_changed(source: Path, target: Path, change: Change, save: dict) -> None:
    """target/<path inside source>: each image of source, changed (kept if already made)."""
    suffix = ".jpg" if save["format"] == "JPEG" else ".png"
    for path in map(Path, find_images([source])):
        out = (target / path.relative_to(source)).with_suffix(suffix)
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            change(Image.open(path).convert("RGB"), random.Random(path.name)).save(out, **save)


def evaluate(folders: list[Path], options: list[str]) -> dict[str, dict]:
    """Per-source ROC AUC and balanced accuracy from `deepscan evaluate`, keyed by the folder."""
    command = [sys.executable, "-m", "deepscan", "evaluate", *map(str, folders), "--format", "json", *options]
    figures = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    keys = ("roc_auc", "balanced_accuracy")
    return {name: {k: round(card[k], 3) for k in keys} for name, card in figures["sources"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="+", help="labelled folders (real/ and fake/ inside)")
    parser.add_argument("--model", type=Path, help="a model file (default: the packaged one for the mode)")
    parser.add_argument("--faces", action="store_true", help="score the faces, as scan --faces does")
    parser.add_argument("--work", type=Path, default=Path("runs/robustness"), help="where the changed copies go")
    parser.add_argument("--sample-images", type=Path, default=Path(__file__).parents[1] / "sample_images")
    args = parser.parse_args()
    options = [*(["--model", str(args.model)] if args.model else []), *(["--faces"] if args.faces else [])]
    names = [f"{data.parent.name}-{data.name}" for data in args.data]  # ../shared/data/val: data-val
    rows = {"as stored": evaluate(args.data, options)}
    for label, (change, save) in changes(args.sample_images).items():
        folders = [args.work / label.replace(" ", "-").replace("%", "") / name for name in names]
        for data, folder in zip(args.data, folders, strict=True):
            copy_changed(data, folder, change, save)
        rows[label] = evaluate(folders, options)
    print(f"| change | {' | '.join(f'{name}: AUC, balanced accuracy' for name in names)} |")
    print(f"|---|{'---|' * len(names)}")
    for label, figures in rows.items():
        cells = [f"{card['roc_auc']:.3f}, {card['balanced_accuracy']:.3f}" for card in figures.values()]
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
