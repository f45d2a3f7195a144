"""Regenerate sample_images/: public-domain photos shipped in scikit-image, plus two made here.

pip install scikit-image && python scripts/make_sample_images.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

OUT = Path(__file__).resolve().parent.parent / "sample_images"
PHOTOS = {  # name -> scikit-image loader (licences in README.md)
    "astronaut.jpg": data.astronaut,
    "rocket.jpg": data.rocket,
    "coffee.jpg": data.coffee,
    "chelsea_cat.jpg": data.chelsea,
    "camera_man.png": data.camera,
    "hubble_deep_field.jpg": data.hubble_deep_field,
}


def rendered_gradient(size: int = 256) -> np.ndarray:
    """A smooth colour field with soft discs: an image no camera took."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([x, y, 1 - (x + y) / 2], axis=-1)
    for cx, cy, r in ((0.3, 0.4, 0.15), (0.7, 0.6, 0.2)):
        image *= 1 - 0.5 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / r**2))[..., None]
    return (image * 255).astype(np.uint8)


def seeded_noise(size: int = 256) -> np.ndarray:
    return np.random.default_rng(1234).integers(0, 256, (size, size, 3), dtype=np.uint8)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, load in PHOTOS.items():
        image = Image.fromarray(load())
        image.thumbnail((512, 512))
        image.save(OUT / name, quality=90)
    Image.fromarray(rendered_gradient()).save(OUT / "rendered_gradient.png")
    Image.fromarray(seeded_noise()).save(OUT / "seeded_noise.webp", lossless=True)


if __name__ == "__main__":
    main()
