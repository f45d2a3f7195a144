"""Metrics for a scored, labelled set: ROC AUC, confusion matrix, threshold choice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deepscan.discovery import find_images
from deepscan.errors import DataError, DeepscanError
from deepscan.model import CLASS_NAMES, Detector
from deepscan.pipeline import Perturbation, blurred, recompressed
from deepscan.scan import DEFAULT_BATCH_SIZE, ScanRow, resolve_threshold, scan_batches

if TYPE_CHECKING:
    from deepscan.faces import FaceFinder


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


def choose_threshold(scores: np.ndarray, labels: np.ndarray, target_fpr: float | None = None) -> float:
    """The threshold that maximises balanced accuracy.

    With ``target_fpr``: the lowest threshold whose false-positive rate on
    real images is at most target_fpr.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    # Midpoints between neighbouring scores: no image sits exactly on the threshold.
    distinct = np.unique(scores)
    candidates = np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [1.0]])
    best, best_value = 0.5, -1.0
    for cut in candidates:
        flagged = scores >= cut
        fpr = flagged[~labels].mean() if (~labels).any() else 0.0
        tpr = flagged[labels].mean() if labels.any() else 0.0
        if target_fpr is not None:
            if fpr <= target_fpr:
                return float(cut)
            continue
        value = (tpr + 1 - fpr) / 2
        if value > best_value:
            best, best_value = float(cut), value
    return best


@dataclass
class Evaluation:
    """The report card of a model on a labelled set (fake is the positive class)."""

    images: int
    unreadable: int
    threshold: float
    roc_auc: float
    accuracy: float
    balanced_accuracy: float
    false_positive_rate: float
    confusion: dict[str, dict[str, int]]  # confusion[true][predicted]
    per_class: dict[str, dict[str, float]]  # precision, recall, f1, support
    images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Every figure of an Evaluation that depends only on scores and labels."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    predicted = scores >= threshold
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
    recalls = [per_class[name]["recall"] for name in CLASS_NAMES]
    return {
        "roc_auc": roc_auc(scores, labels),
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)),
        "false_positive_rate": 1.0 - per_class["real"]["recall"],
        "confusion": confusion,
        "per_class": per_class,
    }


def labelled_images(data_dir: str) -> tuple[list[str], list[int]]:
    """Image paths under DATA_DIR/real and DATA_DIR/fake, with labels 0 (real) and 1 (fake)."""
    root = Path(data_dir)
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        if not folder.is_dir():
            raise DataError(f"{root} must hold the folders real/ and fake/ ({folder} is missing)")
        found = list(find_images([folder]))
        paths += found
        labels += [label] * len(found)
    if not paths:
        raise DataError(f"no images found under {root}/real and {root}/fake")
    return paths, labels


@dataclass
class ScoredSet:
    """Scores of the readable images of a labelled set."""

    scores: np.ndarray
    labels: np.ndarray
    unreadable: int
    seconds: float


def score_labelled(
    paths: list[str],
    labels: list[int],
    detector: Detector,
    batch_size: int = DEFAULT_BATCH_SIZE,
    perturb: Perturbation | None = None,
    faces: FaceFinder | None = None,
    whole: Detector | None = None,
) -> ScoredSet:
    """Score labelled images as scan does; unreadable files are counted, not scored.

    With ``faces``, as ``scan --faces`` does: a file's score is that of its most
    suspicious face, or of the whole image, by ``whole`` if given, where none is found.
    """
    label_of = dict(zip(paths, labels, strict=True))
    scores, truth, unreadable = [], [], 0
    started = time.perf_counter()
    for rows in _file_rows(paths, detector, batch_size, perturb, faces, whole):
        for row in rows:
            if row.score is None:
                unreadable += 1
            else:
                scores.append(row.score)
                truth.append(label_of[row.path])
    return ScoredSet(np.array(scores), np.array(truth, bool), unreadable, time.perf_counter() - started)


def _file_rows(
    paths: list[str],
    detector: Detector,
    batch_size: int,
    perturb: Perturbation | None,
    faces: FaceFinder | None,
    whole: Detector | None,
) -> Iterator[list[ScanRow]]:
    """One row per file, a batch at a time."""
    if faces is None:
        yield from scan_batches(paths, detector, batch_size=batch_size, perturb=perturb)
        return
    if perturb is not None:
        raise DeepscanError("face mode does not take perturbations (robustness is measured on whole images)")
    from deepscan.faces import file_verdicts, scan_faces

    for rows in scan_faces(paths, detector, faces, whole=whole, batch_size=batch_size):
        yield [verdict.row for verdict in file_verdicts(rows)]


def report_card(scored: ScoredSet, threshold: float) -> Evaluation:
    """The Evaluation of a scored set at a threshold."""
    total = len(scored.scores) + scored.unreadable
    return Evaluation(
        images=len(scored.scores),
        unreadable=scored.unreadable,
        threshold=threshold,
        images_per_second=total / scored.seconds if scored.seconds else 0.0,
        **compute_metrics(scored.scores, scored.labels, threshold),
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


def robustness(
    paths: list[str],
    labels: list[int],
    detector: Detector,
    *,
    threshold: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[RobustnessRow]:
    """AUC and accuracy after JPEG re-compression and Gaussian blur of the decoded images, level by level."""
    cut = resolve_threshold(threshold, detector.spec)
    levels = [("jpeg", q, recompressed(q)) for q in JPEG_QUALITIES] + [("blur", s, blurred(s)) for s in BLUR_SIGMAS]
    table = []
    for name, level, perturb in levels:
        scored = score_labelled(paths, labels, detector, batch_size, perturb)
        figures = compute_metrics(scored.scores, scored.labels, cut)
        table.append(RobustnessRow(name, level, figures["roc_auc"], figures["accuracy"], figures["balanced_accuracy"]))
    return table


def plot_card(path: Path, scored: ScoredSet, threshold: float, table: list[RobustnessRow] | None = None) -> None:
    """ROC curve, score histograms per class and, if given, robustness curves, in one PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise DeepscanError("--plot needs matplotlib: pip install 'deepscan[plot]'") from None
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
