"""Ray against the local pipeline on this machine, in one run, and a worked estimate for a cluster.

    python bench/ray_scan.py [--count 3000] [--model M]

On the same generated 256 px JPEGs and the same model (the packaged default):
  1. local          - ScanJob with the local tf.data scorer (every core for decoding and TensorFlow)
  2. ray            - ScanJob with the Ray scorer on a Ray started in this process (all CPUs)
For Ray, the wall time splits into start-up (ray.init, actor start and model load: up to the first
row) and a steady rate after it. Per-worker rates measured here (one decode task on one CPU; one
single-threaded scoring actor on one CPU, the model on batches in memory) feed the estimate of N
nodes: a node gives min(its actors' scoring rate, its decode tasks' rate); nodes add up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from run import generate

from deepscan.job import ScanJob, ScanSettings
from deepscan.model import load_model, packaged_model
from deepscan.pipeline import decode_or_error
from deepscan.ray_scorer import ActorPlan, ray_backend
from deepscan.runtime import tensorflow


def scan_rate(paths: list[str], settings: ScanSettings, backend=None) -> tuple[float, float, float]:
    """(whole-run images/s, seconds to the first batch, steady images/s after it)."""
    job = ScanJob(settings) if backend is None else ScanJob(settings, backend=backend)
    started = time.perf_counter()
    first_at, after_first = None, 0
    with job:
        for files in job.run(paths):
            if first_at is None:
                first_at = time.perf_counter()
            else:
                after_first += len(files)
    total = time.perf_counter() - started
    assert first_at is not None
    return len(paths) / total, first_at - started, after_first / max(time.perf_counter() - first_at, 1e-9)


def decode_rate_one_cpu(paths: list[str], size: int) -> float:
    started = time.perf_counter()
    for path in paths:
        decode_or_error(os.fsencode(path), size)
    return len(paths) / (time.perf_counter() - started)


def actor_rate_one_cpu(model: Path | str, batch_size: int, batches: int) -> float:
    """The scoring actor's work on one thread: the model on uint8 batches already decoded."""
    tf = tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    detector = load_model(model)
    size = detector.spec.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    detector.predict(pixels)  # trace once
    started = time.perf_counter()
    for _ in range(batches):
        detector.predict(pixels)
    return batch_size * batches / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", type=Path, default=packaged_model())
    args = parser.parse_args()
    import ray

    folder = Path(tempfile.mkdtemp(prefix="deepscan-ray-")) / "crops"
    paths = generate(folder, args.count, {"crop256": 1.0})
    settings = ScanSettings(model=args.model, batch_size=args.batch_size, evidence=False)
    cpus = os.cpu_count() or 1
    size = load_model(args.model).spec.image_size

    local = scan_rate(paths, settings)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        on_ray = scan_rate(paths, settings, ray_backend("local"))
    finally:
        ray.shutdown()
    decode_cpu = decode_rate_one_cpu(paths[:500], size)
    # In a fresh process: TensorFlow's thread pools are fixed once this one has used them.
    probe = f"import ray_scan; print(ray_scan.actor_rate_one_cpu({str(args.model)!r}, {args.batch_size}, 20))"
    found = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).parent, capture_output=True, text=True)
    actor_cpu = float(found.stdout.split()[-1])

    plan = ActorPlan.for_cluster(cpus, 0)
    print(f"{args.count} JPEGs 256x256, model {args.model.name}, batch {args.batch_size}, {cpus} CPUs\n")
    print("| | images/s (whole run) | to first batch (s) | steady images/s | vs local |")
    print("|---|---|---|---|---|")
    print(f"| local pipeline | {local[0]:.0f} | {local[1]:.1f} | {local[2]:.0f} | 1.00 |")
    print(f"| Ray, in process ({plan.describe()}) | {on_ray[0]:.0f} | {on_ray[1]:.1f} | {on_ray[2]:.0f} | "
          f"{on_ray[0] / local[0]:.2f} (steady {on_ray[2] / local[2]:.2f}) |")  # fmt: skip
    print("\nper-worker rates (one CPU each):")
    print(f"  decode task: {decode_cpu:.0f} images/s; scoring actor (model on one thread): {actor_cpu:.0f} images/s")
    print("\nestimate, N CPU-only nodes of C CPUs (C/2 single-threaded actors, C/2 CPUs decoding):")
    for nodes, node_cpus in ((1, 2), (4, 16), (16, 32)):
        node = min(node_cpus / 2 * actor_cpu, node_cpus / 2 * decode_cpu)
        print(f"  {nodes:>2} x {node_cpus:>2} CPUs: about {nodes * node:,.0f} images/s")
    print(
        "\nwith GPUs: one actor per GPU, fed by the node's other CPUs decoding; a node gives at most "
        f"(CPUs - GPUs) x {decode_cpu:.0f} images/s of decoding,\n  e.g. 8 nodes x (1 GPU, 16 CPUs): at most "
        f"{8 * 15 * decode_cpu:,.0f} images/s unless the GPU is slower (not measured here: no GPU)."
    )


if __name__ == "__main__":
    main()
