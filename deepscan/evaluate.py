"""Metrics for a scored, labelled set: ROC AUC, confusion matrix, threshold choice."""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepscan.discovery import find_images
from deepscan.errors import DataError, DeepscanError
from deepscan.job import ScanJob
from deepscan.model import CLASS_NAMES
from deepscan.pipeline import blurred, recompressed
from deepscan.scorers import ScanModel, score_files


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney U statistic, ties counted half)."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def calibration_error(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the gap between score and fake frequency, averaged over equal-width bins."""
    if not len(scores):
        return float("nan")
    gaps = sum(count * abs(mean - share) for mean, share, count in reliability(scores, labels, bins))
    return float(gaps / len(scores))


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """The reliability diagram as rows: (mean score, fake frequency, images) per non-empty bin."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    which = np.minimum((scores * bins).astype(int), bins - 1)
    return [
        (float(scores[which == b].mean()), float(labels[which == b].mean()), int((which == b).sum()))
        for b in range(bins)
        if (which == b).any()
    ]


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float | None = None) -> float:
    """The threshold that maximises balanced accuracy, in one sorted sweep (O(n log n)).

    With ``target_fpr``: the lowest threshold whose false-positive rate on
    real images is at most target_fpr. Candidates are 0, 1 and the midpoints
    between neighbouring distinct scores, so no image sits on the threshold.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    distinct = np.unique(scores)
    candidates = np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [1.0]])
    # Images flagged at candidate k: those whose score is at or above it, i.e. of distinct score index >= k.
    order = np.searchsorted(distinct, scores)
    fakes_at = np.bincount(order[labels], minlength=len(distinct))
    reals_at = np.bincount(order[~labels], minlength=len(distinct))
    flagged_fakes = np.concatenate([np.cumsum(fakes_at[::-1])[::-1], [0]])
    flagged_reals = np.concatenate([np.cumsum(reals_at[::-1])[::-1], [0]])
    tpr = flagged_fakes / labels.sum() if labels.any() else np.zeros(len(candidates))
    fpr = flagged_reals / (~labels).sum() if (~labels).any() else np.zeros(len(candidates))
    if target_fpr is not None:
        meeting = np.flatnonzero(fpr <= target_fpr)
        return float(candidates[meeting[0]]) if len(meeting) else 0.5
    return float(candidates[int(np.argmax((tpr + 1 - fpr) / 2))])


@dataclass
class Evaluation:
    """The report card of a model on a labelled set (fake is the positive class)."""

    images: int
    unreadable: int
    threshold: float
    roc_auc: float
    accuracy: float
    balanced_accuracy: float
    false_positive_rate: float  # the share of real images flagged (NaN without real images)
    true_positive_rate: float  # the share of fake images flagged (NaN without fake images)
    confusion: dict[str, dict[str, int]]  # confusion[true][predicted]
    per_class: dict[str, dict[str, float]]  # precision, recall, f1, support
    images_per_second: float
    calibration_error: float  # expected calibration error of the scores as probabilities (ECE, 10 bins)
    reliability: list[dict[str, float]]  # the reliability diagram: mean score, fake share and images per bin
    # 95% intervals (bootstrap: roc_auc, balanced_accuracy; Wilson over groups: the two rates) and the
    # groups they count; empty if not asked for
    intervals: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(scores: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Every figure of an Evaluation that depends only on scores, true labels and predicted labels (True: fake)."""
    scores, labels, predicted = np.asarray(scores, float), np.asarray(labels, bool), np.asarray(predicted, bool)
    confusion = {
        true_name: {
            pred_name: int(np.sum((labels == bool(t)) & (predicted == bool(p))))
            for p, pred_name in enumerate(CLASS_NAMES)
        }
        for t, true_name in enumerate(CLASS_NAMES)
    }
    per_class = {}
    for name in CLASS_NAMES:
        tp = confusion[name][name]
        support = sum(confusion[name].values())
        predicted_as = sum(confusion[other][name] for other in CLASS_NAMES)
        precision = tp / predicted_as if predicted_as else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = all(per_class[name]["support"] for name in CLASS_NAMES)
    recalls = [per_class[name]["recall"] for name in CLASS_NAMES]
    return {
        "roc_auc": roc_auc(scores, labels),
        "calibration_error": calibration_error(scores, labels),
        "reliability": [
            {"mean_score": mean, "fake_share": share, "images": count}
            for mean, share, count in reliability(scores, labels)
        ],
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if present else float("nan"),
        "false_positive_rate": 1.0 - per_class["real"]["recall"] if per_class["real"]["support"] else float("nan"),
        "true_positive_rate": per_class["fake"]["recall"] if per_class["fake"]["support"] else float("nan"),
        "confusion": confusion,
        "per_class": per_class,
    }


GROUP_PATTERN = r"^(v\d+)_"  # frames named v<video>_<frame>: one group per video (splits, intervals)
INTERVAL_RESAMPLES = 1000


def group_keys(paths: list[str], group_pattern: str) -> list[str]:
    """Each file's group: its name's match of ``group_pattern`` (the first group, if it has one), else the file."""
    pattern = re.compile(group_pattern) if group_pattern else None
    keys = []
    for path in paths:
        found = pattern.search(Path(path).name) if pattern else None
        keys.append((found.group(1) if found.groups() else found.group(0)) if found else path)
    return keys


def bootstrap_intervals(
    scored: ScoredSet, fake: np.ndarray, keys: list[str], resamples: int = INTERVAL_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """95% percentile-bootstrap intervals of ROC AUC and balanced accuracy (at the labels ``fake`` gives).

    Whole groups are resampled (``keys``: one per file, as ``group_keys``
    makes them), so the near-identical frames of one video count as one
    draw, not as many independent images. Seeded: the same set gives the
    same intervals.
    """
    labels = np.asarray(scored.labels, bool)
    names, group_of = np.unique(keys, return_inverse=True)
    rng = np.random.default_rng(seed)
    aucs, balanced = np.full(resamples, np.nan), np.full(resamples, np.nan)
    for draw in range(resamples):
        counts = np.bincount(rng.integers(len(names), size=len(names)), minlength=len(names))
        chosen = np.repeat(np.arange(len(labels)), counts[group_of])
        truth, flagged = labels[chosen], fake[chosen]
        if truth.all() or not truth.any():
            continue
        aucs[draw] = roc_auc(scored.scores[chosen], truth)
        balanced[draw] = (flagged[truth].mean() + (~flagged[~truth]).mean()) / 2
    rates = {}
    for name, truth in (("false_positive_rate", False), ("true_positive_rate", True)):
        members = labels == truth
        rates[name] = wilson_interval(fake[members].mean() if members.any() else np.nan, len(set(group_of[members])))
    return {
        "level": 0.95,
        "resamples": resamples,
        "groups": len(names),
        "roc_auc": _percentiles(aucs),
        "balanced_accuracy": _percentiles(balanced),
        **rates,
    }


def wilson_interval(rate: float, count: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of a share observed over ``count`` independent draws (here: groups).

    Unlike a bootstrap it stays honest at 0 of 20 (0-16%), which is what a
    small real-only folder with no false alarm shows.
    """
    if not count or np.isnan(rate):
        return [float("nan"), float("nan")]
    centre = (rate + z * z / (2 * count)) / (1 + z * z / count)
    spread = z * np.sqrt(rate * (1 - rate) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    low = 0.0 if rate == 0 else max(0.0, centre - spread)  # exact at the ends, where rounding would miss them
    high = 1.0 if rate == 1 else min(1.0, centre + spread)
    return [float(low), float(high)]


def _percentiles(values: np.ndarray) -> list[float]:
    if np.isnan(values).all():
        return [float("nan"), float("nan")]
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def labelled_images(data_dir: str) -> tuple[list[str], list[int]]:
    """Image paths under DATA_DIR/real and DATA_DIR/fake, with labels 0 (real) and 1 (fake).

    A folder may hold one class alone (real photos to count false alarms on, say).
    """
    root = Path(data_dir)
    folders = [root / name for name in CLASS_NAMES]
    if not any(folder.is_dir() for folder in folders):
        raise DataError(f"{root} must hold the folder real/, fake/ or both")
    paths: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        found = list(find_images([folder])) if folder.is_dir() else []
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise DataError(f"no images found under {root}/real or {root}/fake")
    return paths, labels


@dataclass
class ScoredSet:
    """Scores of the readable images of a labelled set."""

    scores: np.ndarray
    labels: np.ndarray
    unreadable: int
    seconds: float
    paths: list[str] = field(default_factory=list)
    fake: np.ndarray | None = None  # the labels the verdict rule gave; None: compare scores with a threshold


def score_labelled(paths: list[str], labels: list[int], job: ScanJob) -> ScoredSet:
    """Score labelled images with a scan job, exactly as `deepscan scan` does; unreadable files are counted.

    In face mode a file's score and label are its most suspicious face's.
    """
    label_of = dict(zip(paths, labels, strict=True))
    kept: list[tuple[str, float, int, bool]] = []
    unreadable = 0
    started = time.perf_counter()
    for files in job.run(paths):
        for scanned in files:
            verdict = scanned.verdict
            if verdict.score is None:
                unreadable += 1
            else:
                kept.append((verdict.path, verdict.score, label_of[verdict.path], verdict.label == "fake"))
    return ScoredSet(
        np.array([item[1] for item in kept]),
        np.array([item[2] for item in kept], bool),
        unreadable,
        time.perf_counter() - started,
        [item[0] for item in kept],
        np.array([item[3] for item in kept], bool),
    )


def subset(scored: ScoredSet, paths: set[str]) -> ScoredSet:
    """The part of a scored set whose files are in ``paths`` (one source of several).

    Every file is either scored or unreadable, so the source's unreadable files are those not scored.
    """
    keep = np.array([path in paths for path in scored.paths], bool)
    fake = None if scored.fake is None else scored.fake[keep]
    kept_paths = [path for path, chosen in zip(scored.paths, keep, strict=True) if chosen]
    unreadable = len(paths) - len(kept_paths)
    return ScoredSet(scored.scores[keep], scored.labels[keep], unreadable, scored.seconds, kept_paths, fake)


def misclassified(scored: ScoredSet, threshold: float, count: int) -> list[tuple[str, str, float]]:
    """The ``count`` files labelled wrongly, most confidently wrong first: (path, true class, score)."""
    fake = scored.fake if scored.fake is not None else scored.scores >= threshold
    wrong = np.flatnonzero(fake != scored.labels)
    worst = wrong[np.argsort(-np.abs(scored.scores[wrong] - threshold), kind="stable")][:count]
    return [(scored.paths[i], CLASS_NAMES[int(scored.labels[i])], float(scored.scores[i])) for i in worst]


def report_card(scored: ScoredSet, threshold: float, group_pattern: str | None = None) -> Evaluation:
    """The Evaluation of a scored set at a threshold (or by the labels the verdict rule gave, if known).

    With a ``group_pattern`` ('' for none), also the bootstrap intervals
    of ROC AUC and balanced accuracy, resampling whole groups of files.
    """
    total = len(scored.scores) + scored.unreadable
    fake = scored.fake if scored.fake is not None else scored.scores >= threshold
    intervals = {}
    if group_pattern is not None:
        keys = group_keys(scored.paths, group_pattern) if scored.paths else [str(i) for i in range(len(fake))]
        intervals = bootstrap_intervals(scored, np.asarray(fake, bool), keys)
    return Evaluation(
        images=len(scored.scores),
        unreadable=scored.unreadable,
        threshold=threshold,
        images_per_second=total / scored.seconds if scored.seconds else 0.0,
        intervals=intervals,
        **compute_metrics(scored.scores, scored.labels, fake),
    )


JPEG_QUALITIES = (95, 75, 50, 30)
BLUR_SIGMAS = (0.0, 1.0, 2.0, 3.0)


@dataclass
class RobustnessRow:
    perturbation: str  # "jpeg" or "blur"
    level: float  # JPEG quality or blur sigma
    roc_auc: float
    accuracy: float
    balanced_accuracy: float


def robustness(paths: list[str], labels: list[int], model: ScanModel, batch_size: int) -> list[RobustnessRow]:
    """AUC and accuracy after JPEG re-compression and Gaussian blur of the decoded images, level by level."""
    label_of = dict(zip(paths, labels, strict=True))
    levels = [("jpeg", q, recompressed(q)) for q in JPEG_QUALITIES] + [("blur", s, blurred(s)) for s in BLUR_SIGMAS]
    table = []
    for name, level, perturb in levels:
        records = [r for rows in score_files(paths, model.detector(), batch_size, perturb) for r in rows if not r.error]
        scores = np.array([record.score for record in records])
        truth = np.array([label_of[record.path] for record in records], bool)
        figures = compute_metrics(scores, truth, scores >= model.threshold)
        table.append(RobustnessRow(name, level, figures["roc_auc"], figures["accuracy"], figures["balanced_accuracy"]))
    return table


def plot_card(path: Path, scored: ScoredSet, threshold: float, table: list[RobustnessRow] | None = None) -> None:
    """ROC curve, score histograms per class and, if given, robustness curves, in one PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DeepscanError("--plot needs matplotlib: pip install 'deepscan-audit[plot]'") from None
    panels = 3 if table else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    fpr, tpr = roc_curve(scored.scores, scored.labels)
    auc = roc_auc(scored.scores, scored.labels)
    axes[0].plot(fpr, tpr, label=f"AUC {auc:.3f}")
    axes[0].plot([0, 1], [0, 1], ":", color="grey")
    axes[0].set(xlabel="false-positive rate (real flagged)", ylabel="true-positive rate (fakes caught)", title="ROC")
    axes[0].legend(loc="lower right")
    bins = np.linspace(0, 1, 26)
    for label, name in enumerate(CLASS_NAMES):
        axes[1].hist(scored.scores[scored.labels == bool(label)], bins=bins, alpha=0.6, label=name)
    axes[1].axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.2f}")
    axes[1].set(xlabel="score (probability of fake)", ylabel="images", title="scores per class")
    axes[1].legend()
    if table:
        for name in ("jpeg", "blur"):
            rows = [row for row in table if row.perturbation == name]
            axes[2].plot(range(len(rows)), [row.roc_auc for row in rows], marker="o", label=f"{name} (AUC)")
        axes[2].set_xticks(range(len(JPEG_QUALITIES)))
        axes[2].set_xticklabels([f"q{q} / s{s:g}" for q, s in zip(JPEG_QUALITIES, BLUR_SIGMAS, strict=True)])
        axes[2].set(ylim=(0.4, 1.0), ylabel="ROC AUC", title="robustness")
        axes[2].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold, from strict to lenient."""
    order = np.argsort(-np.asarray(scores, float), kind="mergesort")
    hits = np.asarray(labels, bool)[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr
