"""Temperature scaling and the scores that say how far a model's probabilities can be trusted.

Temperature scaling (Guo et al., 2017) divides every logit by one number T fitted on held-out data
by minimising the negative log-likelihood. It never changes which class wins, only how confident
the model says it is. Scores (all on class probabilities, lower is better):

- ECE: expected calibration error of the top class, 15 equal-width confidence bins over (0, 1],
  sum over bins of (bin size / N) * |accuracy - mean confidence|, as a fraction in [0, 1].
- NLL: mean negative log-likelihood of the true class, in nats.
- Brier: mean over images of sum over classes of (p_c - [c is true])^2, in [0, 2] (Brier, 1950).
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
T_BOUNDS = (1e-3, 1e3)  # T is sought in this range
EPSILON = 1e-12  # probability floor inside log()


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits [N, C] / T, computed stably in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature  # [N, C]
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax of logits [N, C] / T in float64, exact where softmax rounds to 0 or 1."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature  # [N, C]
    top = scaled.max(axis=1, keepdims=True)
    return scaled - top - np.log(np.exp(scaled - top).sum(axis=1, keepdims=True))


def negative_log_likelihood(probabilities, labels, log_probabilities=None) -> float:
    """Mean -log p(true class) over images [N, C] with labels [N] (nats).

    From `log_probabilities` [N, C] when given (`log_softmax` of the logits: exact however sure the model
    is); else from the probabilities, each floored at EPSILON, which caps an image's term at 27.6 nats.
    """
    y = np.asarray(labels, dtype=int)
    if log_probabilities is not None:
        return float(-np.asarray(log_probabilities, dtype=np.float64)[np.arange(len(y)), y].mean())
    p = np.asarray(probabilities, dtype=np.float64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], EPSILON, 1.0)).mean())


def brier_score(probabilities, labels) -> float:
    """Mean over images of the squared distance between probabilities [N, C] and the one-hot label."""
    p = np.asarray(probabilities, dtype=np.float64)
    onehot = np.eye(p.shape[1])[np.asarray(labels, dtype=int)]  # [N, C]
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def reliability_bins(probabilities, labels, bins: int = ECE_BINS) -> list[dict]:
    """Top-class confidence in `bins` equal-width bins over (0, 1].

    Returns:
        one dict per bin: lower, upper, count, confidence (mean) and accuracy (None when empty).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # bin b holds (edge_b, edge_b+1]
    result = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        result.append({
            "lower": round(float(edges[b]), 4), "upper": round(float(edges[b + 1]), 4), "count": count,
            "confidence": round(float(confidence[members].mean()), 4) if count else None,
            "accuracy": round(float(correct[members].mean()), 4) if count else None,
        })
    return result


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """ECE of the top class over `bins` equal-width bins (a fraction in [0, 1])."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.sum() / len(y) * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def calibration_scores(probabilities, labels, log_probabilities=None) -> dict:
    """{"ece", "nll", "brier"} of probabilities [N, C] against labels [N] (None for no images); the NLL
    from `log_probabilities` when given (see `negative_log_likelihood`)."""
    if len(labels) == 0:
        return {"ece": None, "nll": None, "brier": None}
    return {"ece": round(expected_calibration_error(probabilities, labels), 4),
            "nll": round(negative_log_likelihood(probabilities, labels, log_probabilities), 4),
            "brier": round(brier_score(probabilities, labels), 4)}


def fit_temperature(logits, labels) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on held-out data.

    With b = 1 / T the NLL is L(b) = mean_i [logsumexp(b z_i) - b z_i,y_i], a convex function of b: its
    slope L'(b) = mean_i [E_softmax(b z_i)[z_i] - z_i,y_i] never falls (L'' is a mean of variances). So the
    minimum within the bounds is where the slope changes sign, found by bisection on b to the last bit
    (`_slope_root`), or a bound where the slope keeps one sign: T = T_BOUNDS[0] when the held-out images
    are all classified correctly (the NLL keeps falling as T -> 0), T_BOUNDS[1] when they carry no
    information about the class (it keeps falling as T -> infinity).

    Args:
        logits: [N, C] held-out logits (any scale; -inf for a class an image cannot be).
        labels: [N] their true classes.
    Returns:
        T (1.0 when there are no held-out images).
    """
    z = np.asarray(logits, dtype=np.float64)  # [N, C]
    y = np.asarray(labels, dtype=int)  # [N]
    if len(y) == 0:
        return 1.0
    true_logit = z[np.arange(len(y)), y]  # [N]

    def slope(b: float) -> float:  # L'(b): mean over images of the expected logit less the true one
        p = softmax(z * b)  # [N, C]
        with np.errstate(invalid="ignore"):  # a -inf logit has p = 0: it adds nothing (not 0 * -inf = NaN)
            expected = np.where(p > 0, p * z, 0.0).sum(axis=1)  # [N]
        return float((expected - true_logit).mean())

    return 1.0 / _slope_root(slope, 1.0 / T_BOUNDS[1], 1.0 / T_BOUNDS[0])


def _slope_root(slope, low: float, high: float) -> float:
    """The b in [low, high] where a non-decreasing `slope` turns from negative to non-negative (a bound when it
    keeps one sign there), by bisection until the bracket cannot shrink in float64."""
    if slope(low) >= 0:
        return low
    if slope(high) <= 0:
        return high
    while True:
        middle = 0.5 * (low + high)
        if not low < middle < high:  # adjacent floats: the bracket is as narrow as float64 allows
            return middle
        if slope(middle) < 0:
            low = middle
        else:
            high = middle


def calibration_block(temperature: float, held_out: str, n_held_out: int, test_logits, test_labels) -> dict:
    """The `calibration` block of metrics.json: T, and ECE/NLL/Brier on test before and after it.

    Args:
        temperature: the fitted T.
        held_out: the name of the data T was fitted on (e.g. "val").
        n_held_out: how many images that was.
        test_logits: [N, C] test logits; test_labels: [N].
    """
    empty = len(test_labels) == 0
    before = np.empty((0, 0)) if empty else softmax(test_logits)
    after = np.empty((0, 0)) if empty else softmax(test_logits, temperature)

    def scores(probabilities, t: float) -> dict:  # the NLL from the logits: exact where p rounds to 0
        return calibration_scores(probabilities, test_labels, None if empty else log_softmax(test_logits, t))

    return {
        "method": "temperature scaling (NLL-optimal T in [0.001, 1000], bisection on 1/T)",
        "temperature": round(temperature, 4), "held_out": held_out, "n_held_out": int(n_held_out),
        "ece_bins": ECE_BINS,
        "test": {"n": int(len(test_labels)), "before": scores(before, 1.0), "after": scores(after, temperature)},
        "reliability": {"before": [] if empty else reliability_bins(before, test_labels),
                        "after": [] if empty else reliability_bins(after, test_labels)},
    }
