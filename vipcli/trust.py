"""What a run stores so its outputs can be trusted: a temperature and conformal scores (#11).

`calibrate_run` is the one call training makes after fitting; `read_calibration` is the one call
prediction makes after loading a run. Both sides share `RunCalibration`, stored in the run's
metadata under the key `calibration` (run.yaml and the safetensors header).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from vipcli.calibration import T_BOUNDS, calibration_block, fit_temperature, softmax
from vipcli.conformal import SCORE, conformal_block, lac_scores, stored_scores, threshold
from vipcli.errors import VipError

HELD_OUT = "val"  # the split temperature and conformal scores are fitted on
USUAL_COVERAGE = 0.9  # the coverage asked most often; fewer held-out images than it needs are warned of
NLL_WORSE = 1.02  # a test NLL after temperature scaling above this times the NLL before it is reported


@dataclass(frozen=True)
class RunCalibration:
    """A run's calibration: the temperature and the sorted held-out conformal scores."""

    temperature: float  # logits are divided by this before the softmax
    scores: tuple[float, ...]  # sorted LAC scores of the held-out images (calibrated probabilities)
    held_out: str = HELD_OUT  # which split they come from
    score: str = SCORE  # the nonconformity score

    def probabilities(self, logits) -> np.ndarray:
        """Calibrated probabilities [N, C] of logits [N, C]."""
        return softmax(logits, self.temperature)

    def threshold(self, coverage: float) -> float:
        """The LAC threshold for `coverage` (a VipError when the held-out images are too few)."""
        return threshold(self.scores, coverage)

    def record(self) -> dict:
        """The metadata entry written into the run."""
        return {"temperature": self.temperature, "score": self.score, "held_out": self.held_out,
                "n_held_out": len(self.scores), "scores": list(self.scores)}


@dataclass
class Calibrated:
    """What `calibrate_run` hands back to training."""

    calibration: RunCalibration  # stored in the run's metadata as calibration.record()
    metrics: dict  # {"calibration": ..., "conformal": ...} blocks for metrics.json
    warnings: list[str]  # what a user should know about these figures (print them)


def calibrate_run(val_logits, val_labels, test_logits, test_labels) -> Calibrated:
    """Fit the temperature and conformal scores on held-out logits; score both on test.

    Args:
        val_logits: [N, C] logits of the held-out (validation) images; val_labels: [N].
        test_logits: [M, C] logits of the test images; test_labels: [M].
    """
    val_logits, test_logits = _numpy(val_logits), _numpy(test_logits)
    val_labels, test_labels = _numpy(val_labels).astype(int), _numpy(test_labels).astype(int)
    if not (np.isfinite(val_logits).all() and np.isfinite(test_logits).all()):
        raise VipError("the trained model scores images as nan or infinity (training diverged)",
                       "lower the learning rate (--lr, or the method's -o lr=...)")
    temperature = round(fit_temperature(val_logits, val_labels), 6)
    scores = tuple(stored_scores(lac_scores(softmax(val_logits, temperature), val_labels)))
    calibration = RunCalibration(temperature, scores)
    test_probabilities = softmax(test_logits, temperature) if len(test_labels) else np.empty((0, 0))
    metrics = {
        "calibration": calibration_block(calibration.temperature, HELD_OUT, len(val_labels), test_logits, test_labels),
        "conformal": conformal_block(scores, HELD_OUT, test_probabilities, test_labels),
    }
    return Calibrated(calibration, metrics, _warnings(val_logits, val_labels, temperature)
                      + _test_warnings(metrics, len(test_labels)))


def _test_warnings(metrics: dict, n_test: int) -> list[str]:
    """Say when the test images show that the validation images did not calibrate for them."""
    from vipcli.conformal import coverage_shortfall

    test = metrics["calibration"]["test"]
    found = []
    if n_test and scaling_hurt_nll(test):
        found.append(f"temperature scaling (T={metrics['calibration']['temperature']:.3g}, fitted on the validation "
                     f"images) made the test NLL worse ({test['before']['nll']:.3f} -> {test['after']['nll']:.3f}): "
                     f"the test images are not drawn like the validation images")
    rows = sorted(metrics["conformal"]["test"], key=lambda row: row["coverage"] != 0.9)  # 0.9 first: the usual ask
    shortfalls = [m for m in (coverage_shortfall(row, n_test) for row in rows) if m]
    if shortfalls:
        found.append(shortfalls[0] + "; give a val/ split drawn like the images you will predict")
    return found


def scaling_hurt_nll(test: dict) -> bool:
    """Whether temperature scaling made the test NLL clearly worse (more than NLL_WORSE times the NLL before it);
    `test`: metrics.json's calibration test block ({"before": {"nll": ...}, "after": {...}}); False without test
    images (the NLLs are None)."""
    before, after = test["before"]["nll"], test["after"]["nll"]
    return before is not None and after is not None and after > NLL_WORSE * before


def _warnings(val_logits: np.ndarray, val_labels: np.ndarray, temperature: float) -> list[str]:
    """Say when the held-out images cannot tell how often the model is wrong."""
    return _too_few(len(val_labels), temperature) + _uninformative(val_logits, val_labels, temperature)


def _too_few(n: int, temperature: float) -> list[str]:
    """Say when the held-out images are too few for the usual prediction sets (coverage USUAL_COVERAGE)."""
    from vipcli.conformal import askable_coverage

    if not n or askable_coverage(n) >= USUAL_COVERAGE:
        return []
    need = math.ceil(USUAL_COVERAGE / (1 - USUAL_COVERAGE) - 1e-9)  # n / (n + 1) >= coverage
    return [f"only {n} validation {'image' if n == 1 else 'images'}: the temperature (T={temperature:.3g}) fitted on "
            f"{'it' if n == 1 else 'them'} says little about how sure the model should be, and prediction sets can "
            f"promise at most --coverage {askable_coverage(n):g} ({USUAL_COVERAGE:g} needs {need}) (add validation images)"]


def _uninformative(val_logits: np.ndarray, val_labels: np.ndarray, temperature: float) -> list[str]:
    """Say when every held-out image is right, or when the fitted temperature sits at one of its bounds."""
    n = len(val_labels)
    if n and (val_logits.argmax(axis=1) == val_labels).all():
        every = f"all {n} validation images are" if n > 1 else "the one validation image is"
        return [f"{every} classified correctly, so temperature scaling (T={temperature:.3g}) "
                f"makes probabilities close to 0 or 1; calibration needs held-out images the model gets wrong "
                f"(add validation images)"]
    if temperature >= 0.99 * T_BOUNDS[1]:
        return [f"temperature scaling reached its upper bound (T={temperature:.3g}): on the {n} validation images "
                f"the model's scores carry almost no information about the class, so its calibrated "
                f"probabilities are close to uniform and its prediction sets hold most classes"]
    if temperature <= 1.01 * T_BOUNDS[0]:
        return [f"temperature scaling reached its lower bound (T={temperature:.3g}): calibrated probabilities "
                f"are close to 0 or 1; check the validation images"]
    return []


def read_calibration(metadata: dict) -> RunCalibration | None:
    """The calibration stored in a run's metadata, or None for a run written before vip stored one."""
    record = metadata.get("calibration")
    if record is None:
        return None
    if isinstance(record, str):  # the safetensors header keeps structured values as JSON text
        record = json.loads(record)
    return RunCalibration(float(record["temperature"]), tuple(float(s) for s in record["scores"]),
                          record.get("held_out", HELD_OUT), record.get("score", SCORE))


def _numpy(values) -> np.ndarray:
    """A torch tensor or array-like as a float64/int numpy array on the CPU."""
    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy() if values.is_floating_point() else values.cpu().numpy()
    return np.asarray(values)


# --- prediction-time helpers (one call each from vipcli.predict) -----------------------------------


def calibrated_softmax(logits, calibration: RunCalibration | None):
    """softmax(logits / T) over the last axis of a torch tensor, in float64; T = 1 for an uncalibrated run.

    float64 as `calibrate_run` computes the held-out scores and metrics.json's test sets: in float32 a
    probability within 6e-8 of 1 rounds to 1, so at a threshold of 0 (every validation image right)
    `vip predict` and the report would put other classes in the sets than metrics.json counted.
    """
    temperature = calibration.temperature if calibration is not None else 1.0
    return (logits.double() / temperature).softmax(dim=-1)


def set_threshold(calibration: RunCalibration | None, coverage: float | None, run_dir) -> float | None:
    """The LAC threshold for `coverage` (None without one); refuses runs that stored no calibration."""
    from vipcli.conformal import check_coverage
    from vipcli.errors import VipError

    if coverage is None:
        return None
    check_coverage(coverage)
    if calibration is None:
        raise VipError(f"{run_dir} stores no calibration (it was trained by an earlier vip), so it cannot give "
                       f"prediction sets", "retrain it with this vip, or drop --coverage")
    return calibration.threshold(coverage)


def prediction_set(probabilities, class_names: list[str], cutoff: float | None) -> list[str] | None:
    """The classes whose LAC score 1 - p is within `cutoff` (None when no set was asked for)."""
    if cutoff is None:
        return None
    return [name for name, p in zip(class_names, probabilities.tolist()) if 1.0 - p <= cutoff]
