"""Threshold search: deepscan's sorted sweep against the quadratic scan it replaced, in one run.

python bench/threshold_search.py [--count 50000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from deepscan.evaluate import choose_threshold


def quadratic_baseline(scores: np.ndarray, labels: np.ndarray) -> float:
    """The earlier search: every candidate threshold compared with every score."""
    distinct = np.unique(scores)
    candidates = np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [1.0]])
    best, best_value = 0.5, -1.0
    for cut in candidates:
        flagged = scores >= cut
        value = (flagged[labels].mean() + 1 - flagged[~labels].mean()) / 2
        if value > best_value:
            best, best_value = float(cut), value
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, args.count).astype(bool)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    timings = {}
    for name, search in (("sorted sweep", choose_threshold), ("quadratic baseline", quadratic_baseline)):
        started = time.perf_counter()
        cut = search(scores, labels)
        timings[name] = time.perf_counter() - started
        print(f"{name:>20}: {timings[name]:8.3f} s  threshold {cut:.6f}")
    print(f"speed-up: {timings['quadratic baseline'] / timings['sorted sweep']:.0f}x at {args.count:,} scores")


if __name__ == "__main__":
    main()
