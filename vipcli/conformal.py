"""Split conformal prediction sets with the LAC score (Sadinle, Lei and Wasserman, 2019).

Score of an image with true class y: s = 1 - p_y (p: the calibrated probabilities). Given n
held-out scores and a wanted coverage 1 - alpha, the threshold is the k-th smallest score with
k = ceil((n + 1)(1 - alpha)); the prediction set of a new image is every class c with
1 - p_c <= threshold. If the held-out and new images are exchangeable (drawn the same way, the model
fixed before either was seen), the set contains the true class with probability at least 1 - alpha.
When k > n no finite threshold keeps that promise, and we say so instead of returning a set.
"""

from __future__ import annotations

import math

import numpy as np

from vipcli.errors import VipError
from vipcli.shares import rounded_share

SCORE = "LAC"
SCORE_DESCRIPTION = "LAC (1 - calibrated probability of the true class)"
REPORTED_COVERAGES = (0.8, 0.9, 0.95)
STORED_DECIMALS = 6  # scores are stored rounded *up* to this many decimals (never a smaller set)


def lac_scores(probabilities, labels) -> np.ndarray:
    """[N] nonconformity scores 1 - p(true class) of probabilities [N, C]."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=int)
    return 1.0 - p[np.arange(len(y)), y]


def stored_scores(scores) -> list[float]:
    """Sorted scores rounded up to STORED_DECIMALS, as kept in the run's metadata."""
    scale = 10**STORED_DECIMALS
    return sorted(min(1.0, math.ceil(float(s) * scale - 1e-9) / scale) for s in scores)


def needed_images(coverage: float) -> int:
    """The fewest held-out images for which `coverage` can be promised: ceil(1/alpha) - 1."""
    alpha = 1.0 - coverage
    return max(1, math.ceil((1.0 - alpha) / alpha - 1e-9))


def threshold(sorted_scores, coverage: float) -> float:
    """The split-conformal threshold for `coverage` from the sorted held-out scores.

    Args:
        sorted_scores: held-out LAC scores in increasing order.
        coverage: 1 - alpha, strictly between 0 and 1.
    Returns:
        the ceil((n + 1) * coverage)-th smallest score.
    Raises:
        VipError when there are too few held-out images to promise `coverage`.
    """
    n = len(sorted_scores)
    k = math.ceil((n + 1) * coverage - 1e-9)  # the tolerance keeps (n + 1) * 0.9 = 90.0 from becoming 91
    if k > n:
        raise VipError(
            f"coverage {coverage:g} needs at least {needed_images(coverage)} held-out (validation) images; "
            f"this run has {n}",
            f"ask for --coverage {askable_coverage(n):g} or less, or retrain with more "
            f"validation images" if n >= 1 else "retrain with validation images",
        )
    return float(sorted_scores[k - 1])


def max_coverage(n: int) -> float:
    """The highest coverage n held-out images can promise: n / (n + 1)."""
    return n / (n + 1)


def askable_coverage(n: int, decimals: int = 3) -> float:
    """max_coverage(n) rounded *down* to `decimals` places: the highest such figure `threshold` accepts.

    Computed from n itself, never from a rounded max_coverage (26 images: 0.96296 is 0.963 at four
    places, and --coverage 0.963 is refused).
    """
    scale = 10**decimals
    return math.floor(n * scale / (n + 1) + 1e-9) / scale


def coverage_spread(n: int, coverage: float) -> tuple[float, float]:
    """Mean and standard deviation, over draws of the n held-out images, of the coverage a run gets.

    Given one held-out draw, the coverage of the k-th smallest score (k = ceil((n + 1) * coverage))
    on new exchangeable images follows Beta(k, n + 1 - k) (Vovk, 2012; Angelopoulos and Bates, 2021):
    its mean k / (n + 1) is at least `coverage`, and its spread shrinks like 1 / sqrt(n).
    """
    k = math.ceil((n + 1) * coverage - 1e-9)
    a, b = k, n + 1 - k
    return a / (a + b), math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


def prediction_sets(probabilities, cutoff: float) -> list[list[int]]:
    """Per image, the classes c with 1 - p_c <= cutoff (in class order; may be empty)."""
    p = np.asarray(probabilities, dtype=np.float64)
    return [np.flatnonzero(1.0 - row <= cutoff).tolist() for row in p]


def coverage_report(sorted_scores, test_probabilities, test_labels, coverages=REPORTED_COVERAGES) -> list[dict]:
    """Empirical test coverage and set sizes at each wanted coverage.

    Returns:
        per coverage: {"coverage", "threshold", "empirical_coverage", "mean_set_size", "empty_sets",
        "expected_coverage", "coverage_sd"} (the last two: see `coverage_spread`; the coverages to 4 places,
        under 1 never 1.0: `vipcli.shares`), or
        {"coverage", "error"} when the held-out images are too few for it.
    """
    labels = np.asarray(test_labels, dtype=int)
    rows = []
    for coverage in coverages:
        try:
            cutoff = threshold(sorted_scores, coverage)
        except VipError as error:
            rows.append({"coverage": coverage, "error": error.message})
            continue
        sets = prediction_sets(test_probabilities, cutoff)
        sizes = np.array([len(s) for s in sets])
        mean, sd = coverage_spread(len(sorted_scores), coverage)
        hits = np.array([int(y) in s for s, y in zip(sets, labels)])
        rows.append({
            "coverage": coverage, "threshold": round(cutoff, 6),
            "empirical_coverage": rounded_share(float(hits.mean()), 4) if len(labels) else None,
            "mean_set_size": round(float(sizes.mean()), 4) if len(labels) else None,
            "empty_sets": int((sizes == 0).sum()),
            "expected_coverage": rounded_share(mean, 4), "coverage_sd": round(sd, 4),
        })
    return rows


SHORTFALL_SD = 3.0  # a test coverage this many standard deviations below its expectation is reported


def coverage_shortfall(row: dict, n_test: int) -> str | None:
    """A sentence when a `coverage_report` row's test coverage is far below what the held-out images promise.

    "Far" is more than SHORTFALL_SD standard deviations of the two sources of chance together: the
    draw of the held-out images (`coverage_sd`) and the draw of the n_test test images (binomial).
    Below that, the test images are very unlikely to be drawn like the held-out ones (another source,
    another class balance), and the sets' promise does not hold for images like them.
    """
    if "error" in row or row.get("empirical_coverage") is None or not n_test:
        return None
    expected, spread = row["expected_coverage"], row["coverage_sd"]
    sd = math.sqrt(spread**2 + expected * (1 - expected) / n_test)
    if row["empirical_coverage"] >= expected - SHORTFALL_SD * sd:
        return None
    return (f"prediction sets at coverage {row['coverage']:g} held the true class for "
            f"{100 * row['empirical_coverage']:.1f}% of the {n_test} test images, far below the "
            f"{100 * expected:.1f}% expected (± {100 * sd:.1f}%, one sd of the validation and test draws together): "
            f"the test images are not drawn like the validation "
            f"images (another source or class balance), so the sets' promise does not hold for images like them")


def conformal_block(sorted_scores, held_out: str, test_probabilities, test_labels) -> dict:
    """The `conformal` block of metrics.json."""
    return {
        "score": SCORE_DESCRIPTION, "held_out": held_out, "n_held_out": len(sorted_scores),
        "max_coverage": round(max_coverage(len(sorted_scores)), 4),
        "test": coverage_report(sorted_scores, test_probabilities, test_labels),
    }


def check_coverage(coverage: float, option: str = "--coverage") -> float:
    """`coverage` itself when strictly between 0 and 1; else a usage error naming the option."""
    from vipcli.errors import UsageError

    if not 0.0 < coverage < 1.0:
        raise UsageError(f"{option} {coverage:g} is outside (0, 1)", f"pass a probability such as {option} 0.9")
    return coverage
