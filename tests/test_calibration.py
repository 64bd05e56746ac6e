"""Temperature scaling, calibration scores and split-conformal prediction sets (library level)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vipcli.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    softmax,
)
from vipcli.conformal import coverage_report, lac_scores, needed_images, prediction_sets, stored_scores, threshold
from vipcli.errors import VipError
from vipcli.trust import calibrate_run, read_calibration


def _sample(n: int, classes: int, true_temperature: float, seed: int):
    """Logits and labels drawn from softmax(logits / true_temperature): T is what a fit should find."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 6, size=(n, classes))  # [N, C]
    p = softmax(logits, true_temperature)
    labels = np.array([rng.choice(classes, p=row) for row in p])
    return logits, labels


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with():
    for true_t in (0.5, 2.5):
        logits, labels = _sample(8000, 3, true_t, seed=1)
        assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.08)


def test_temperature_keeps_the_winner_and_lowers_nll_of_an_overconfident_model():
    logits, labels = _sample(4000, 4, 3.0, seed=2)  # the raw logits are 3x too sharp
    t = fit_temperature(logits[:2000], labels[:2000])
    before, after = softmax(logits[2000:]), softmax(logits[2000:], t)
    assert (before.argmax(1) == after.argmax(1)).all()
    assert negative_log_likelihood(after, labels[2000:]) < negative_log_likelihood(before, labels[2000:]) - 0.1
    assert expected_calibration_error(after, labels[2000:]) < expected_calibration_error(before, labels[2000:]) / 2


def test_temperature_stays_finite_when_every_held_out_image_is_right():
    logits = np.array([[5.0, 0.0], [0.0, 4.0], [3.0, 1.0]])
    t = fit_temperature(logits, np.array([0, 1, 0]))
    assert 0.00099 < t < 0.05  # sharp, as the data asks, but finite (the search stops at 0.001)
    result = calibrate_run(logits, np.array([0, 1, 0]), logits, np.array([0, 1, 0]))
    assert any("all 3 validation images" in w for w in result.warnings)


def test_a_model_that_knows_nothing_gets_uniform_probabilities_and_a_warning():
    rng = np.random.default_rng(9)
    logits, labels = rng.normal(0, 5, size=(400, 2)), rng.integers(0, 2, size=400)  # labels ignore the logits
    result = calibrate_run(logits, labels, logits, labels)
    assert result.calibration.temperature > 990  # the upper bound: the flatter, the better the NLL here
    assert result.metrics["calibration"]["test"]["after"]["nll"] == pytest.approx(math.log(2), abs=1e-3)
    assert any("upper bound" in w and "no information" in w for w in result.warnings)


def test_scores_on_hand_computed_examples():
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    # bins: {0.9, 0.9}: accuracy 0.5, confidence 0.9; {0.6, 0.6}: accuracy 1.0, confidence 0.6
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert brier_score(np.eye(3), [0, 1, 2]) == 0.0
    assert brier_score(np.full((2, 2), 0.5), [0, 1]) == pytest.approx(0.5)
    assert negative_log_likelihood(p, y) == pytest.approx(-np.log([0.9, 0.1, 0.6, 0.6]).mean())
    bins = reliability_bins(p, y)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 4
    assert [b["accuracy"] for b in bins if b["count"]] == [1.0, 0.5]
    # a confidence of exactly 1 falls in the last bin, one on an edge in the bin below it
    edges = reliability_bins(np.array([[1.0, 0.0], [8 / 15, 7 / 15]]), [0, 0])
    assert edges[14]["count"] == 1 and edges[7]["count"] == 1


def test_the_test_nll_is_exact_when_temperature_makes_the_model_sure_and_wrong():
    # T near its lower bound (every validation image right) with test images it gets wrong: their
    # probabilities round to 0, and the NLL must be the mean of -log p = logit gap / T, not capped
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([1, 0, 0, 1])  # the first two wrong by a gap of 3 and 2
    result = calibrate_run(logits[2:], labels[2:], logits, labels)
    block, t = result.metrics["calibration"], result.calibration.temperature
    gaps = np.array([3.0, 2.0, -1.0, -1.0]) / t  # (other logit - true logit) / T
    exact = np.mean(np.logaddexp(0.0, gaps))  # -log softmax of the true class
    assert exact > 30  # far beyond what probabilities floored at 1e-12 allow (27.6 nats an image, 13.8 here)
    assert block["test"]["after"]["nll"] == pytest.approx(exact, rel=1e-4)
    assert block["test"]["before"]["nll"] == pytest.approx(np.mean(np.logaddexp(0.0, gaps * t)), abs=1e-4)


def test_predicted_sets_are_the_sets_metrics_json_counted_where_float32_would_round_to_one():
    # every validation image right: T near 0 and a threshold of 0, so a class is in the set only where its
    # probability is exactly 1; float32 rounds p > 1 - 6e-8 to 1 (gap / T > 17), float64 only past gap / T = 37
    import torch

    from vipcli.trust import RunCalibration, calibrated_softmax, prediction_set

    calibration = RunCalibration(0.01, (0.0, 0.0, 0.0, 0.0))
    cutoff = calibration.threshold(0.8)
    logits = torch.tensor([[0.0, gap] for gap in np.linspace(0.1, 0.5, 41)], dtype=torch.float32)  # [41, 2]
    predicted = [prediction_set(row, ["a", "b"], cutoff) for row in calibrated_softmax(logits, calibration)]
    counted = prediction_sets(calibration.probabilities(logits.numpy()), cutoff)  # as coverage_report counts
    assert predicted == [[["a", "b"][c] for c in found] for found in counted]
    assert [] in predicted and ["b"] in predicted


def test_stored_coverages_under_one_never_read_one():
    """metrics.json stored 29999 of 30000 test images held by their sets as empirical_coverage 1.0 (to 4 places),
    and an expectation of 200000/200001 as 1.0: every image covered, which it was not. Both are now 0.9999."""
    n = 30000
    probabilities, labels = np.tile([[0.99, 0.01]], (n, 1)), np.zeros(n, dtype=int)
    labels[0] = 1  # its class has 0.01: outside every set of threshold 0.5
    row, = coverage_report(sorted(np.linspace(0, 0.5, 200000).tolist()), probabilities, labels, coverages=(0.99999,))
    assert row["empirical_coverage"] == 0.9999 and row["expected_coverage"] == 0.9999, row
    labels[0] = 0
    row, = coverage_report(sorted(np.linspace(0, 0.5, 200000).tolist()), probabilities, labels, coverages=(0.99999,))
    assert row["empirical_coverage"] == 1.0  # every one held: exactly 1


def test_conformal_threshold_uses_the_finite_sample_quantile():
    scores = [i / 10 for i in range(1, 10)]  # n = 9
    assert threshold(scores, 0.9) == 0.9  # k = ceil(10 * 0.9) = 9
    assert threshold(scores, 0.8) == 0.8  # k = ceil(8.0) = 8
    assert threshold(scores, 0.5) == 0.5  # k = ceil(5.0) = 5
    with pytest.raises(VipError, match="coverage 0.9 needs at least 9 held-out .* has 8"):
        threshold(scores[:8], 0.9)
    assert [needed_images(c) for c in (0.5, 0.8, 0.9, 0.95, 0.99)] == [1, 4, 9, 19, 99]
    for coverage in (0.5, 0.8, 0.9, 0.95):  # exactly needed_images is enough, one fewer is not
        n = needed_images(coverage)
        threshold([0.5] * n, coverage)
        if n > 1:
            with pytest.raises(VipError):
                threshold([0.5] * (n - 1), coverage)


def test_prediction_sets_hold_the_classes_within_the_threshold():
    p = np.array([[0.7, 0.2, 0.1], [0.34, 0.33, 0.33], [0.05, 0.05, 0.9]])
    assert prediction_sets(p, 0.5) == [[0], [], [2]]  # an empty set: no class is likely enough
    assert prediction_sets(p, 0.8) == [[0, 1], [0, 1, 2], [2]]
    assert lac_scores(p, [1, 0, 2]) == pytest.approx([0.8, 0.66, 0.1])


def test_conformal_sets_keep_their_coverage_promise_over_many_splits():
    """Exchangeable held-out and test data: mean coverage >= 1 - alpha, and not much above."""
    logits, labels = _sample(60000, 5, 1.5, seed=3)
    probabilities = softmax(logits)
    rng = np.random.default_rng(4)
    n = 49
    for coverage in (0.8, 0.9):
        hits = []
        for _ in range(300):
            rows = rng.choice(len(labels), size=n + 100, replace=False)
            cal, test = rows[:n], rows[n:]
            cutoff = threshold(sorted(lac_scores(probabilities[cal], labels[cal])), coverage)
            sets = prediction_sets(probabilities[test], cutoff)
            hits.append(np.mean([y in s for s, y in zip(sets, labels[test])]))
        mean = float(np.mean(hits))
        assert coverage - 0.01 <= mean <= coverage + 1 / (n + 1) + 0.01, (coverage, mean)


def test_stored_scores_are_sorted_and_never_smaller():
    raw = [0.3000000001, 0.1, 0.2999999, 1.0]
    stored = stored_scores(raw)
    assert stored == sorted(stored) and stored[-1] == 1.0
    assert all(s >= r - 1e-12 for s, r in zip(stored, sorted(raw)))
    assert max(s - r for s, r in zip(stored, sorted(raw))) <= 1e-6


def test_calibrate_run_gives_a_stored_record_and_the_metric_blocks():
    logits, labels = _sample(3000, 3, 2.0, seed=5)
    result = calibrate_run(logits[:200], labels[:200], logits[200:], labels[200:])
    block, conformal = result.metrics["calibration"], result.metrics["conformal"]
    assert block["held_out"] == "val" and block["n_held_out"] == 200
    assert block["temperature"] == pytest.approx(2.0, rel=0.25)
    assert block["test"]["after"]["nll"] < block["test"]["before"]["nll"]
    assert [row["coverage"] for row in conformal["test"]] == [0.8, 0.9, 0.95]
    for row in conformal["test"]:
        assert abs(row["empirical_coverage"] - row["coverage"]) < 0.05
    sizes = [row["mean_set_size"] for row in conformal["test"]]
    assert sizes == sorted(sizes)  # higher coverage costs larger sets
    again = read_calibration({"calibration": __import__("json").dumps(result.calibration.record())})
    assert again == result.calibration
    assert read_calibration({}) is None


def test_too_few_held_out_images_are_reported_per_coverage():
    logits, labels = _sample(40, 2, 1.0, seed=6)
    rows = coverage_report(sorted(lac_scores(softmax(logits[:10]), labels[:10])), softmax(logits[10:]), labels[10:])
    assert "error" not in rows[0] and "error" not in rows[1]  # 10 images: 0.8 and 0.9 can be promised
    assert "needs at least 19" in rows[2]["error"]


def test_coverage_spread_is_the_beta_law_of_split_conformal():
    from vipcli.conformal import coverage_spread

    mean, sd = coverage_spread(64, 0.9)  # k = 59: Beta(59, 6)
    assert mean == pytest.approx(59 / 65) and sd == pytest.approx(math.sqrt(59 * 6 / (65**2 * 66)))
    # and it is what repeated draws give: one held-out draw's coverage, estimated on many test images
    logits, labels = _sample(40000, 3, 1.0, seed=7)
    p, rng, got = softmax(logits), np.random.default_rng(8), []
    for _ in range(400):
        rows = rng.choice(len(labels), size=64 + 2000, replace=False)
        cutoff = threshold(sorted(lac_scores(p[rows[:64]], labels[rows[:64]])), 0.9)
        got.append(np.mean([y in s for s, y in zip(prediction_sets(p[rows[64:]], cutoff), labels[rows[64:]])]))
    assert np.mean(got) == pytest.approx(mean, abs=0.01) and np.std(got) == pytest.approx(sd, rel=0.25)


def test_too_few_validation_images_for_sets_at_coverage_0_9_are_warned_of_when_training():
    """Two validation images (one per class) gave a 'calibrated' temperature and prediction sets at no more than
    coverage 0.666 without a word at training time; 9 are the fewest that allow --coverage 0.9."""
    logits, labels = np.array([[1.0, 0.0], [0.2, 0.5]] * 5), np.array([0, 0] * 5)
    two = calibrate_run(logits[:2], labels[:2], logits, labels).warnings
    assert two[0].startswith("only 2 validation images: the temperature (T=")
    assert "prediction sets can promise at most --coverage 0.666 (0.9 needs 9)" in two[0]
    assert calibrate_run(logits[:1], labels[:1], logits, labels).warnings[0].startswith("only 1 validation image:")
    assert "only 8 validation images" in calibrate_run(logits[:8], labels[:8], logits, labels).warnings[0]
    assert not any("validation images:" in w for w in calibrate_run(logits[:9], labels[:9], logits, labels).warnings)
