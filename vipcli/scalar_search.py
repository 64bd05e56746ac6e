"""The minimum of a function of one variable within bounds, without SciPy.

`bounded_minimum` is SciPy's `minimize_scalar(method="bounded")` (Brent's method: golden-section steps and
parabolic ones, `scipy.optimize._optimize._minimize_scalar_bounded`, BSD licence) step for step in Python
floats, so it evaluates the function at the same points and returns the same float. vip's temperature scaling
used SciPy's; importing `scipy.optimize` cost every `vip train` about 0.7-1.8 s on a 2-core CPU.
"""

from __future__ import annotations

import math
from typing import Callable

SQRT_EPS = math.sqrt(2.2e-16)
GOLDEN_MEAN = 0.5 * (3.0 - math.sqrt(5.0))


def _sign(value: float) -> float:
    """NumPy's `sign(value) + (value == 0)`: 1.0 for 0 and positive values, -1.0 for negative ones."""
    return -1.0 if value < 0 else 1.0


def bounded_minimum(function: Callable[[float], float], low: float, high: float, xatol: float = 1e-5,
                    max_evaluations: int = 500) -> float:
    """The x in [low, high] where `function` is least, to within `xatol` (for a unimodal function: its minimum),
    found as SciPy's bounded Brent search finds it (the same x, to the last bit).

    Args:
        function: f(x) -> float, finite on [low, high].
        low, high: finite bounds, low <= high.
        xatol: the absolute tolerance on x.
        max_evaluations: at most this many calls of `function` (SciPy's `maxiter`).
    """
    a, b = low, high
    fulc = a + GOLDEN_MEAN * (b - a)
    nfc = xf = fulc
    rat = e = 0.0
    fx = function(xf)
    evaluations = 1
    ffulc = fnfc = fx
    xm = 0.5 * (a + b)
    tol1 = SQRT_EPS * abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    while abs(xf - xm) > (tol2 - 0.5 * (b - a)):
        golden = True
        if abs(e) > tol1:  # try a parabola through the three best points
            golden = False
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            r = e
            e = rat
            if abs(p) < abs(0.5 * q * r) and p > q * (a - xf) and p < q * (b - xf):
                rat = (p + 0.0) / q
                x = xf + rat
                if (x - a) < tol2 or (b - x) < tol2:
                    rat = tol1 * _sign(xm - xf)
            else:
                golden = True
        if golden:
            e = (a - xf) if xf >= xm else (b - xf)
            rat = GOLDEN_MEAN * e
        x = xf + _sign(rat) * max(abs(rat), tol1)
        fu = function(x)
        evaluations += 1
        if fu <= fx:
            if x >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc = nfc, fnfc
            nfc, fnfc = xf, fx
            xf, fx = x, fu
        else:
            if x < xf:
                a = x
            else:
                b = x
            if fu <= fnfc or nfc == xf:
                fulc, ffulc = nfc, fnfc
                nfc, fnfc = x, fu
            elif fu <= ffulc or fulc == xf or fulc == nfc:
                fulc, ffulc = x, fu
        xm = 0.5 * (a + b)
        tol1 = SQRT_EPS * abs(xf) + xatol / 3.0
        tol2 = 2.0 * tol1
        if evaluations >= max_evaluations:
            break
    return xf
