"""Build the `photos` training source: ordinary photos and Stable Diffusion 1.x pictures from one pinned commit.

    python scripts/photos_data.py GIT_DIR --out runs/data/photos [--ood ../shared/ood]
    python scripts/photos_data.py GIT_DIR --out runs/data/photo_reals --only real

GIT_DIR is a git directory of DHANUSH7140/REAL-VS-AI-IMAGE-DETECTION-AND-SIMILAR-OBJECT-DETECTION
(a clone, or the snapshot the search tool's fetch brings); the script reads the pinned commit
from it, never the work tree, and writes each image's original bytes (no re-encoding) to
OUT/{train,val}/{real,fake}/, split per class by a seeded draw (15% to val). Files that equal
or nearly equal (perceptual hash within 4 bits) an image of ../shared/ood are dropped, so the
validation set stays unseen. It prints counts and licences. No image is ever committed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

REPO = "DHANUSH7140/REAL-VS-AI-IMAGE-DETECTION-AND-SIMILAR-OBJECT-DETECTION"
COMMIT = "02903c30d7dc18d89828b2afcc5ab39d06f1bc70"
FOLDERS = {  # class -> folder in the repository at COMMIT
    "real": "visionprobe/backend/data/real",
    "fake": "visionprobe/backend/data/ai",
}
LICENCES = {
    "real/coco_*": "COCO photos (Flickr): annotations CC BY 4.0, images under their Flickr licences; research use",
    "real/imagenet_*": "ImageNet photos: ImageNet terms, non-commercial research only",
    "fake/diffusion_*": "Stable Diffusion 1.x pictures from DiffusionDB: CC0 1.0",
    "repository": "states no licence; the images were resized to 512x512, JPEG quality 95, by its own script",
}
VAL_SHARE = 0.15
NEAR_BITS = 4


def git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def phash(data: bytes) -> int:
    """64-bit DCT perceptual hash: the signs of the 8x8 lowest frequencies of a 32x32 grey copy against their median."""
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((32, 32), Image.Resampling.LANCZOS), float)
    n = np.arange(32)
    dct = np.cos(np.pi * (2 * n[None, :] + 1) * n[:, None] / 64)
    low = (dct @ grey @ dct.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int("".join("1" if b else "0" for b in bits), 2)


def ood_fingerprints(ood: Path) -> tuple[set[str], list[int]]:
    images = {".jpg", ".jpeg", ".png", ".webp"}
    files = [p for p in sorted(ood.rglob("*")) if p.is_file() and p.suffix.lower() in images]
    data = [p.read_bytes() for p in files]
    return {hashlib.sha256(d).hexdigest() for d in data}, [phash(d) for d in data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("git_dir", type=Path, help=f"git directory holding {REPO} at {COMMIT[:7]}")
    parser.add_argument("--out", type=Path, default=Path("runs/data/photos"))
    parser.add_argument("--ood", type=Path, default=Path("../shared/ood"), help="validation set to keep unseen")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--only", choices=sorted(FOLDERS), help="one class alone (the reals: more kinds of real)")
    args = parser.parse_args()

    git(args.git_dir, "cat-file", "-e", f"{COMMIT}^{{commit}}")  # fails loudly when the commit is not there
    sha256s, hashes = ood_fingerprints(args.ood) if args.ood.is_dir() else (set(), [])
    print(f"{REPO} @ {COMMIT}")
    print(f"guard: {len(sha256s)} images of {args.ood} (sha256, and pHash within {NEAR_BITS} bits)")
    for label, folder in FOLDERS.items():
        if args.only and label != args.only:
            continue
        names = sorted(git(args.git_dir, "ls-tree", "--name-only", f"{COMMIT}:{folder}").decode().split())
        random.Random(args.seed).shuffle(names)
        val_count = round(len(names) * VAL_SHARE)
        kept, dropped = {"train": 0, "val": 0}, 0
        for index, name in enumerate(names):
            data = git(args.git_dir, "cat-file", "blob", f"{COMMIT}:{folder}/{name}")
            fingerprint = phash(data)
            if hashlib.sha256(data).hexdigest() in sha256s or any(
                (fingerprint ^ other).bit_count() <= NEAR_BITS for other in hashes
            ):
                dropped += 1
                continue
            split = "val" if index < val_count else "train"
            target = args.out / split / label / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            kept[split] += 1
        print(f"{label}: {folder}: {len(names)} files, train {kept['train']}, val {kept['val']}, dropped {dropped}")
    print("licences (research use only; never ship these images or a model's claim to them):")
    for what, licence in LICENCES.items():
        print(f"  {what}: {licence}")


if __name__ == "__main__":
    main()
