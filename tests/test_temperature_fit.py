"""Temperature scaling finds the NLL's minimum over T within T_BOUNDS: at least as low an NLL as SciPy's bounded
search reaches (SciPy is used here only as an independent reference; vip does not import it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from vipcli.calibration import T_BOUNDS, fit_temperature, log_softmax, negative_log_likelihood


def _nll(logits, labels, temperature: float) -> float:
    return negative_log_likelihood(None, labels, log_softmax(logits, temperature))


def _scipys_temperature(logits, labels) -> float:
    bounds = (math.log(T_BOUNDS[0]), math.log(T_BOUNDS[1]))
    found = minimize_scalar(lambda log_t: _nll(logits, labels, math.exp(log_t)), bounds=bounds, method="bounded",
                            options={"xatol": 1e-10})
    return math.exp(float(found.x))


@pytest.mark.parametrize("seed", range(24))
def test_the_fitted_temperature_is_the_nll_minimum(seed):
    generator = np.random.default_rng(seed)
    images, classes = int(generator.integers(1, 80)), int(generator.integers(2, 6))
    logits = generator.normal(scale=[0.01, 1.0, 30.0][seed % 3], size=(images, classes))  # [N, C]
    labels = generator.integers(0, classes, images)  # [N]

    fitted, reference = fit_temperature(logits, labels), _scipys_temperature(logits, labels)

    assert T_BOUNDS[0] <= fitted <= T_BOUNDS[1]
    assert _nll(logits, labels, fitted) <= _nll(logits, labels, reference) + 1e-12
    assert math.log(fitted) == pytest.approx(math.log(reference), abs=1e-4)


def test_a_neighbouring_temperature_is_never_better():
    generator = np.random.default_rng(7)
    logits = generator.normal(scale=3.0, size=(200, 3))  # [N, C]
    labels = generator.integers(0, 3, 200)  # [N]
    fitted = fit_temperature(logits, labels)
    for step in (1e-3, 1e-6):
        assert _nll(logits, labels, fitted) <= _nll(logits, labels, fitted * (1 + step))
        assert _nll(logits, labels, fitted) <= _nll(logits, labels, fitted * (1 - step))


def test_the_bounds_where_the_slope_keeps_one_sign():
    sure = np.array([[5.0, -5.0], [-5.0, 5.0]])  # every image right: the NLL falls as T -> 0
    assert fit_temperature(sure, np.array([0, 1])) == pytest.approx(T_BOUNDS[0])
    flat = np.zeros((4, 3))  # every logit equal: no information, the NLL is the same at any T
    assert T_BOUNDS[0] <= fit_temperature(flat, np.array([0, 1, 2, 0])) <= T_BOUNDS[1]
    assert fit_temperature(np.empty((0, 2)), np.array([], dtype=int)) == 1.0


def test_a_class_an_image_cannot_be_changes_nothing(recwarn):
    """A -inf logit (probability 0 at any T) adds nothing to the NLL's slope: not a NaN that sends T to a bound."""
    logits = np.array([[2.0, 0.5, -np.inf], [0.1, 1.0, 0.3], [0.3, 0.2, 0.9], [1.5, 1.2, -np.inf]])  # [N, C]
    labels = np.array([0, 1, 1, 0])
    finite = np.where(np.isinf(logits), -1e300, logits)  # probability 0 at every T in the bounds, as -inf
    assert fit_temperature(logits, labels) == pytest.approx(fit_temperature(finite, labels), rel=1e-12)
    assert T_BOUNDS[0] < fit_temperature(logits, labels) < T_BOUNDS[1]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
