"""Cross-validated sweep of architectures and training recipes (backend-agnostic Keras).

Made to run on an accelerator with KERAS_BACKEND=jax (or torch), where TensorFlow is not
installed: images are decoded by deepscan's own decode_image; JPEG re-compression and blur
are drawn per image ahead of time with Pillow (K random variants each), flips and
brightness per batch with numpy. Each config is trained with a fixed cosine schedule on
k-1 folds of train+val and scored on the held-out fold; one JSON line per fold.
Needs scikit-learn (folds, ROC). The configs and results behind MODEL_CARD.md:

    KERAS_BACKEND=jax python scripts/cv_sweep.py ../shared/data --configs docs/cv_sweep/configs.json --workers 8
    python scripts/cv_sweep.py docs/cv_sweep/results.jsonl --summary
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from PIL import Image, ImageFilter

from deepscan.evaluate import labelled_images
from deepscan.model import ARCHITECTURES
from deepscan.pipeline import decode_image

K = 8  # augmentation variants per image


# Each config names a registered architecture and, optionally, its input size; the rest overrides BASE.
BASE = dict(
    size=None, epochs=40, lr=1e-3, batch=32, jpeg=0.3, blur=0.3, flip=True, bright=0.2, smooth=0.0, mixup=0.0, wd=0.0
)


def input_size(cfg: dict) -> int:
    return cfg["size"] or ARCHITECTURES[cfg["arch"]].default_size


def variant(job: tuple[np.ndarray, int, float, float]) -> np.ndarray:
    pixels, seed, jpeg, blur = job
    rng = np.random.default_rng(seed)
    image = Image.fromarray(pixels)
    if rng.random() < jpeg:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(30, 101)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if rng.random() < blur:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.1, 3.0))))
    return np.asarray(image)


def decode(job: tuple[str, int]) -> np.ndarray:
    return decode_image(*job)


def metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= 0.10
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_fpr10": float(tpr[ok].max()),
        "bal_acc_fpr10": float(((tpr + 1 - fpr) / 2)[ok].max()),
    }


def run(cfg: dict, images: np.ndarray, variants: np.ndarray, labels: np.ndarray, train_idx, test_idx, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = ARCHITECTURES[cfg["arch"]].build(input_size(cfg))
    rng = np.random.default_rng(seed)
    steps = math.ceil(len(train_idx) / cfg["batch"])

    class Batches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.order = rng.permutation(train_idx)

        def __len__(self) -> int:
            return steps

        def __getitem__(self, i: int):
            sel = self.order[i * cfg["batch"] : (i + 1) * cfg["batch"]]
            x = variants[rng.integers(0, K, len(sel)), sel].astype(np.float32)
            y = labels[sel].astype(np.float32)
            if cfg["flip"]:
                flip = rng.random(len(sel)) < 0.5
                x[flip] = x[flip, :, ::-1]
            if cfg["bright"]:
                x = np.clip(x + rng.uniform(-1, 1, (len(sel), 1, 1, 1)) * cfg["bright"] * 255, 0, 255)
            if cfg["mixup"]:
                lam = rng.beta(cfg["mixup"], cfg["mixup"], (len(sel), 1)).astype(np.float32)
                perm = rng.permutation(len(sel))
                x = lam[:, :, None, None] * x + (1 - lam[:, :, None, None]) * x[perm]
                y = lam[:, 0] * y + (1 - lam[:, 0]) * y[perm]
            return x, y[:, None]

        def on_epoch_end(self) -> None:
            self.order = rng.permutation(train_idx)

    schedule = keras.optimizers.schedules.CosineDecay(cfg["lr"], steps * cfg["epochs"])
    if cfg["wd"]:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=cfg["wd"])
    else:
        optimizer = keras.optimizers.Adam(schedule)
    model.compile(optimizer, keras.losses.BinaryCrossentropy(label_smoothing=cfg["smooth"]))
    started = time.perf_counter()
    model.fit(Batches(), epochs=cfg["epochs"], verbose=0)
    seconds = time.perf_counter() - started
    test = images[test_idx].astype(np.float32)
    scores = model.predict(test, batch_size=256, verbose=0).ravel()
    flipped = model.predict(test[:, :, ::-1], batch_size=256, verbose=0).ravel()
    y = labels[test_idx]
    return {**metrics(scores, y), "tta": metrics((scores + flipped) / 2, y), "train_s": round(seconds, 1)}


def job(cfg: dict, data: str, train_idx: np.ndarray, test_idx: np.ndarray, fold: object) -> dict:
    """One training run in a worker process, on the prepared arrays of ``data``."""
    import keras

    if keras.backend.backend() == "jax":  # identical models across folds compile once
        import jax

        jax.config.update("jax_compilation_cache_dir", "/tmp/jax-cache")
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    images = np.load(f"{data}.images.npy", mmap_mode="r")
    variants = np.load(f"{data}.variants.npy", mmap_mode="r")
    labels = np.load(f"{data}.labels.npy")
    seed = cfg.get("seed", 0) * 100 + (fold if isinstance(fold, int) else 99)
    result = run(cfg, images, variants, labels, train_idx, test_idx, seed)
    return {"name": cfg["name"], "fold": fold, **result}


def summary(results: Path) -> str:
    """A Markdown table: mean and standard deviation over folds, per config, in file order."""
    runs: dict[str, list[dict]] = {}
    for line in results.read_text().splitlines():
        run = json.loads(line)
        runs.setdefault(run["name"], []).append(run)

    def spread(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"

    rows = [
        "| config | folds | ROC AUC | balanced acc. at FPR <= 10% | with flip TTA: AUC | train s/run |",
        "|---|---|---|---|---|---|",
    ]
    for name, folds in runs.items():
        rows.append(
            f"| {name} | {len(folds)} | {spread([f['auc'] for f in folds])} | "
            f"{spread([f['bal_acc_fpr10'] for f in folds])} | {spread([f['tta']['auc'] for f in folds])} | "
            f"{np.mean([f['train_s'] for f in folds]):.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data", type=Path, help="DATA_DIR with train/ and val/; or, with --summary, a results file")
    parser.add_argument("--summary", action="store_true", help="print the table of a results file and stop")
    parser.add_argument("--configs", type=Path, help="JSON list of {name, arch, ...BASE overrides}")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="training runs at once (they share the accelerator)")
    parser.add_argument("--budget", type=float, default=480, help="stop after this many seconds")
    parser.add_argument("--limit", type=int, default=0, help="use only this many images per class (smoke test)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/cv_sweep"), help="prepared arrays go here")
    parser.add_argument("--out", type=Path, default=Path("sweep.jsonl"))
    args = parser.parse_args()
    if args.summary:
        print(summary(args.data))
        return
    if args.configs is None:
        parser.error("--configs is required to run a sweep")
    started = time.perf_counter()

    train_paths, train_labels = labelled_images(str(args.data / "train"))
    val_paths, val_labels = labelled_images(str(args.data / "val"))
    paths, labels = train_paths + val_paths, np.array(train_labels + val_labels)
    official = np.arange(len(train_paths)), np.arange(len(train_paths), len(paths))
    if args.limit:
        keep = np.concatenate([np.flatnonzero(labels == c)[: args.limit] for c in (0, 1)])
        paths, labels = [paths[i] for i in keep], labels[keep]
        official = np.arange(0, len(paths), 2), np.arange(1, len(paths), 2)
    from sklearn.model_selection import StratifiedKFold

    folds = list(StratifiedKFold(args.folds, shuffle=True, random_state=0).split(paths, labels))
    configs = [{**BASE, **c} for c in json.loads(args.configs.read_text())]

    args.work.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for size, jpeg, blur in dict.fromkeys((input_size(c), c["jpeg"], c["blur"]) for c in configs):
            stem = args.work / f"{size}_{jpeg}_{blur}"
            images = np.stack(list(pool.map(decode, [(p, size) for p in paths], chunksize=32)))
            jobs = [(images[i], k * 100_003 + i, jpeg, blur) for k in range(K) for i in range(len(paths))]
            variants = np.stack(list(pool.map(variant, jobs, chunksize=64))).reshape(K, *images.shape)
            np.save(f"{stem}.images.npy", images)
            np.save(f"{stem}.variants.npy", variants)
            np.save(f"{stem}.labels.npy", labels)
            print(f"prepared {stem.name} at {time.perf_counter() - started:.0f} s", flush=True)

    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import multiprocessing

    workers = ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
    futures = []
    for cfg in configs:
        data = str(args.work / f"{input_size(cfg)}_{cfg['jpeg']}_{cfg['blur']}")
        splits = {"official": official} if cfg.get("official") else dict(enumerate(folds))
        futures += [workers.submit(job, cfg, data, tr, te, fold) for fold, (tr, te) in splits.items()]
    with args.out.open("a") as out:
        try:
            for future in as_completed(futures, timeout=args.budget - (time.perf_counter() - started)):
                line = future.result()
                out.write(json.dumps(line) + "\n")
                out.flush()
                print(json.dumps(line), flush=True)
        except TimeoutError:
            print("budget spent", flush=True)
    # Runs still going when the budget is spent are abandoned: a pool cannot cancel a running task.
    for process in workers._processes.values():
        process.kill()
    os._exit(0)


if __name__ == "__main__":
    main()
