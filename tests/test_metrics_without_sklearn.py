"""`compute_metrics` counts its confusion matrix and AUROC with NumPy, as scikit-learn does, so that `vip train`
does not import scikit-learn: the same matrix and the same AUROC float to the last bit, on many random splits."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from conftest import modules_left_loaded
from vipcli.metrics import binary_auroc, compute_metrics, confusion_counts, round_half_up


def _probabilities(generator, images: int, classes: int, tie_levels: int | None) -> np.ndarray:
    """[N, C] rows that sum to 1; with `tie_levels`, each score one of that many values (many ties)."""
    raw = generator.random((images, classes))
    if tie_levels:
        raw = np.floor(raw * tie_levels) + 1.0
    return raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_auroc_and_confusion_matrix_are_scikit_learns_to_the_last_bit(classes):
    generator = np.random.default_rng(classes)
    for case in range(120):
        images = int(generator.integers(classes, 60))
        labels = np.concatenate([np.arange(classes), generator.integers(0, classes, images - classes)])  # all present
        generator.shuffle(labels)
        probabilities = _probabilities(generator, images, classes, [None, 2, 3, 7][case % 4])
        predicted = probabilities.argmax(axis=1)
        assert (confusion_counts(labels, predicted, classes) == confusion_matrix(labels, predicted,
                                                                               labels=list(range(classes)))).all()
        if classes == 2:
            expected = roc_auc_score(labels, probabilities[:, 1])
        else:
            expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro",
                                     labels=list(range(classes)))
        stored = compute_metrics(labels, probabilities, classes)
        assert stored["auroc"] == round_half_up(Decimal(repr(float(expected))) * 100)
        assert stored["confusion_matrix"] == confusion_matrix(labels, predicted, labels=list(range(classes))).tolist()
        ours = binary_auroc(labels == 1, probabilities[:, 1]) if classes == 2 else float(np.mean(
            [binary_auroc(labels == c, probabilities[:, c]) for c in range(classes)]))
        assert ours == float(expected), (case, ours, expected)  # the same float, not merely close


def test_a_class_absent_gives_no_auroc_and_a_zero_row():
    labels = np.array([0, 0, 2, 2, 0])  # class 1 has no image
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.1, 0.4], [0.3, 0.3, 0.4]])
    metrics = compute_metrics(labels, probabilities, 3)
    assert metrics["auroc"] is None
    assert metrics["confusion_matrix"] == confusion_matrix(labels, probabilities.argmax(axis=1),
                                                           labels=[0, 1, 2]).tolist()
    assert metrics["confusion_matrix"][1] == [0, 0, 0]


def test_computing_metrics_imports_neither_scikit_learn_nor_scipy():
    script = ("import numpy as np\n"
              "from vipcli.metrics import compute_metrics\n"
              "compute_metrics([0, 1, 2, 1], np.full((4, 3), 1 / 3), 3)")
    assert modules_left_loaded(script, ("sklearn", "scipy")) == []
