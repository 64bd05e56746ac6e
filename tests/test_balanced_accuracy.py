"""Balanced accuracy (the mean over the classes of each one's recall), as the ISIC 2018/2019 challenges ranked
methods: exact from the confusion matrix, in metrics.json, a benchmark's rows, summary and report, a run's
report; runs and sweeps of an earlier vip, which stored none, still read and report."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from vipcli.metrics import compute_metrics, exact_figures, split_figure


def metrics_of(matrix: list[list[int]]) -> dict:
    """compute_metrics on the labels and one-hot predictions that a confusion matrix stands for."""
    labels, predicted = [], []
    for true, counts in enumerate(matrix):
        for guess, count in enumerate(counts):
            labels += [true] * count
            predicted += [guess] * count
    return compute_metrics(labels, np.eye(len(matrix))[predicted], len(matrix))


def test_balanced_accuracy_of_an_imbalanced_3_class_matrix_is_the_mean_recall_over_every_class():
    """melanoma (3 images) is never predicted, nevus has 9, seborrheic keratosis none in this split (the model
    still calls 2 images that). Recalls 0/3, 8/9 and none: (0 + 88.89 + 0) / 3 = 29.63. Accuracy is 8/12 = 66.67;
    macro-F1 (0 + 16/19 + 0) / 3 = 28.07 counts the absent class 0 too, so both class means average the same
    3 classes (sklearn's balanced_accuracy_score would drop it and give 44.44)."""
    from sklearn.metrics import balanced_accuracy_score, recall_score

    matrix = [[0, 2, 1], [0, 8, 1], [0, 0, 0]]
    stored = metrics_of(matrix)
    assert stored["confusion_matrix"] == matrix
    assert (stored["accuracy"], stored["balanced_accuracy"], stored["macro_f1"]) == (66.67, 29.63, 28.07)
    assert exact_figures(matrix)["balanced_accuracy"] == Fraction(800, 27)  # 100 · (8/9) / 3, exactly
    labels = [0] * 3 + [1] * 9
    predicted = [1, 1, 2] + [1] * 8 + [2]
    assert stored["balanced_accuracy"] == round(100 * recall_score(labels, predicted, labels=[0, 1, 2],
                                                                   average="macro", zero_division=0), 2)
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):  # sklearn drops that class
        assert round(100 * balanced_accuracy_score(labels, predicted), 2) == 44.44  # the convention not taken
    # 1 melanoma to 4 nevi, the model finds 1 of 2 melanomas: accuracy 90 hides what balanced accuracy shows
    assert (metrics_of([[1, 1], [0, 8]])["accuracy"], metrics_of([[1, 1], [0, 8]])["balanced_accuracy"]) == (90.0, 75.0)
    # exactly halfway (1/16 and 0 of 4: 3.125) rounds half up, as accuracy and macro-F1 do; round() gives 3.12
    assert metrics_of([[1, 15], [4, 0]])["balanced_accuracy"] == 3.13 != round(3.125, 2)
    assert compute_metrics([], np.zeros((0, 2)), 2)["balanced_accuracy"] is None


def test_a_split_block_of_an_earlier_vip_gets_its_balanced_accuracy_from_its_confusion_matrix():
    old = {"n": 12, "accuracy": 66.67, "macro_f1": 28.07, "auroc": None,
           "confusion_matrix": [[0, 2, 1], [0, 8, 1], [0, 0, 0]]}
    assert split_figure(old, "balanced_accuracy") == 29.63 and split_figure(old, "accuracy") == 66.67
    assert split_figure({**old, "balanced_accuracy": 12.5}, "balanced_accuracy") == 12.5  # as stored
    assert split_figure({"n": 0, "accuracy": None}, "balanced_accuracy") is None  # no matrix: no figure
