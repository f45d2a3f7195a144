"""Start-up: `deepscan --help`, `--version` and a command's help against importing Typer and Rich alone, in one run.

python bench/cli_start.py [--runs 15]

Each is a fresh process (as a user's shell starts one); the median of --runs is
reported with its ratio to the baseline, whose target is at most 1.5x.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BASELINE = [sys.executable, "-c", "import typer, rich.console, rich.table"]
DEEPSCAN = [sys.executable, "-m", "deepscan"]
CASES = {
    "import typer and rich (baseline)": BASELINE,
    "deepscan --help": [*DEEPSCAN, "--help"],
    "deepscan --version": [*DEEPSCAN, "--version"],
    "deepscan scan --help": [*DEEPSCAN, "scan", "--help"],
}


def median_seconds(command: list[str], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for command in CASES.values():
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # warm the file cache first
    baseline = None
    print("| case | median s | ratio |\n|---|---|---|")
    for name, command in CASES.items():
        seconds = median_seconds(command, args.runs)
        baseline = baseline or seconds
        print(f"| {name} | {seconds:.3f} | {seconds / baseline:.2f} |")


if __name__ == "__main__":
    main()
