"""What reading metadata evidence costs a scan of ordinary JPEGs without metadata, in one run.

    python bench/evidence_cost.py [--count 3000] [--runs 3]

Two measures: the evidence reader alone, in this process, over every file
(images/s); and the real CLI on the same files with and without
--no-evidence, runs alternating, median and fastest of each (whole processes,
start-up included, so the ratio understates the per-file cost a little; on a
VM whose runs are bimodal the fastest runs compare best).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from run import generate, run_scan

from deepscan.evidence import EvidenceColumn
from deepscan.model import packaged_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="deepscan-evidence-")) / "crops"
    paths = generate(folder, args.count, {"crop256": 1.0})
    provider = EvidenceColumn()
    started = time.perf_counter()
    found = sum(bool(provider.values(path, None)["evidence"]) for path in paths)
    reader_rate = len(paths) / (time.perf_counter() - started)
    times: dict[str, list[float]] = {"with evidence": [], "--no-evidence": []}
    for _ in range(args.runs):
        times["with evidence"].append(run_scan(folder, packaged_model(), 64)[1])
        times["--no-evidence"].append(run_scan(folder, packaged_model(), 64, "--no-evidence")[1])
    with_evidence, without = (statistics.median(times[name]) for name in ("with evidence", "--no-evidence"))
    print(f"{args.count} 256px JPEG crops without metadata ({found} with evidence found)")
    print(f"evidence reader alone: {reader_rate:,.0f} images/s ({1e6 / reader_rate:.0f} us per file)")
    for name, runs in times.items():
        print(f"deepscan scan {name:>14}: median {statistics.median(runs):.2f} s of {[round(t, 2) for t in runs]}")
    print(f"scan time with evidence / without: median {with_evidence / without:.3f}, ", end="")
    print(f"fastest runs {min(times['with evidence']) / min(times['--no-evidence']):.3f}")


if __name__ == "__main__":
    main()
