"""Make pictures that no camera took and no generative model made: noise, gradients, shapes, text, patterns.

    python scripts/synthetic_content.py --out runs/data/synthetic --count 600 --seed 1       # a training source
    python scripts/synthetic_content.py --out runs/check/synthetic --count 700 --seed 99 --flat  # a check set
    python scripts/synthetic_content.py --out runs/check/noise --count 3000 --seed 7 --flat --kind uniform_noise

The face and diffusion detectors were never meant to judge such content, so it must not come out
as a confident "fake": as training data it is a real-only source (OUT/{train,val}/real/, 15% to
val), and with --flat and another seed it is a check set (OUT/real/) that `deepscan evaluate`
reports as the share flagged. Sizes 48-640 px; JPEG at quality 30-100, PNG or WebP.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Rng = np.random.Generator


def uniform_noise(rng: Rng, w: int, h: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def gaussian_noise(rng: Rng, w: int, h: int) -> Image.Image:
    mean, spread = rng.uniform(40, 215, 3), rng.uniform(5, 80)
    return Image.fromarray(np.clip(rng.normal(mean, spread, (h, w, 3)), 0, 255).astype(np.uint8))


def blurred_noise(rng: Rng, w: int, h: int) -> Image.Image:
    return uniform_noise(rng, w, h).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 6)))


def gradient(rng: Rng, w: int, h: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * x / w + np.sin(angle) * y / h + 1) / 2
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    return Image.fromarray((start + t[..., None] * (end - start)).astype(np.uint8))


def shapes(rng: Rng, w: int, h: int) -> Image.Image:
    image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(1, 12)):
        box = sorted(rng.integers(0, w, 2)), sorted(rng.integers(0, h, 2))
        corners = [int(box[0][0]), int(box[1][0]), int(box[0][1]), int(box[1][1])]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(corners, fill=colour)
    return image


def text(rng: Rng, w: int, h: int) -> Image.Image:
    ink, paper = (int(rng.integers(0, 80)),) * 3, tuple(int(c) for c in rng.integers(180, 256, 3))
    image = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(image)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,;"))
    size = int(rng.integers(8, 28))
    for top in range(0, h, size + 4):
        draw.text((4, top), "".join(rng.choice(letters, 80)), fill=ink, font_size=size)
    return image


def pattern(rng: Rng, w: int, h: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    period = rng.uniform(2, 40)
    wave = (
        np.sin(x / period + rng.uniform(0, 3)) * np.cos(y / rng.uniform(2, 40))
        if rng.random() < 0.5
        else (((x // int(period)) + (y // int(period))) % 2 * 2.0 - 1)
    )
    colours = rng.uniform(0, 255, (2, 3))
    t = (wave[..., None] + 1) / 2
    return Image.fromarray((colours[0] + t * (colours[1] - colours[0])).astype(np.uint8))


KINDS: list[Callable[[Rng, int, int], Image.Image]] = [
    uniform_noise,
    gaussian_noise,
    blurred_noise,
    gradient,
    shapes,
    text,
    pattern,
]


def save(image: Image.Image, rng: Rng, stem: Path) -> None:
    kind = rng.random()
    if kind < 0.7:
        image.save(stem.with_suffix(".jpg"), quality=int(rng.integers(30, 101)))
    elif kind < 0.85:
        image.save(stem.with_suffix(".png"))
    else:
        image.save(stem.with_suffix(".webp"), quality=int(rng.integers(50, 101)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flat", action="store_true", help="OUT/real/ only (a check set), no train/val split")
    parser.add_argument("--kind", choices=[k.__name__ for k in KINDS], action="append", help="only these kinds")
    args = parser.parse_args()
    kinds = [k for k in KINDS if not args.kind or k.__name__ in args.kind]
    rng = np.random.default_rng(args.seed)
    val_count = 0 if args.flat else round(args.count * 0.15)
    for index in range(args.count):
        make = kinds[index % len(kinds)]
        w, h = (int(v) for v in rng.integers(48, 641, 2))
        folder = args.out / "real" if args.flat else args.out / ("val" if index < val_count else "train") / "real"
        folder.mkdir(parents=True, exist_ok=True)
        save(make(rng, w, h), rng, folder / f"{make.__name__}_{args.seed}_{index:05d}")
    print(f"{args.count} images ({', '.join(k.__name__ for k in kinds)}) in {args.out}")


if __name__ == "__main__":
    main()
