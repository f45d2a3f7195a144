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

Change = Callable[[Image.Image, random.Random], tuple[Image.Image, dict]]  # (image, rng) -> (changed, save options)
BACKGROUNDS = ("coffee.jpg", "chelsea_cat.jpg", "rocket.jpg", "hubble_deep_field.jpg")  # sample_images/ without a face


def jpeg(quality: int) -> Change:
    def change(image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
        return image, {"format": "JPEG", "quality": quality}

    return change


def crop(share: float) -> Change:
    """A crop of ``share`` of each side at a random place: the content moves by up to 1 - share."""

    def change(image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
        w, h = round(image.width * share), round(image.height * share)
        x, y = rng.randint(0, image.width - w), rng.randint(0, image.height - h)
        return image.crop((x, y, x + w, y + h)), {"format": "PNG"}

    return change


def resize(share: float) -> Change:
    def change(image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
        size = (round(image.width * share), round(image.height * share))
        return image.resize(size, Image.Resampling.BILINEAR), {"format": "PNG"}

    return change


def in_a_picture(backgrounds: list[Image.Image]) -> Change:
    """The image, at its own scale, at a random place in a photo twice its size (the face inside a larger picture)."""

    def change(image: Image.Image, rng: random.Random) -> tuple[Image.Image, dict]:
        side = 2 * max(image.size)
        back = rng.choice(backgrounds)
        scale = side / min(back.size) * rng.uniform(1.0, 1.5)
        back = back.resize((round(back.width * scale), round(back.height * scale)), Image.Resampling.BILINEAR)
        x, y = rng.randint(0, back.width - side), rng.randint(0, back.height - side)
        canvas = back.crop((x, y, x + side, y + side))
        canvas.paste(image, (rng.randint(0, side - image.width), rng.randint(0, side - image.height)))
        return canvas, {"format": "PNG"}

    return change


def changes(sample_images: Path) -> dict[str, Change]:
    backgrounds = [Image.open(sample_images / name).convert("RGB") for name in BACKGROUNDS]
    return {
        "jpeg 80": jpeg(80),
        "crop 97%": crop(0.97),
        "crop 90%": crop(0.90),
        "resize 75%": resize(0.75),
        "in a picture": in_a_picture(backgrounds),
    }


def copy_changed(source: Path, target: Path, change: Change) -> None:
    """target/<path inside source>: each image of source, changed (kept if already made)."""
    for path in map(Path, find_images([source])):
        image, save = change(Image.open(path).convert("RGB"), random.Random(path.name))
        out = (target / path.relative_to(source)).with_suffix(".jpg" if save["format"] == "JPEG" else ".png")
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            image.save(out, **save)


def evaluate(folders: list[Path], options: list[str]) -> dict[str, dict]:
    """Per-source ROC AUC and balanced accuracy from `deepscan evaluate`, keyed by the folder."""
    command = [sys.executable, "-m", "deepscan", "evaluate", *map(str, folders), "--format", "json", *options]
    figures = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    sources = figures.get("sources", {str(folders[0]): figures})
    return {name: {k: round(card[k], 3) for k in ("roc_auc", "balanced_accuracy")} for name, card in sources.items()}


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
    for label, change in changes(args.sample_images).items():
        folders = [args.work / label.replace(" ", "-").replace("%", "") / name for name in names]
        for data, folder in zip(args.data, folders, strict=True):
            copy_changed(data, folder, change)
        rows[label] = evaluate(folders, options)
    print(f"| change | {' | '.join(f'{name}: AUC, balanced accuracy' for name in names)} |")
    print(f"|---|{'---|' * len(names)}")
    for label, figures in rows.items():
        cells = [f"{card['roc_auc']:.3f}, {card['balanced_accuracy']:.3f}" for card in figures.values()]
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
