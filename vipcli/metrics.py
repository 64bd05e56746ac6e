"""Classification metrics, in percent, as the paper reports them (plus AUROC)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import numpy as np


def compute_metrics(labels, probabilities, num_classes: int) -> dict:
    """Accuracy, macro-F1 and AUROC (percent) and the confusion matrix.

    Args:
        labels: [N] true class indices.
        probabilities: [N, C] predicted class probabilities.
        num_classes: C.
    Returns:
        {"n", "accuracy", "macro_f1", "auroc" (None if a class is absent), "confusion_matrix"}
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if labels.size == 0:
        return {"n": 0, "accuracy": None, "macro_f1": None, "auroc": None, "confusion_matrix": []}
    predicted = probabilities.argmax(axis=1)
    classes = list(range(num_classes))
    auroc = None
    if len(set(labels.tolist())) == num_classes:
        if num_classes == 2:
            auroc = roc_auc_score(labels, probabilities[:, 1])
        else:
            auroc = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=classes)
    return {
        "n": int(labels.size),
        "accuracy": round(100.0 * accuracy_score(labels, predicted), 2),
        "macro_f1": round(100.0 * f1_score(labels, predicted, average="macro", labels=classes, zero_division=0), 2),
        "auroc": None if auroc is None else round(100.0 * float(auroc), 2),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def mean_of_figures(values: list[float], digits: int = 2) -> float:
    """The mean of figures as stored (decimals such as 50.0 and 53.33), rounded half up to `digits` places.

    Computed in decimal, so a mean that falls exactly halfway always rounds the same way: the float
    mean of 50.0 and 53.33 is 51.66499..., which round() makes 51.66 while 53.335 became 53.34.
    """
    exact = sum(Decimal(str(v)) for v in values) / len(values)
    return float(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))
