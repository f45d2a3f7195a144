"""Smoke test of the benchmark: every stage runs and is reported. No timing is asserted here."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "run.py"


def test_quick_benchmark_reports_every_stage():
    result = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    for stage in (
        "decode ceiling",
        "model ceiling",
        "combined ceiling",
        "deepscan scan, steady state",
        "per-image load_img + predict",
        "scan --faces",
        "process start to first row",
        "peak RSS",
        "every file cached",
        "decode_jpeg",
        "draft decode",
        "Architectures",
        "training img/s",
    ):
        assert stage in result.stdout, stage
