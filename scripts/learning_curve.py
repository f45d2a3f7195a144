"""Validation ROC AUC against the share of training images used (for MODEL_CARD.md).

    python scripts/learning_curve.py ../shared/data --fractions 0.25 0.5 --work runs/curve

Each fraction trains the default model's recipe on a seeded, class-balanced subset of
DATA_DIR/train (linked, never copied) and evaluates on the whole DATA_DIR/val.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

from deepscan.discovery import find_images

RECIPE = ["--target-fpr", "0.1"]  # the train command's defaults are the shipped model's recipe


def subset(data: Path, fraction: float, folder: Path, seed: int = 1234) -> None:
    """folder/train/{real,fake}: links to a share of each class; folder/val: a link to the whole val."""
    for label in ("real", "fake"):
        files = list(find_images([data / "train" / label]))
        random.Random(seed).shuffle(files)
        target = folder / "train" / label
        target.mkdir(parents=True, exist_ok=True)
        for path in files[: round(len(files) * fraction)]:
            (target / Path(path).name).symlink_to(Path(path).resolve())
    (folder / "val").symlink_to((data / "val").resolve(), target_is_directory=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--work", type=Path, default=Path("runs/curve"))
    args = parser.parse_args()
    for fraction in args.fractions:
        folder = args.work / f"data-{fraction:g}"
        if not folder.exists():
            subset(args.data, fraction, folder)
        model = args.work / f"model-{fraction:g}.keras"
        deepscan = [sys.executable, "-m", "deepscan"]
        subprocess.run([*deepscan, "train", str(folder), "--out", str(model), *RECIPE], check=True)
        card = subprocess.run(
            [*deepscan, "evaluate", str(args.data / "val"), "--model", str(model), "--format", "json"],
            check=True,
            capture_output=True,
            text=True,
        )
        figures = json.loads(card.stdout)
        keys = ("roc_auc", "balanced_accuracy", "false_positive_rate")
        print(json.dumps({"fraction": fraction, **{k: round(figures[k], 4) for k in keys}}), flush=True)


if __name__ == "__main__":
    main()
