"""Whether a run's test predictions tell its classes apart better than guessing would.

A model on images its backbone does not know (the toy backbone on real photographs, a photo model on
X-rays) can print figures that look like results: 54% accuracy, AUROC 54. Each class's probability is
tested one-sided against the other classes' images (the Mann-Whitney U test, whose statistic is the
class's one-vs-rest AUROC times the number of image pairs). A run beats chance when one of its C tested
classes does at `LEVEL` / C (Bonferroni: a model that guesses then escapes the warning at most `LEVEL` of the
time, however many classes it has); a run none of whose classes does is named in a warning, with what its
test split could have shown: nothing at all (too few images for even a perfect ranking), or not even a model of
`EXCELLENT_AUROC` (too few to judge this one), or enough (the model is the matter).
"""

from __future__ import annotations

import math
from itertools import combinations
from math import comb
from statistics import NormalDist

import numpy as np

LEVEL = 0.05  # a run beats chance when a guess scores as high as one of its C classes at most LEVEL / C of the time
EXCELLENT_AUROC = 80.0  # Hosmer & Lemeshow's "excellent" discrimination: a test split that cannot show even this
# (the AUROC it needs to beat chance is higher) is too small to judge the model by
EXACT_ARRANGEMENTS = 10_000  # with tied probabilities, p is counted over every arrangement of the images, up to
# this many
EXACT_AT_MOST = 8  # without ties, p is exact where a sample is this small (SciPy's rule), normal above


def chance_scores(labels, probabilities) -> list[tuple[int, float, float, float]]:
    """Each tested class's one-vs-rest AUROC (percent), the chance a guess scores at least as high, and that chance
    for a perfect ranking (the least any model can reach on these images).

    Args:
        labels: [N] true class indices.
        probabilities: [N, C] predicted class probabilities.
    Returns:
        (class index, AUROC %, one-sided p-value, a perfect ranking's p-value) for class 1 of two classes (one test
        says it all), for every class of more; [] where a class has no image (nothing to test it against).
    """
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)  # [N, C]
    classes = probabilities.shape[1] if probabilities.ndim == 2 else 0
    if classes < 2 or len(set(labels.tolist())) < classes:
        return []
    scores = []
    for index in ([1] if classes == 2 else range(classes)):
        own, rest = probabilities[labels == index, index], probabilities[labels != index, index]
        statistic, p = one_sided_test(own, rest)
        perfect = one_sided_test(np.arange(rest.size, rest.size + own.size, dtype=float), np.arange(rest.size))[1]
        scores.append((index, 100.0 * statistic / (own.size * rest.size), p, perfect))
    return scores


def one_sided_test(own, rest) -> tuple[float, float]:
    """The Mann-Whitney U of `own` over `rest` and the chance a guess gets at least as high a U.

    Exact where a sample has at most `EXACT_AT_MOST` values and none ties (`exact_tail`, in milliseconds where
    SciPy's own exact method took 7-25 s a call for 5 images against 5,000), and with ties in few images (up to
    `EXACT_ARRANGEMENTS` arrangements), counted over every arrangement, where the normal approximation would claim
    more than a perfect ranking could (3 against 3 with one tie: 3.8%, not 5%); the normal approximation
    otherwise. Each is SciPy's `mannwhitneyu(own, rest, alternative="greater")` with `method` the exact
    distribution, `PermutationMethod(n_resamples=EXACT_ARRANGEMENTS)` or "asymptotic", computed here without
    importing `scipy.stats` (about 1 s of every `vip train` on a 2-core CPU).
    """
    own, rest = np.asarray(own, dtype=float), np.asarray(rest, dtype=float)
    values = np.concatenate([own, rest])  # [N]: own first
    ranks, tie_sizes = _midranks(values)
    statistic = _u_statistic(ranks, own.size)
    tied = bool((tie_sizes > 1).any())
    if not tied and min(own.size, rest.size) <= EXACT_AT_MOST:
        return statistic, exact_tail(own.size, rest.size)[round(statistic)]
    if tied and comb(values.size, own.size) <= EXACT_ARRANGEMENTS:
        return statistic, _every_arrangement_tail(ranks, own.size, statistic)
    return statistic, _normal_tail(statistic, own.size, rest.size, tie_sizes)


def _midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] ranks from 1 (tied values share the mean of their ranks: SciPy's `rankdata(method="average")`) and
    [G] the size of each group of equal values."""
    order = np.argsort(values, kind="stable")  # [N]
    ordered = values[order]
    starts = np.concatenate([[True], ordered[1:] != ordered[:-1]])  # [N] first of its group
    group = np.cumsum(starts) - 1  # [N] group index of each ordered value
    first = np.flatnonzero(starts)  # [G] 0-based position of each group's first value
    sizes = np.diff(np.concatenate([first, [values.size]]))  # [G]
    mean_rank = first + (sizes + 1) / 2.0  # [G] 1-based mean rank of the group
    ranks = np.empty(values.size)
    ranks[order] = mean_rank[group]
    return ranks, sizes


def _u_statistic(ranks: np.ndarray, own: int) -> float:
    """U of the first `own` of the pooled `ranks` over the rest: their rank sum less its least value."""
    return float(ranks[:own].sum() - own * (own + 1) / 2)


def _every_arrangement_tail(ranks: np.ndarray, own: int, statistic: float) -> float:
    """The share of all comb(N, own) ways to pick `own` of the pooled images whose U is at least `statistic`
    (SciPy's exact permutation test: U takes half-integer values, so the comparison is exact)."""
    picks = np.array(list(combinations(range(ranks.size), own)), dtype=np.int64).reshape(-1, own)  # [K, own]
    arranged = ranks[picks].sum(axis=1) - own * (own + 1) / 2  # [K] U of each arrangement
    return float(np.count_nonzero(arranged >= statistic) / arranged.size)


def _normal_tail(statistic: float, own: int, rest: int, tie_sizes: np.ndarray) -> float:
    """SciPy's normal approximation of P(U >= statistic) under guessing, corrected for ties and for
    continuity: the same arithmetic, and the normal tail through the error function as SciPy's `ndtr`
    computes it (agreeing with SciPy to 1e-13, relative, in the tests)."""
    n = own + rest
    tie_term = float(np.sum(tie_sizes.astype(float) ** 3 - tie_sizes))
    spread = math.sqrt(own * rest / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    numerator = statistic - own * rest / 2 - 0.5
    if spread == 0:  # every image tied: NumPy's division, as SciPy's (an infinite z, or NaN for 0 / 0)
        z = math.copysign(math.inf, numerator) if numerator else math.nan
    else:
        z = numerator / spread
    return min(max(_normal_cdf(-z), 0.0), 1.0)


def _normal_cdf(a: float) -> float:
    """The standard normal CDF at `a`, by Cephes' `ndtr` recipe (erf near 0, erfc in the tails)."""
    x = a * math.sqrt(0.5)
    if abs(x) < math.sqrt(0.5):
        return 0.5 + 0.5 * math.erf(x)
    tail = 0.5 * math.erfc(abs(x))
    return 1.0 - tail if x > 0 else tail


def exact_tail(own: int, rest: int) -> np.ndarray:
    """[own * rest + 1]: the chance that a guess (every arrangement of the images alike, no ties) gives U at least
    u, for each u. The counts of U are the coefficients of the Gaussian binomial: the product over i = 1..k of
    (1 - q^(m + i)) / (1 - q^i), with k the smaller sample and m the larger."""
    small, large = min(own, rest), max(own, rest)
    counts = np.zeros(small * large + 1)
    counts[0] = 1.0
    for i in range(1, small + 1):
        padded = np.concatenate([counts, np.zeros(-counts.size % i)])
        counts = padded.reshape(-1, i).cumsum(axis=0).reshape(-1)[:counts.size]  # / (1 - q^i)
        counts[large + i:] -= counts[:counts.size - large - i].copy()  # * (1 - q^(large + i))
    tail = np.cumsum(counts[::-1])[::-1]
    return np.clip(tail / tail[0], 0.0, 1.0)


def auroc_needed(own: int, rest: int, level: float) -> float | None:
    """The least one-vs-rest AUROC (percent) that beats chance at `level` with `own` images of a class against `rest`
    images of the others (None: not even 100 does)."""
    pairs = own * rest
    if min(own, rest) <= EXACT_AT_MOST:
        beating = np.flatnonzero(exact_tail(own, rest) <= level + 1e-12)
        return 100.0 * beating[0] / pairs if beating.size else None
    spread = (pairs * (own + rest + 1) / 12) ** 0.5  # SciPy's normal approximation, continuity-corrected
    least = int(np.ceil(pairs / 2 + 0.5 + -NormalDist().inv_cdf(level) * spread - 1e-9))
    return 100.0 * least / pairs if least <= pairs else None


def vs_chance(labels, probabilities, class_names: list[str]) -> list[dict]:
    """`chance_scores` as metrics.json's `test.vs_chance` keeps them: [{"class", "auroc" (%), "p", "p_perfect",
    "auroc_needed" (%, the least AUROC that beats chance at these counts and `class_level`; None: not even 100)}]."""
    labels = np.asarray(labels, dtype=int)
    scores = chance_scores(labels, probabilities)
    level = class_level(scores)
    records = []
    for index, auroc, p, floor in scores:
        own = int((labels == index).sum())
        needed = auroc_needed(own, labels.size - own, level)
        records.append({"class": class_names[index], "auroc": round(float(auroc), 2), "p": round(float(p), 4),
                        "p_perfect": round(float(floor), 4),  # Python's floats: TrainResult.metrics holds them
                        "auroc_needed": None if needed is None else round(float(needed), 2)})
    return records


def class_level(scores: list) -> float:
    """The level each class's p is held to: `LEVEL` shared among the classes tested (`scores`, one a class:
    Bonferroni)."""
    return LEVEL / max(len(scores), 1)


def at_chance(scores: list[dict]) -> bool:
    """Whether `vs_chance` scores were tested (every class has test images) and none beats chance at `class_level`."""
    level = class_level(scores)
    return bool(scores) and all(score["p"] > level for score in scores)


def too_few(scores: list[dict]) -> bool:
    """Whether the test images are too few for any model to beat chance on any class (a record of vip builds before
    `p_perfect` counts as enough)."""
    level = class_level(scores)
    return bool(scores) and all(score.get("p_perfect", 0) > level for score in scores)


def too_few_to_judge(scores: list[dict]) -> bool:
    """Whether the test images are too few to show that even an excellent model (`EXCELLENT_AUROC`) beats chance on
    any class: the AUROC they need is higher, or none is enough (a record of vip builds before `auroc_needed` counts
    as enough)."""
    return bool(scores) and all("auroc_needed" in score and (score["auroc_needed"] is None
                                                              or score["auroc_needed"] > EXCELLENT_AUROC)
                                for score in scores)


def _percent(chance: float) -> str:
    """'8.4%', '17%': a chance in percent, one decimal below 10%."""
    return f"{round(100 * chance, 1 if chance < 0.1 else 0):g}%"


def _bar(scores: list[dict]) -> str:
    """What beating chance takes, in words: 'better than chance takes 5% or less' (the share of each of C classes)."""
    level = class_level(scores)
    if len(scores) == 1:
        return f"better than chance takes {_percent(level)} or less"
    return (f"better than chance takes {_percent(level)} or less for one of the {len(scores)} classes, "
            f"{_percent(LEVEL)} shared among them")


def chance_sentence(scores: list[dict], class_names: list[str], images: int) -> str:
    """What a run at chance (`at_chance(scores)`) does, in words: the warning's and the run report's sentence."""
    if too_few(scores):
        perfect = min(score["p_perfect"] for score in scores)
        return (f"the {images} test images are too few to tell any model from guessing: even one that ranks every "
                f"image right would score that high by chance {_percent(perfect)} of the time ({_bar(scores)})")
    least = min(score["p"] for score in scores)
    if len(class_names) == 2:
        [score] = scores
        opening = (f"the {images} test images are too few to tell this model from guessing" if too_few_to_judge(scores)
                   else f"the {images} test images do not show that the model tells {class_names[0]} from "
                        f"{class_names[1]} better than chance")
        sentence = (f"{opening}: its AUROC of {score['auroc']:.2f} is not clearly above the 50 of guessing (a guess "
                    f"scores at least as high {_percent(least)} of the time; {_bar(scores)})")
    else:
        each = ", ".join(f"{score['class']} {score['auroc']:.2f}" for score in scores)
        opening = (f"the {images} test images are too few to tell this model from guessing" if too_few_to_judge(scores)
                   else f"the {images} test images do not show that the model tells any of its {len(class_names)} "
                        "classes from the others better than chance")
        sentence = (f"{opening} (one-vs-rest AUROC: {each}; a guess scores each at least as high {_percent(least)} of "
                    f"the time or more; {_bar(scores)})")
    return sentence + (_needed_clause(scores) if too_few_to_judge(scores) else "")


def _needed_clause(scores: list[dict]) -> str:
    """', and at these counts only an AUROC of 83.20 or more would be': what a test split too small to judge asks."""
    least = min(score["auroc_needed"] for score in scores if score["auroc_needed"] is not None)
    return f", and at these counts only an AUROC of {least:.2f} or more would be"


def chance_level_warning(scores: list[dict], class_names: list[str], images: int, image_domain: str = "",
                         backbone_id: str = "") -> str:
    """A warning for a run none of whose classes its model tells apart better than chance on test, "" otherwise.

    Args:
        scores: `vs_chance` of the test images.
        class_names: the C class names.
        images: how many test images.
        image_domain: the backbone's `image_domain` (the only images its weights know, where narrow), named in
            the advice.
        backbone_id: the backbone's id, named with `image_domain`.
    """
    if not at_chance(scores):
        return ""
    return f"{chance_sentence(scores, class_names, images)}; {_advice(scores, image_domain, backbone_id)}"


def _advice(scores: list[dict], image_domain: str, backbone_id: str, whose: str = "its") -> str:
    """What to do about a run (or a sweep's rows: `whose` 'their') at chance on test, in words."""
    if too_few(scores) or too_few_to_judge(scores):
        return "give the test split more images of each class to measure the model"
    if image_domain:
        return (f"backbone '{backbone_id}' knows only {image_domain}; for other images pass another backbone "
                "(`vip backbones list`)")
    return (f"{whose} figures say nothing of these images: try more shots, another backbone (`vip backbones list`), "
            "or see what the backbone tells apart with `vip symptoms rank`")


ROWS_DETAIL = ("each row's test_vs_chance in results.json has its classes' AUROC and how often a guess scores as "
               "high")  # where a terminal's reader finds the figures; a report's page shows its own


def chance_rows_warning(rows: list[dict], image_domain: str = "", backbone_id: str = "", shown: int = 3,
                        detail: str = ROWS_DETAIL) -> str:
    """A benchmark's warning for its rows whose test images do not show that their model beats chance (each row's
    `test_vs_chance`, as `chance_level_warning` for a run), by method and shots, at most `shown` of them named:
    "4 of the 10 rows do not show on test that their model beats chance: zeroshot (seeds 1, 2); ..."; "" when every
    row does. A row without `test_vs_chance` (one of an earlier vip, or a test split missing a class) is not
    counted. Where other rows beat chance on the same test images, the backbone sees these classes, and the advice
    says so instead of naming the images the backbone knows. `detail` says in brackets where the figures are ("" for
    none)."""
    measured = [row for row in rows if row.get("test_vs_chance")]
    at = [row for row in measured if at_chance(row["test_vs_chance"])]
    if not at:
        return ""
    cells: dict[tuple[str, str], list[str]] = {}
    for row in at:
        cells.setdefault((row["method"], str(row["shots"])), []).append(str(row["seed"]))
    named = [f"{method}{'' if shots == '0' else f' {shots}-shot'} (seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(seeds)})" for (method, shots), seeds in cells.items()]
    more = f"; and {len(named) - shown} more" if len(named) > shown else ""
    head = (f"none of the {len(measured)} rows shows" if len(at) == len(measured) and len(at) > 1
            else f"{len(at)} of the {len(measured)} {'row' if len(measured) == 1 else 'rows'} "
                 f"{'does' if len(at) == 1 else 'do'} not show")
    whose = "its" if head.startswith("none") or len(at) == 1 else "their"
    beating = len(measured) - len(at)  # rows that beat chance on the same test images: the backbone is not the cause
    others = "the other row beats" if beating == 1 else f"the other {beating} rows beat"
    owners = "this row's" if len(at) == 1 else "these rows'"
    advice = (_advice(at[0]["test_vs_chance"], image_domain, backbone_id, "their") if not beating else
              f"{others} chance on the same test images, so the backbone tells these classes apart: what falls short "
              f"is {owners} method or shots")
    return (f"{head} on test that {whose} model beats chance: {'; '.join(named[:shown])}{more}"
            f"{f' ({detail})' if detail else ''}; {advice}")
