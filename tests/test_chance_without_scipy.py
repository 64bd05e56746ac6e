"""`vipcli.chance` computes SciPy's Mann-Whitney test itself, so that `vip train` does not import `scipy.stats`: the
same U and the same p as `scipy.stats.mannwhitneyu` on many random samples (exact distributions and counts over
every arrangement to the last bit, the normal approximation to 1e-13 relative), and the same AUROC needed."""

from __future__ import annotations

import math
from math import comb

import numpy as np
import pytest
from scipy.stats import PermutationMethod, mannwhitneyu, norm

from conftest import modules_left_loaded
from vipcli.chance import EXACT_ARRANGEMENTS, EXACT_AT_MOST, auroc_needed, exact_tail, one_sided_test


def _scipys(own, rest) -> tuple[float, float]:
    """`one_sided_test` as it was written with SciPy."""
    values = np.concatenate([own, rest])
    tied = np.unique(values).size < values.size
    if not tied and min(own.size, rest.size) <= EXACT_AT_MOST:
        statistic = float(mannwhitneyu(own, rest, alternative="greater", method="asymptotic").statistic)
        return statistic, exact_tail(own.size, rest.size)[round(statistic)]
    method = (PermutationMethod(n_resamples=EXACT_ARRANGEMENTS)
              if tied and comb(values.size, own.size) <= EXACT_ARRANGEMENTS else "asymptotic")
    tested = mannwhitneyu(own, rest, alternative="greater", method=method)
    return float(tested.statistic), float(tested.pvalue)


@pytest.mark.parametrize("levels", [None, 2, 5])  # continuous scores, or scores with many ties
def test_u_and_p_are_scipys(levels):
    generator = np.random.default_rng(0 if levels is None else levels)
    exact = approximated = 0
    for case in range(80):
        own_size, rest_size = int(generator.integers(2, 14)), int(generator.integers(2, 40))  # SciPy's permutation test
        # refuses a sample of one (below)
        own = generator.random(own_size) + generator.uniform(-0.3, 0.5)  # shifted: small p too
        rest = generator.random(rest_size)
        if levels:
            own, rest = np.floor(own * levels) / levels, np.floor(rest * levels) / levels
        statistic, p = one_sided_test(own, rest)
        expected_statistic, expected_p = _scipys(own, rest)
        assert statistic == expected_statistic
        tied = np.unique(np.concatenate([own, rest])).size < own_size + rest_size
        if (not tied and min(own_size, rest_size) <= EXACT_AT_MOST) or (
                tied and comb(own_size + rest_size, own_size) <= EXACT_ARRANGEMENTS):
            assert p == expected_p, case  # exact distributions: the same float
            exact += 1
        else:
            assert p == pytest.approx(expected_p, rel=1e-13, abs=1e-300), case
            approximated += 1
    assert exact and approximated  # both ways were checked


def test_every_image_tied_is_scipys_too():
    for own, rest in [(10, 10), (3, 40), (12, 30)]:  # too many arrangements to count: the normal approximation
        values = np.full(own + rest, 0.5)
        assert one_sided_test(values[:own], values[own:]) == _scipys(values[:own], values[own:])


def test_one_image_of_a_class_with_tied_scores_is_counted_over_its_arrangements():
    """SciPy's permutation test raised ValueError for a sample of one image; the count is plain: the image's U
    (1.5 here) is reached by 2 of its 3 places among the pooled images."""
    assert one_sided_test(np.array([0.5]), np.array([0.5, 0.2])) == (1.5, 2 / 3)


def test_the_auroc_needed_is_scipys():
    for own, rest in [(9, 9), (10, 200), (40, 60), (300, 700), (12, 5000)]:
        for level in (0.05, 0.025, 0.05 / 3, 0.01):
            pairs = own * rest
            spread = (pairs * (own + rest + 1) / 12) ** 0.5
            least = int(np.ceil(pairs / 2 + 0.5 + norm.isf(level) * spread - 1e-9))
            expected = 100.0 * least / pairs if least <= pairs else None
            assert auroc_needed(own, rest, level) == expected
            assert math.isclose(-__import__("statistics").NormalDist().inv_cdf(level), norm.isf(level), rel_tol=1e-14)


def test_testing_against_chance_imports_no_scipy():
    script = ("import numpy as np\n"
              "from vipcli.chance import vs_chance\n"
              "rng = np.random.default_rng(0)\n"
              "vs_chance(np.repeat([0, 1, 2], 20), rng.dirichlet(np.ones(3), size=60), ['a', 'b', 'c'])\n"
              "vs_chance(np.array([0, 0, 0, 1, 1, 1]), np.array([[.5, .5]] * 3 + [[.2, .8]] * 3), ['a', 'b'])")
    assert modules_left_loaded(script, ("scipy",)) == []
