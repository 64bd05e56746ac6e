"""`bounded_minimum` is SciPy's bounded Brent search step for step: temperature scaling finds the same T without
importing `scipy.optimize` (on many random functions and held-out sets, the same float, not merely a close one)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from vipcli.calibration import T_BOUNDS, log_softmax, negative_log_likelihood, fit_temperature
from vipcli.scalar_search import bounded_minimum


def _scipys(function, low: float, high: float) -> float:
    return float(minimize_scalar(function, bounds=(low, high), method="bounded", options={"xatol": 1e-5}).x)


def test_the_same_minimum_as_scipy_for_many_functions():
    generator = np.random.default_rng(0)
    for case in range(200):
        low = float(generator.uniform(-10, 0))
        high = low + float(generator.uniform(1e-3, 20))
        centre = float(generator.uniform(low - 5, high + 5))  # inside, or beyond either bound
        power = [2, 4, 1][case % 3]
        function = lambda x, c=centre, k=power: abs(x - c) ** k + math.sin(3 * x) * (case % 2) * 0.1  # noqa: E731
        assert bounded_minimum(function, low, high) == _scipys(function, low, high), case


@pytest.mark.parametrize("seed", range(12))
def test_temperature_scaling_finds_scipys_temperature(seed):
    generator = np.random.default_rng(seed)
    images, classes = int(generator.integers(1, 80)), int(generator.integers(2, 6))
    logits = generator.normal(scale=[0.01, 1.0, 30.0][seed % 3], size=(images, classes))  # [N, C]
    labels = generator.integers(0, classes, images)  # [N]

    def nll(log_t: float) -> float:
        return negative_log_likelihood(None, labels, log_softmax(logits, math.exp(log_t)))

    expected = math.exp(_scipys(nll, math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1])))
    assert fit_temperature(logits, labels) == expected
