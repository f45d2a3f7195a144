"""deepscan benchmark: how close does `deepscan scan` come to what the machine allows?

Measures, in one run, on the same generated files and the same model:
  1. decode ceiling   - read + decode + resize through the scan's own tf.data pipeline, no model
  2. model ceiling    - the model alone on uint8 batches already in memory
  3. scan end to end  - the real CLI in a subprocess; steady-state rate from two runs of
                        different sizes (a quarter, all), start-up (process start to first row)
                        separately
  4. per-image        - the published card's usage: load_img + model.predict per image
  5. memory           - peak RSS of the scan at a small and a 10x larger file count
  6. --cache          - whole-process time of a first scan and of a re-scan of the same tree
plus the DCT-domain (draft) decode gain on camera-sized JPEGs, and, per architecture,
parameters, multiply-adds, inference and training images/s.

    python bench/run.py            # full run (a few minutes on 2 cores)
    python bench/run.py --quick    # smoke test: tiny counts, same code paths
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from deepscan.model import ARCHITECTURES, Detector, build_model, load_model, save_model
from deepscan.pipeline import image_batches
from deepscan.runtime import tensorflow
from deepscan.scorers import DEFAULT_BATCH_SIZE

# Share of each kind of file in the generated mix: (name, width, height, format).
KINDS = {
    "crop256": (256, 256, "JPEG"),
    "photo1k": (1024, 768, "JPEG"),
    "camera12mp": (4000, 3000, "JPEG"),
    "png512": (512, 512, "PNG"),
}
DEFAULT_MIX = "crop256=0.7,photo1k=0.1,camera12mp=0.1,png512=0.1"


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, share = part.split("=")
        if name not in KINDS:
            raise SystemExit(f"unknown kind {name!r}; choose from {', '.join(KINDS)}")
        mix[name] = float(share)
    total = sum(mix.values())
    return {name: share / total for name, share in mix.items()}


def natural_image(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Smooth colour fields plus mild noise: compresses like a photo, unlike pure noise."""
    small = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))


def generate(folder: Path, count: int, mix: dict[str, float], seed: int = 0) -> list[str]:
    """Write `count` files of the mix; one image per kind is rendered, the rest are byte copies."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    counts = {name: round(share * count) for name, share in mix.items()}
    counts[max(counts, key=counts.get)] += count - sum(counts.values())
    for name, n in counts.items():
        width, height, fmt = KINDS[name]
        variants = []
        for v in range(min(n, 4)):  # a few distinct images per kind, copied
            buffer_path = folder / f".{name}-{v}"
            natural_image(width, height, rng).save(buffer_path, format=fmt, quality=90)
            variants.append(buffer_path.read_bytes())
            buffer_path.unlink()
        suffix = ".jpg" if fmt == "JPEG" else ".png"
        for i in range(n):
            path = folder / f"{name}_{i:05d}{suffix}"
            path.write_bytes(variants[i % len(variants)])
            paths.append(str(path))
    return sorted(paths)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def timed(work: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    count = work()
    return count, time.perf_counter() - started


def decode_ceiling(paths: list[str], size: int, batch_size: int) -> float:
    def work() -> int:
        return sum(int(batch[1].shape[0]) for batch in image_batches(paths, size, batch_size))

    return rate(*timed(work))


def model_ceiling(detector: Detector, batch_size: int, batches: int) -> float:
    size = detector.spec.image_size
    pixels = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    for _ in range(2):  # trace, and let oneDNN settle
        detector.predict(pixels)

    def work() -> int:
        for _ in range(batches):
            detector.predict(pixels)
        return batches * batch_size

    return rate(*timed(work))


def native_decode_ceiling(paths: list[str], size: int, batch_size: int) -> float:
    """TensorFlow's own JPEG decoder in tf.data: the speed given up for per-file error rows."""
    tf = tensorflow()

    def decode(path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.cast(tf.image.resize(image, (size, size)), tf.uint8)

    dataset = tf.data.Dataset.from_tensor_slices(paths).map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def work() -> int:
        return sum(int(batch.shape[0]) for batch in dataset.batch(batch_size).prefetch(2))

    return rate(*timed(work))


def per_image_baseline(detector: Detector, paths: list[str]) -> float:
    """The published card's demo: one load_img + model.predict call per image."""
    import keras

    size = detector.spec.image_size

    def work() -> int:
        for path in paths:
            image = keras.utils.load_img(path, target_size=(size, size))
            batch = np.expand_dims(keras.utils.img_to_array(image), 0)
            detector.keras_model.predict(batch, verbose=0)
        return len(paths)

    return rate(*timed(work))


def face_mode_rate(detector: Detector, paths: list[str], batch_size: int) -> float | None:
    """Images/s of face mode (decode, MTCNN, crops, model) in-process, as the scan job runs it; None without mtcnn."""
    from deepscan.faces import FaceSettings
    from deepscan.job import ScanJob, ScanSettings

    try:
        settings = ScanSettings(model=detector.path, faces=FaceSettings(), batch_size=batch_size)
    except Exception:
        return None

    def work() -> int:
        with ScanJob(settings) as job:
            return sum(len(files) for files in job.run(paths))

    return rate(*timed(work))


def draft_gain(paths: list[str], size: int) -> tuple[float, float]:
    """Images/s decoding camera JPEGs fully then resizing, vs deepscan's DCT-domain draft decode."""
    from deepscan.pipeline import decode_image

    def full() -> int:
        for path in paths:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        return len(paths)

    def drafted() -> int:
        for path in paths:
            decode_image(path, size)
        return len(paths)

    return rate(*timed(full)), rate(*timed(drafted))


SCAN_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "start = time.perf_counter()\n"
    "proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
    "first = None\n"
    "for line in proc.stdout:\n"
    "    if first is None:\n"
    "        first = time.perf_counter() - start\n"
    "proc.wait()\n"
    "total = time.perf_counter() - start\n"
    "print(first, total, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, proc.returncode)\n"
)


def run_scan(folder: Path, model: Path, batch_size: int, *extra: str) -> tuple[float, float, float]:
    """(seconds to first row, total seconds, peak RSS in MiB) of the real CLI, in its own process."""
    command = [sys.executable, "-m", "deepscan", "scan", str(folder), "--model", str(model)]
    command += ["--format", "jsonl", "--quiet", "--batch-size", str(batch_size), *extra]
    out = subprocess.run(
        [sys.executable, "-c", SCAN_WRAPPER, *command], capture_output=True, text=True, check=True
    ).stdout.split()
    first, total, rss_kib, code = float(out[0]), float(out[1]), int(out[2]), int(out[3])
    if code not in (0, 3):
        raise SystemExit(f"scan failed with exit code {code}")
    return first, total, rss_kib / 1024


def steady_rate(paths: list[str], folder: Path, model: Path, batch_size: int) -> float:
    """Images/s of the CLI once started: the difference between scanning a quarter and all of ``paths``.

    The quarter is every fourth file, so it holds the same mix of kinds as the whole.
    """
    quarter = paths[::4]
    for name, members in (("quarter", quarter), ("all", paths)):
        (folder / name).mkdir(parents=True)
        for path in members:
            os.link(path, folder / name / Path(path).name)
    # A few seconds' difference between two runs is noisy on a small machine: the median of three each.
    t_quarter, t_all = (
        statistics.median(run_scan(folder / name, model, batch_size)[1] for _ in range(3))
        for name in ("quarter", "all")
    )
    return rate(len(paths) - len(quarter), t_all - t_quarter)


def multiply_adds(model: object) -> int:
    """Multiply-accumulate operations of one image through Conv2D and Dense layers."""
    import keras

    total = 0
    for layer in model.layers:  # type: ignore[attr-defined]
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += height * width * channels_out * kh * kw * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def training_rate(arch: str, batch_size: int, steps: int) -> float:
    model, spec = build_model(arch)
    model.compile("adam", "binary_crossentropy")
    size = spec.image_size
    x = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3)).astype("float32")
    y = np.zeros((batch_size, 1), "float32")
    model.train_on_batch(x, y)

    def work() -> int:
        for _ in range(steps):
            model.train_on_batch(x, y)
        return steps * batch_size

    return rate(*timed(work))


def table(title: str, header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="files in the main run (default 1000)")
    parser.add_argument("--memory-count", type=int, default=10000, help="files for the large memory run")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"kinds and shares (default {DEFAULT_MIX})")
    parser.add_argument("--model", type=Path, help="model file (default: the packaged model)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--baseline-count", type=int, default=100, help="images for the per-image baseline")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (CI): same stages, small counts")
    args = parser.parse_args()
    if args.quick:
        args.count, args.memory_count, args.baseline_count = 40, 80, 5
        args.mix = "crop256=0.75,photo1k=0.1,camera12mp=0.05,png512=0.1"
    mix = parse_mix(args.mix)
    tf = tensorflow()
    work = Path(tempfile.mkdtemp(prefix="deepscan-bench-"))
    try:
        print(f"generating {args.count} files ({args.mix}) in {work} ...", file=sys.stderr)
        files = generate(work / "main", args.count, mix)
        crops = [p for p in files if "crop256" in p]
        detector = load_model(args.model)
        model_path = detector.path
        size = detector.spec.image_size
        device = ", ".join(d.device_type for d in tf.config.list_physical_devices()) + f"; {os.cpu_count()} CPU cores"

        print("decode ceiling ...", file=sys.stderr)
        decode_all = decode_ceiling(files, size, args.batch_size)
        decode_crops = decode_ceiling(crops, size, args.batch_size)
        native_crops = native_decode_ceiling(crops, size, args.batch_size)
        print("model ceiling ...", file=sys.stderr)
        model_rate = model_ceiling(detector, args.batch_size, batches=3 if args.quick else 30)
        print("scan end to end ...", file=sys.stderr)
        first_all, _, rss_main = run_scan(work / "main", model_path, args.batch_size)
        steady = steady_rate(files, work / "steady-mix", model_path, args.batch_size)
        print("per-image baseline ...", file=sys.stderr)
        sample = files[:: max(1, len(files) // args.baseline_count)]  # spread over the mix, not one kind
        baseline = per_image_baseline(detector, sample)
        baseline_crops = per_image_baseline(detector, crops[: args.baseline_count])
        print("face mode ...", file=sys.stderr)
        faces_rate = face_mode_rate(detector, sample, args.batch_size)
        cameras = [p for p in files if "camera12mp" in p][:20]
        full_rate, draft_rate = draft_gain(cameras, size) if cameras else (float("nan"), float("nan"))
        print("memory ...", file=sys.stderr)
        big = work / "memory"
        generate(big, args.memory_count, {"crop256": 1.0}, seed=1)
        mem_small_dir = work / "memory-small"
        mem_small_dir.mkdir()
        for path in sorted(big.iterdir())[: args.memory_count // 10]:
            os.link(path, mem_small_dir / path.name)
        _, t_small, rss_small = run_scan(mem_small_dir, model_path, args.batch_size)
        _, t_big, rss_big = run_scan(big, model_path, args.batch_size)
        crops_rate = rate(args.memory_count - args.memory_count // 10, t_big - t_small)
        print("cached re-scan ...", file=sys.stderr)
        cached_dir = work / "cached"
        cached_dir.mkdir()
        for path in sorted(big.iterdir())[: max(args.memory_count * 3 // 10, 1)]:
            os.link(path, cached_dir / path.name)
        database = str(work / "scores.db")
        _, first_scan, _ = run_scan(cached_dir, model_path, args.batch_size, "--cache", database)
        _, rescan, _ = run_scan(cached_dir, model_path, args.batch_size, "--cache", database)

        combined = 1 / (1 / decode_all + 1 / model_rate)  # both stages share the same cores
        report = [
            f"deepscan benchmark - {platform.node()} ({platform.machine()}), devices: {device}",
            f"model: {model_path.name} ({detector.spec.arch}, {size}x{size}), batch size {args.batch_size}, "
            f"{args.count} files, mix {args.mix}",
            table(
                "Throughput",
                ("stage", "images/s", "ratio"),
                [
                    ("decode ceiling (mix)", f"{decode_all:.0f}", ""),
                    ("decode ceiling (256px JPEG crops)", f"{decode_crops:.0f}", "1.00"),
                    (
                        "TensorFlow's own decode_jpeg, no error rows (256px crops)",
                        f"{native_crops:.0f}",
                        f"{native_crops / decode_crops:.2f}",
                    ),
                    ("model ceiling (tensors in memory)", f"{model_rate:.0f}", ""),
                    ("combined ceiling 1/(1/decode+1/model)", f"{combined:.0f}", "1.00"),
                    ("**deepscan scan, steady state (mix)**", f"{steady:.0f}", f"{steady / combined:.2f} of combined"),
                    ("per-image load_img + predict, mix (baseline)", f"{baseline:.1f}", "1.00"),
                    ("**scan vs per-image baseline, mix**", "", f"{steady / baseline:.0f}x"),
                    (
                        f"deepscan scan, steady state ({args.memory_count} 256px JPEG crops)",
                        f"{crops_rate:.0f}",
                        f"{crops_rate / model_rate:.2f} of model ceiling",
                    ),
                    ("per-image load_img + predict, 256px crops (baseline)", f"{baseline_crops:.1f}", "1.00"),
                    ("**scan vs per-image baseline, 256px crops**", "", f"{crops_rate / baseline_crops:.0f}x"),
                    (
                        "scan --faces (decode, MTCNN, crops, model; mix)",
                        "n/a (no mtcnn)" if faces_rate is None else f"{faces_rate:.1f}",
                        "" if faces_rate is None else f"{1000 / faces_rate:.0f} ms/image",
                    ),
                ],
            ),
            table(
                "Start-up, cache and memory",
                ("measure", "value"),
                [
                    ("process start to first row", f"{first_all:.2f} s"),
                    (
                        f"first scan with --cache, {len(list(cached_dir.iterdir()))} crops (whole process)",
                        f"{first_scan:.2f} s",
                    ),
                    (
                        "same tree again, every file cached (whole process)",
                        f"{rescan:.2f} s ({first_scan / rescan:.1f}x faster)",
                    ),
                    (f"peak RSS, {args.memory_count // 10} files", f"{rss_small:.0f} MiB"),
                    (f"peak RSS, {args.memory_count} files", f"{rss_big:.0f} MiB ({rss_big / rss_small:.2f}x)"),
                    (f"peak RSS, main run ({args.count} files, mix)", f"{rss_main:.0f} MiB"),
                ],
            ),
            table(
                "Camera-sized JPEGs (4000x3000): decode + resize",
                ("method", "images/s", "ratio"),
                [
                    ("full decode, then resize", f"{full_rate:.1f}", "1.00"),
                    (
                        "deepscan: DCT-domain draft decode, then resize",
                        f"{draft_rate:.1f}",
                        f"{draft_rate / full_rate:.1f}x",
                    ),
                ],
            ),
        ]
        rows = []
        for name in sorted(ARCHITECTURES):
            model, spec = build_model(name)
            arch_path = work / f"{name}.keras"
            save_model(model, spec, arch_path)
            arch = load_model(arch_path)
            rows.append(
                (
                    name,
                    f"{spec.image_size}",
                    f"{model.count_params() / 1e6:.2f} M",
                    f"{multiply_adds(model) / 1e6:.0f} M",
                    f"{model_ceiling(arch, args.batch_size, batches=3 if args.quick else 10):.0f}",
                    f"{training_rate(name, 32, steps=2 if args.quick else 8):.0f}",
                    f"{arch_path.stat().st_size / 1e6:.1f} MB",
                )
            )
        report.append(
            table(
                "Architectures (untrained weights; speed only)",
                ("arch", "input", "params", "multiply-adds", "inference img/s", "training img/s", "file"),
                rows,
            )
        )
        print("\n".join(report))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
