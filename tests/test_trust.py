"""Calibrated probabilities and conformal prediction sets through `vip train` and `vip predict`."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import yaml

from conftest import error_lines
from lesion_runs import make_lesions, strip_calibration, train_toy


@pytest.fixture(scope="module")
def lesion_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    data = make_lesions(root / "lesions")
    return data, train_toy(data, root / "run", root / "cache")


def _predict(cli, run, paths, *extra):
    code, out, err = cli("predict", *paths, "--model", run, "--json", "--workers", "0", "--device", "cpu", *extra)
    assert code == 0, err
    return json.loads(out), err


def _test_images(data):
    return sorted((data / "test").rglob("*.png"))


def test_train_stores_temperature_and_scores_and_reports_both_blocks(lesion_run):
    data, run = lesion_run
    stored = yaml.safe_load((run / "run.yaml").read_text())["calibration"]
    assert stored["held_out"] == "val" and stored["score"] == "LAC" and stored["n_held_out"] == 24
    assert stored["scores"] == sorted(stored["scores"]) and len(stored["scores"]) == 24
    assert stored["temperature"] > 0
    metrics = json.loads((run / "metrics.json").read_text())
    block = metrics["calibration"]
    assert block["temperature"] == pytest.approx(stored["temperature"], abs=1e-4) and block["ece_bins"] == 15
    assert set(block["test"]["before"]) == set(block["test"]["after"]) == {"ece", "nll", "brier"}
    assert block["test"]["n"] == 30 and sum(b["count"] for b in block["reliability"]["after"]) == 30
    rows = {row["coverage"]: row for row in metrics["conformal"]["test"]}
    assert set(rows) == {0.8, 0.9, 0.95}
    assert all("error" not in row for row in rows.values())  # 24 images can promise up to 24/25 = 0.96
    assert rows[0.8]["mean_set_size"] <= rows[0.9]["mean_set_size"]


def test_prediction_sets_match_the_reported_test_coverage(cli, lesion_run):
    """What `vip predict --coverage` returns on the test images is what metrics.json measured."""
    data, run = lesion_run
    metrics = json.loads((run / "metrics.json").read_text())
    for row in metrics["conformal"]["test"]:
        document, _ = _predict(cli, run, [data / "test"], "--coverage", row["coverage"])
        assert document["calibrated"] is True and document["coverage"] == row["coverage"]
        sets = [(p["path"].split("/")[-2], p["prediction_set"]) for p in document["predictions"]]
        assert all(isinstance(s, list) for _, s in sets)
        assert sum(truth in s for truth, s in sets) / len(sets) == pytest.approx(row["empirical_coverage"], abs=1e-4)
        assert sum(len(s) for _, s in sets) / len(sets) == pytest.approx(row["mean_set_size"], abs=1e-4)


def test_probabilities_use_the_stored_temperature(cli, lesion_run, tmp_path):
    data, run = lesion_run
    temperature = yaml.safe_load((run / "run.yaml").read_text())["calibration"]["temperature"]
    old = strip_calibration(shutil.copytree(run, tmp_path / "old"))
    images = _test_images(data)[:6]
    calibrated, _ = _predict(cli, run, images)
    raw, warning = _predict(cli, old, images)
    assert calibrated["temperature"] == temperature and raw["calibrated"] is False and raw["temperature"] is None
    assert "uncalibrated" in warning
    for cal, unc in zip(calibrated["predictions"], raw["predictions"]):
        assert cal["label"] == unc["label"]  # temperature never changes the winner
        p, q = cal["probabilities"]["melanoma"], unc["probabilities"]["melanoma"]
        if 0.01 < q < 0.99:  # two classes: logit(p_calibrated) = logit(p_raw) / T
            assert math.log(p / (1 - p)) == pytest.approx(math.log(q / (1 - q)) / temperature, abs=0.01)
        assert cal["prediction_set"] is None  # no --coverage, no set


def test_table_shows_the_prediction_set(cli, lesion_run):
    data, run = lesion_run
    code, out, err = cli("predict", *_test_images(data)[:2], "--model", run, "--coverage", "0.8", "--workers", "0")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("set {" in line for line in lines)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1"])
def test_coverage_outside_zero_one_is_a_usage_error(cli, lesion_run, value):
    data, run = lesion_run
    code, _, err = cli("predict", _test_images(data)[0], "--model", run, "--coverage", value)
    assert code == 2 and len(error_lines(err)) == 1 and "outside (0, 1)" in err, err


def test_too_few_held_out_images_for_the_coverage_say_so(cli, lesion_run):
    data, run = lesion_run
    code, out, err = cli("predict", _test_images(data)[0], "--model", run, "--coverage", "0.99", "--workers", "0")
    assert code == 1 and out == "" and len(error_lines(err)) == 1, err
    assert "coverage 0.99 needs at least 99 held-out (validation) images; this run has 24" in err
    assert "--coverage 0.96 or less" in err  # 24 / 25, and that one works:
    assert cli("predict", _test_images(data)[0], "--model", run, "--coverage", "0.96", "--workers", "0")[0] == 0


def test_a_run_of_an_earlier_vip_predicts_but_gives_no_sets(cli, lesion_run, tmp_path):
    data, run = lesion_run
    old = strip_calibration(shutil.copytree(run, tmp_path / "old"))
    code, out, err = cli("predict", _test_images(data)[0], "--model", old, "--workers", "0")
    assert code == 0 and "uncalibrated" in err and "melanoma" in out, err
    code, out, err = cli("predict", _test_images(data)[0], "--model", old, "--coverage", "0.9", "--workers", "0")
    assert code == 1 and len(error_lines(err)) == 1 and "stores no calibration" in err and "retrain" in err, err
