"""Training-recipe sweep for the compact network on a GPU machine without TensorFlow (Keras 3 on JAX).

The lent GPU machines have JAX but no TensorFlow, and take at most 64 MiB of files per call,
so `deepscan train` cannot run there. This script approximates its loop with NumPy and
Keras 3: an epoch draws as many images as the training sets hold, a set share from each
source; JPEG re-compression (quality 30-100) and Gaussian blur (sigma 0.1-3) come from one
variant of each training image made ahead; flips and brightness are Keras layers; Adam with
a cosine decay; the network is deepscan's own builder. It scores each source's val/ every
6 epochs: ROC AUC, and balanced accuracy at the threshold that keeps false positives at or
below 10% (on that source, and shared by all, as `--target-fpr 0.1` picks it).

    # here: pack the sources (faceswap's bytes as they are; data/ decoded to 128 px, JPEG 95)
    python scripts/gpu_sweep.py pack ../shared/data ../shared/faceswap --out .sweep
    # there (keras on PYTHONPATH; it runs on JAX): every recipe of a round, 8 at once
    python scripts/gpu_sweep.py run .sweep --round 1 --workers 8 --budget 500

Results: one JSON line per recipe in $OUT/results.jsonl (or --results). A recipe found here
is then trained for real with `deepscan train` on the CPU; only those figures are quoted.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import pickle
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

os.environ.setdefault("KERAS_BACKEND", "jax")  # before deepscan, which would pick TensorFlow
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # deepscan, from this checkout

from deepscan.pipeline import decode_image

SIZE = 128
SOURCES = ("data", "faceswap")  # the first is the StyleGAN source, the second the face swaps


@dataclass
class Recipe:
    name: str
    epochs: int = 24
    lr: float = 1e-3
    batch: int = 32
    swap_share: float = 0.5  # the face-swap source's share of each epoch's draws
    jpeg: float = 0.3
    blur: float = 0.3
    brightness: float = 0.2
    shift: float = 0.0  # random translation (reflected borders), fraction of the size
    widths: tuple[int, ...] = (32, 64, 128, 256)
    label_smoothing: float = 0.0
    weight_decay: float = 0.0  # AdamW when set
    mixup: float = 0.0  # Beta(a, a) mixing of images and labels when set
    seed: int = 1


ROUNDS = {
    "1": [
        Recipe("base"), Recipe("base_s2", seed=2), Recipe("ep48", epochs=48), Recipe("fs67", swap_share=0.67),
        Recipe("jb50", jpeg=0.5, blur=0.5), Recipe("ls10", label_smoothing=0.1), Recipe("wd05", weight_decay=0.05),
        Recipe("lr2e3", lr=2e-3), Recipe("wide", widths=(48, 96, 192, 384)), Recipe("shift", shift=0.08),
        Recipe("b64", batch=64, lr=2e-3), Recipe("noaug", jpeg=0.0, blur=0.0), Recipe("mixup", mixup=0.2),
        Recipe("ep48_jb50", epochs=48, jpeg=0.5, blur=0.5), Recipe("fs67_ep36", swap_share=0.67, epochs=36),
        Recipe("lr5e4", lr=5e-4),
    ],
    "2": [
        Recipe("fs67_lr2", swap_share=0.67, lr=2e-3),
        Recipe("fs67_lr2_ls", swap_share=0.67, lr=2e-3, label_smoothing=0.1),
        Recipe("fs67_lr2_shift", swap_share=0.67, lr=2e-3, shift=0.08),
        Recipe("fs67_lr2_mix", swap_share=0.67, lr=2e-3, mixup=0.2),
        Recipe("fs67_lr2_ep36", swap_share=0.67, lr=2e-3, epochs=36),
        Recipe("fs75_lr2", swap_share=0.75, lr=2e-3),
        Recipe("fs67_lr2_ls_shift", swap_share=0.67, lr=2e-3, label_smoothing=0.1, shift=0.08),
        Recipe("fs67_lr2_s2", swap_share=0.67, lr=2e-3, seed=2),
    ],
    "3": [
        Recipe("fs75_lr2_ep36", swap_share=0.75, lr=2e-3, epochs=36),
        Recipe("fs75_lr2_ep36_s2", swap_share=0.75, lr=2e-3, epochs=36, seed=2),
        Recipe("fs75_lr2_ep36_ls", swap_share=0.75, lr=2e-3, epochs=36, label_smoothing=0.1),
    ],
}  # fmt: skip


# --- packing (here) and decoding (there) -------------------------------------------


def pack(data_dir: Path, swap_dir: Path, out: Path) -> None:
    """Two pickles of {name: bytes} that each fit one call's 64 MiB with the repository."""
    out.mkdir(parents=True, exist_ok=True)
    swaps = {f"faceswap/{p.relative_to(swap_dir)}": p.read_bytes() for p in sorted(swap_dir.glob("*/*/*.jpg"))}
    train = {name: blob for name, blob in swaps.items() if name.startswith("faceswap/train/")}
    rest = {name: blob for name, blob in swaps.items() if name not in train}
    for path in sorted(data_dir.glob("*/*/*")):
        buffer = io.BytesIO()
        Image.fromarray(decode_image(str(path), SIZE)).save(buffer, "JPEG", quality=95, subsampling=0)
        rest[f"data/{path.relative_to(data_dir).with_suffix('.jpg')}"] = buffer.getvalue()
    for name, part in (("swap_train.pkl", train), ("rest.pkl", rest)):
        with open(out / name, "wb") as file:
            pickle.dump(part, file)


def _variants(args: tuple[np.ndarray, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """JPEG re-compressed, blurred, and both: one draw of each per training image."""
    pixels, seed = args
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=int(rng.integers(30, 101)))
    jpeg = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    blur = ImageFilter.GaussianBlur(float(rng.uniform(0.1, 3.0)))
    return np.asarray(jpeg), np.asarray(Image.fromarray(pixels).filter(blur)), np.asarray(jpeg.filter(blur))


def decode_all(packed: Path, arrays: Path) -> None:
    """Every image as uint8 pixels, and the augmentation variants of the training images, as .npy files."""
    blobs: dict[str, bytes] = {}
    for path in sorted(packed.glob("*.pkl")):
        with open(path, "rb") as file:
            blobs.update(pickle.load(file))
    arrays.mkdir(parents=True, exist_ok=True)
    with mp.get_context("fork").Pool(os.cpu_count()) as pool:
        for source in SOURCES:
            for split in ("train", "val"):
                names = sorted(n for n in blobs if n.startswith(f"{source}/{split}/"))
                pixels = np.stack(pool.map(partial(decode_image, size=SIZE), [blobs[n] for n in names], chunksize=64))
                np.save(arrays / f"{source}_{split}_x.npy", pixels)
                np.save(arrays / f"{source}_{split}_y.npy", np.array(["/fake/" in n for n in names], np.float32))
                if split == "train":
                    made = pool.map(_variants, [(p, i) for i, p in enumerate(pixels)], chunksize=64)
                    for k, kind in enumerate(("jpeg", "blur", "jpegblur")):
                        np.save(arrays / f"{source}_{split}_{kind}.npy", np.stack([m[k] for m in made]))


# --- metrics: deepscan's own, as `deepscan train --target-fpr 0.1` and `evaluate` compute them ---


def figures(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per source: ROC AUC, and balanced accuracy at the source's own and at the shared 10%-FPR threshold."""
    from deepscan.evaluate import choose_threshold, compute_metrics, roc_auc

    own = {s: choose_threshold(scores[s], labels[s], target_fpr=0.1) for s in scores}
    shared = max(own.values())

    def balanced(s: str, threshold: float) -> float:
        return round(compute_metrics(scores[s], labels[s], scores[s] >= threshold)["balanced_accuracy"], 4)

    return {
        s: {
            "auc": round(roc_auc(scores[s], labels[s]), 4),
            "bal_own": balanced(s, own[s]),
            "bal_shared": balanced(s, shared),
        }
        for s in scores
    }


# --- training (there) --------------------------------------------------------------


def train(recipe: Recipe, arrays: Path) -> dict:
    import keras

    from deepscan.model import _high_pass_resnet

    def load(source: str, split: str, kind: str = "x") -> np.ndarray:
        return np.load(arrays / f"{source}_{split}_{kind}.npy")

    keras.utils.set_random_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    variants = {s: [load(s, "train", k) for k in ("x", "jpeg", "blur", "jpegblur")] for s in SOURCES}
    labels = {s: load(s, "train", "y") for s in SOURCES}
    val = {s: (load(s, "val"), load(s, "val", "y")) for s in SOURCES}
    total = sum(len(y) for y in labels.values())
    steps = -(-total // recipe.batch)

    network = _high_pass_resnet(SIZE, tuple(recipe.widths), "compact")
    augment = [keras.layers.RandomFlip("horizontal")]
    if recipe.brightness:
        augment.append(keras.layers.RandomBrightness(recipe.brightness, value_range=(0, 255)))
    inputs = keras.Input((SIZE, SIZE, 3))
    trainer = keras.Model(inputs, network(keras.Sequential(augment)(inputs)))
    schedule = keras.optimizers.schedules.CosineDecay(recipe.lr, steps * recipe.epochs)
    optimizer = (
        keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay)
        if recipe.weight_decay
        else keras.optimizers.Adam(schedule)
    )
    trainer.compile(optimizer, keras.losses.BinaryCrossentropy(label_smoothing=recipe.label_smoothing))

    queues: dict[str, list[int]] = {s: [] for s in SOURCES}

    def draw(source: str, n: int) -> np.ndarray:
        """The next n of an endless, reshuffled-every-pass stream of the source's indices."""
        while len(queues[source]) < n:
            queues[source].extend(rng.permutation(len(labels[source])).tolist())
        taken, queues[source] = queues[source][:n], queues[source][n:]
        return np.array(taken)

    curve, started = [], time.time()
    for epoch in range(recipe.epochs):
        swaps = round(recipe.swap_share * total)
        xs, ys = [], []
        for source, n in (("faceswap", swaps), ("data", total - swaps)):
            index = draw(source, n)
            variant = (rng.random(n) < recipe.jpeg) * 1 + (rng.random(n) < recipe.blur) * 2  # 0 as is ... 3 both
            x = np.empty((n, SIZE, SIZE, 3), np.uint8)
            for v in range(4):
                x[variant == v] = variants[source][v][index[variant == v]]
            xs.append(x)
            ys.append(labels[source][index])
        order = rng.permutation(total)
        x, y = np.concatenate(xs)[order], np.concatenate(ys)[order]
        if recipe.shift:  # Keras' RandomTranslation cannot be jit-compiled on JAX, so it is done here
            pad = round(recipe.shift * SIZE)
            padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
            offsets = rng.integers(0, 2 * pad + 1, (total, 2))
            x = np.stack([padded[i, a : a + SIZE, b : b + SIZE] for i, (a, b) in enumerate(offsets)])
        if recipe.mixup:
            lam = rng.beta(recipe.mixup, recipe.mixup, total).astype(np.float32)
            partner = rng.permutation(total)
            x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner]
            y = lam * y + (1 - lam) * y[partner]
        loss = trainer.fit(x, y, batch_size=recipe.batch, epochs=1, shuffle=False, verbose=0).history["loss"][-1]
        if (epoch + 1) % 6 == 0 or epoch + 1 == recipe.epochs:
            scores = {s: np.ravel(network.predict(vx, batch_size=512, verbose=0)) for s, (vx, _) in val.items()}
            measured = figures(scores, {s: vy for s, (_, vy) in val.items()})
            seconds = round(time.time() - started)
            curve.append({"epoch": epoch + 1, "loss": round(float(loss), 4), **measured, "s": seconds})
            print(recipe.name, json.dumps(curve[-1]), flush=True)
    return {"recipe": asdict(recipe), "final": curve[-1], "curve": curve}


def worker(recipes: mp.Queue, arrays: Path, results: Path, deadline: float) -> None:
    while time.time() < deadline:
        try:
            recipe = recipes.get_nowait()
        except Exception:  # queue.Empty, through multiprocessing
            return
        try:
            result = train(recipe, arrays)
        except Exception as err:  # one broken recipe does not end the sweep
            result = {"recipe": asdict(recipe), "error": repr(err)}
        with open(results, "a") as out:
            out.write(json.dumps(result) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    packing = commands.add_parser("pack", help="pack the sources for the GPU machine")
    packing.add_argument("data_dir", type=Path)
    packing.add_argument("swap_dir", type=Path)
    packing.add_argument("--out", type=Path, required=True)
    running = commands.add_parser("run", help="decode the packed sources and train a round of recipes")
    running.add_argument("packed", type=Path)
    running.add_argument("--round", choices=sorted(ROUNDS), required=True)
    running.add_argument("--workers", type=int, default=8)
    running.add_argument("--budget", type=float, default=500, help="seconds; no recipe starts after 60%% of it")
    running.add_argument("--epochs", type=int, help="override every recipe's epochs (a quick check)")
    running.add_argument("--arrays", type=Path, default=Path("/tmp/sweep_arrays"))
    running.add_argument("--results", type=Path, default=Path(os.environ.get("OUT", ".")) / "results.jsonl")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.data_dir, args.swap_dir, args.out)
        return
    started = time.time()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if not (args.arrays / "faceswap_val_y.npy").exists():
        decode_all(args.packed, args.arrays)
    recipes = mp.get_context("spawn").Queue()
    for recipe in ROUNDS[args.round]:
        recipes.put(replace(recipe, epochs=args.epochs or recipe.epochs))
    time.sleep(0.5)  # the queue's feeder thread
    deadline = started + 0.6 * args.budget
    procs = [
        mp.get_context("spawn").Process(target=worker, args=(recipes, args.arrays, args.results, deadline))
        for _ in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(max(0.0, started + args.budget - time.time()))
        if proc.is_alive():
            proc.kill()


if __name__ == "__main__":
    main()
