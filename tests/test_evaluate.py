import numpy as np
import pytest

from deepscan.evaluate import GROUP_PATTERN, ScoredSet, choose_threshold, compute_metrics, report_card, roc_auc


def test_roc_auc_counts_ordered_pairs():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    labels = np.array([0, 0, 1, 1])
    # pairs (fake, real) ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)


def test_metrics_match_a_hand_made_confusion_matrix():
    scores = np.array([0.1, 0.2, 0.7, 0.9, 0.6, 0.3])
    labels = np.array([0, 0, 0, 1, 1, 1])
    figures = compute_metrics(scores, labels, scores >= 0.5)
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


@pytest.mark.parametrize("seed", range(5))
def test_metrics_and_threshold_agree_with_scikit_learn_on_random_data(seed: int):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 3000).astype(bool)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1).round(3)  # rounded: many ties
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))

    fpr, tpr, _ = metrics.roc_curve(labels, scores, drop_intermediate=False)
    cut = choose_threshold(scores, labels)
    flagged = scores >= cut
    balanced = metrics.balanced_accuracy_score(labels, flagged)
    assert balanced == pytest.approx(np.max((tpr + 1 - fpr) / 2))

    for target in (0.01, 0.1, 0.3):
        cut = choose_threshold(scores, labels, target_fpr=target)
        flagged = scores >= cut
        assert flagged[~labels].mean() <= target
        assert flagged[labels].mean() == pytest.approx(tpr[fpr <= target].max())


def test_calibration_error_and_reliability_bins_by_hand():
    from deepscan.evaluate import calibration_error, reliability

    scores = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55])
    labels = np.array([0, 0, 1, 0, 1, 1], bool)
    # bins: 0.0-0.1 (2 real: gap 0.05), 0.9-1.0 (1 of 2 fake: gap 0.45), 0.5-0.6 (2 fake: gap 0.45)
    assert calibration_error(scores, labels) == pytest.approx((2 * 0.05 + 2 * 0.45 + 2 * 0.45) / 6)
    assert reliability(scores, labels) == [(0.05, 0.0, 2), (0.55, 1.0, 2), (0.95, 0.5, 2)]
    perfect = np.array([0.0, 1.0])
    assert calibration_error(perfect, np.array([0, 1], bool)) == 0.0


def _separated(count: int, seed: int = 0) -> ScoredSet:
    """Half real, half fake, the fakes' scores shifted up: an AUC near 0.76."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2 == 1
    scores = 1 / (1 + np.exp(-rng.normal(labels.astype(float), 1.0)))
    return ScoredSet(scores, labels, 0, 1.0)


def test_intervals_hold_each_figure_narrow_with_more_images_and_repeat_exactly():
    small, large = report_card(_separated(40), 0.5, ""), report_card(_separated(4000), 0.5, "")
    for card in (small, large):
        for metric in ("roc_auc", "balanced_accuracy"):
            low, high = card.intervals[metric]
            assert low < getattr(card, metric) < high
    width = {card.images: np.diff(card.intervals["roc_auc"])[0] for card in (small, large)}
    assert width[4000] < width[40] / 4  # about sqrt(100) = 10 times narrower
    assert report_card(_separated(40), 0.5, "").intervals == small.intervals
    assert report_card(_separated(40), 0.5).intervals == {}  # only when asked for
    nothing = report_card(ScoredSet(np.array([]), np.array([], bool), 3, 1.0), 0.5, "").intervals
    assert nothing["groups"] == 0 and np.isnan(nothing["roc_auc"]).all()  # every file unreadable: no interval


def test_intervals_count_the_frames_of_one_video_once():
    videos = _separated(20, seed=1)
    frames = 10  # each video's frames score alike, as near-copies do
    scored = ScoredSet(
        np.repeat(videos.scores, frames),
        np.repeat(videos.labels, frames),
        0,
        1.0,
        [f"/data/v{video:05d}_{frame:05d}.jpg" for video in range(20) for frame in range(frames)],
    )
    by_video, by_file = report_card(scored, 0.5, GROUP_PATTERN), report_card(scored, 0.5, "")
    assert (by_video.intervals["groups"], by_file.intervals["groups"]) == (20, 200)
    assert by_video.roc_auc == by_file.roc_auc
    # 20 videos, not 200 independent images: about sqrt(10) = 3.2 times wider
    assert np.diff(by_video.intervals["roc_auc"])[0] > 2 * np.diff(by_file.intervals["roc_auc"])[0]
