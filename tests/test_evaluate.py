import numpy as np
import pytest

from deepscan.evaluate import choose_threshold, compute_metrics, roc_auc


def test_roc_auc_counts_ordered_pairs():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    # pairs (fake, real) ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_metrics_match_a_hand_made_confusion_matrix():
    scores = np.array([0.1, 0.2, 0.7, 0.9, 0.6, 0.3])
    labels = np.array([0, 0, 0, 1, 1, 1])
    figures = compute_metrics(scores, labels, threshold=0.5)
    assert figures["confusion"] == {"real": {"real": 2, "fake": 1}, "fake": {"real": 1, "fake": 2}}
    assert figures["accuracy"] == pytest.approx(4 / 6)
    assert figures["per_class"]["fake"]["precision"] == pytest.approx(2 / 3)
    assert figures["false_positive_rate"] == pytest.approx(1 / 3)


def test_threshold_maximises_balanced_accuracy_or_meets_a_false_positive_target():
    scores = np.array([0.1, 0.2, 0.3, 0.55, 0.6, 0.7, 0.8, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert choose_threshold(scores, labels) == pytest.approx(0.575)  # between 0.55 and 0.6
    noisy = np.array([0.1, 0.2, 0.65, 0.9, 0.6, 0.7, 0.8, 0.95])
    cut = choose_threshold(noisy, labels, target_fpr=0.25)
    assert np.mean(noisy[labels == 0] >= cut) <= 0.25
