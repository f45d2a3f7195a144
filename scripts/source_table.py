"""Turn `deepscan evaluate --format json` figures into the per-source Markdown table MODEL_CARD shows.

    deepscan evaluate ../shared/data/val ../shared/faceswap/val ../shared/ood/*/ --format json --out d.json
    python scripts/source_table.py d.json [more.json ...]

One row per source folder and file: ROC AUC where the folder holds both classes, and the share
of its real images and of its fakes flagged at the model's threshold, each with its count and
95% interval, so a recipe that gains on the training sources' val/ but loses elsewhere shows it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any


def share(card: dict[str, Any], truth: str, rate: str) -> str:
    total = card["per_class"][truth]["support"]
    if not total:
        return ""
    low, high = card["intervals"][rate]
    return f"{card['confusion'][truth]['fake']}/{total} = {card[rate]:.1%} ({low:.0%}-{high:.0%})"


def auc(card: dict[str, Any]) -> str:
    if math.isnan(card["roc_auc"]):
        return ""
    low, high = card["intervals"]["roc_auc"]
    return f"{card['roc_auc']:.3f} ({low:.3f}-{high:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", type=Path, nargs="+", help="JSON written by deepscan evaluate --format json")
    args = parser.parse_args()
    print("| model | source | threshold | ROC AUC (95% CI) | real flagged | fakes flagged |")
    print("|---|---|---|---|---|---|")
    for path in args.figures:
        figures = json.loads(path.read_text())
        model = Path(figures["model"]).name + (" --faces" if figures["faces"] else "")
        for source, card in figures["sources"].items():
            name = "/".join(Path(source).parts[-2:]) if Path(source).name == "val" else Path(source).name
            row = (model, name, f"{card['threshold']:.3f}", auc(card), share(card, "real", "false_positive_rate"))
            print("| " + " | ".join((*row, share(card, "fake", "true_positive_rate"))) + " |")


if __name__ == "__main__":
    main()
