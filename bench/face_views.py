"""What a model's views cost in face mode: images/s of `scan --faces` with each model, as ratios to the first.

python bench/face_views.py DIR MODEL [MODEL ...] [--rounds 3]

Each model serves both roles (faces, and files without a face), as with `--model`. Each
job is warmed up on a few files (model and detector loaded, graphs traced), then the
whole folder is scanned once per round, the models taking turns; the median round counts.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from deepscan.discovery import find_images
from deepscan.faces import FaceSettings
from deepscan.job import ScanJob, ScanSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = [str(path) for path in find_images([str(args.folder)])]
    jobs = [ScanJob(ScanSettings(model=model, faces=FaceSettings(), evidence=False)) for model in args.models]
    for job in jobs:
        for _ in job.run(paths[:16]):
            pass
    seconds: list[list[float]] = [[] for _ in jobs]
    for _ in range(args.rounds):
        for job, taken in zip(jobs, seconds, strict=True):
            started = time.perf_counter()
            for _ in job.run(paths):
                pass
            taken.append(time.perf_counter() - started)
    print(f"scan --faces on {len(paths)} files of {args.folder}, median of {args.rounds} rounds")
    print("| model | views | images/s | ratio |\n|---|---|---|---|")
    base = len(paths) / statistics.median(seconds[0])
    for model, job, taken in zip(args.models, jobs, seconds, strict=True):
        speed = len(paths) / statistics.median(taken)
        print(f"| {model.name} | {job.models[0].spec.view_count} | {speed:.1f} | {speed / base:.2f} |")
        job.close()


if __name__ == "__main__":
    main()
