"""Validation figures per source against the share of training images used (for MODEL_CARD.md).

    python scripts/learning_curve.py ../shared/data ../shared/faceswap --fractions 0.25 0.5 \\
        --work runs/curve -- --epochs 16 --jpeg 0.5 --blur 0.5

Each fraction trains on a seeded share of every DATA_DIR/train (linked, never copied;
drawn by group, so the frames of one video stay together, and per class) with the train
options given after '--', and evaluates on each whole DATA_DIR/val.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

from deepscan.discovery import find_images
from deepscan.evaluate import GROUP_PATTERN, group_keys


def subset(data: Path, fraction: float, folder: Path, seed: int = 1234) -> None:
    """folder/train/{real,fake}: links to a share of each class's groups; folder/val: a link to the whole val."""
    for label in ("real", "fake"):
        groups: dict[str, list[str]] = {}
        paths = list(find_images([data / "train" / label]))
        for path, key in zip(paths, group_keys(paths, GROUP_PATTERN), strict=True):
            groups.setdefault(key, []).append(path)
        keys = sorted(groups)
        random.Random(seed).shuffle(keys)
        target = folder / "train" / label
        target.mkdir(parents=True, exist_ok=True)
        for key in keys[: round(len(keys) * fraction)]:
            for path in groups[key]:
                (target / Path(path).name).symlink_to(Path(path).resolve())
    (folder / "val").symlink_to((data / "val").resolve(), target_is_directory=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--work", type=Path, default=Path("runs/curve"))
    ours, recipe = _split_at_double_dash(sys.argv[1:])  # after '--': options for deepscan train
    args = parser.parse_args(ours)
    deepscan = [sys.executable, "-m", "deepscan"]
    for fraction in args.fractions:
        folders = [args.work / f"{fraction:g}" / data.resolve().name for data in args.data]
        for data, folder in zip(args.data, folders, strict=True):
            if not folder.exists():
                subset(data, fraction, folder)
        model = args.work / f"model-{fraction:g}.keras"
        subprocess.run([*deepscan, "train", *map(str, folders), "--out", str(model), "--target-fpr", "0.1", *recipe],
                       check=True)  # fmt: skip
        vals = [str(data / "val") for data in args.data]
        card = subprocess.run(
            [*deepscan, "evaluate", *vals, "--model", str(model), "--format", "json"],
            check=True,
            capture_output=True,
            text=True,
        )
        sources = json.loads(card.stdout)["sources"]
        keys = ("roc_auc", "balanced_accuracy", "false_positive_rate")
        per_source = {Path(name).parent.name: {k: round(card[k], 4) for k in keys} for name, card in sources.items()}
        print(json.dumps({"fraction": fraction, **per_source}), flush=True)


def _split_at_double_dash(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


if __name__ == "__main__":
    main()
