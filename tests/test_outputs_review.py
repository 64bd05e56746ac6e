"""What a first-time user of `vip predict` and `vip report` relies on, found by following README literally.

Probabilities as printed add up, explanations add up to the logit they explain, `--out` never mixes
two models or silently drops records, every mistake is one line with a fix, and reports fit a phone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from browser import find_browser, render, unreadable_figures
from conftest import error_lines
from lesion_runs import make_lesions, train_toy
from vipcli.report.html import READABLE_TEXT_PX

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no chromium-family browser installed "
                                   "(apt-get install chromium)")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A lesion world, a ViP run and a second run with the same classes (zero-shot: no training)."""
    root = tmp_path_factory.mktemp("outputs-review")
    data = make_lesions(root / "data", {"train": 10, "val": 8, "test": 12})
    return data, train_toy(data, root / "vip", root / "cache"), train_toy(data, root / "zs", root / "cache", "zeroshot")


PRINTED = re.compile(r"\((\w+) (\d\.\d{3})  (\w+) (\d\.\d{3})\)")


def test_printed_probabilities_of_two_classes_add_up_to_one(cli, two_runs):
    data, run, _ = two_runs
    code, out, err = cli("predict", data / "test", "--model", run, "--workers", "0")
    assert code == 0, err
    pairs = [PRINTED.search(line) for line in out.splitlines()]
    assert len(pairs) == 24 and all(pairs)
    sums = {round(float(m.group(2)) + float(m.group(4)), 6) for m in pairs}
    assert sums == {1.0}, "each probability is rounded once, from full precision"


def test_a_probability_on_a_rounding_edge_is_printed_as_rounded_once(cli, two_runs, monkeypatch):
    import torch

    from vipcli import trust

    data, run, _ = two_runs
    edge = lambda logits, calibration: torch.tensor([[0.38946, 0.61054]]).expand(len(logits), 2)  # noqa: E731
    monkeypatch.setattr(trust, "calibrated_softmax", edge)
    code, out, _ = cli("predict", next((data / "test" / "nevus").iterdir()), "--model", run, "--workers", "0")
    assert code == 0 and "(melanoma 0.389  nevus 0.611)" in out  # 0.3895 then 0.390 would add up to 1.001


def test_json_probabilities_are_rounded_once(cli, two_runs):
    data, run, _ = two_runs
    code, out, _ = cli("predict", data / "test", "--model", run, "--workers", "0", "--json", "--explain")
    assert code == 0
    for prediction in json.loads(out)["predictions"]:
        values = list(prediction["probabilities"].values())
        assert round(sum(values), 6) == 1.0 and prediction["probability"] == max(values)
        assert all(len(str(v).split(".")[-1]) <= 4 for v in values)
        for group in prediction["explanation"]:
            assert all(isinstance(e["contribution"], float) for e in group["symptoms"])


def _logits_and_explanation(run: Path, image: Path):
    import torch

    from vipcli.features import encode_images
    from vipcli.predict import load_predictor

    predictor = load_predictor(run)
    feature = encode_images(predictor.backbone, [image], 0, None, 8, 0).eval[0]  # [D]
    with torch.no_grad():
        logits = predictor.method(feature[None])[0]  # [C]
    return predictor.method, feature, logits, predictor.method.explain(feature)


def test_vip_contributions_add_up_to_the_class_logit(two_runs):
    import torch
    import torch.nn.functional as F

    data, run, _ = two_runs
    method, feature, logits, explanation = _logits_and_explanation(run, next((data / "test" / "nevus").iterdir()))
    _, features, weights = method._inference
    padded, _ = method.bank.layout.pad(features)  # [C, K, D]
    with torch.no_grad():
        merged = method.merge.token + torch.einsum("ck,ckd->cd", weights, padded)  # [C, D]
        token = method.merge.token @ F.normalize(feature, dim=-1)  # [C]
        token_term = method.logit_scale.exp() * token / merged.norm(dim=-1)  # [C] the merge token's own term
    for c, group in enumerate(explanation):
        total = sum(e["contribution"] for e in group["symptoms"]) + float(token_term[c])
        assert total == pytest.approx(float(logits[c]), abs=1e-4)


def test_contributions_of_a_method_that_averages_are_the_whole_logit(tmp_path):
    data = make_lesions(tmp_path / "data", {"train": 6, "val": 4, "test": 2})
    run = train_toy(data, tmp_path / "run", tmp_path / "cache", "symptom-zeroshot")
    _, _, logits, explanation = _logits_and_explanation(run, next((data / "test" / "melanoma").iterdir()))
    for c, group in enumerate(explanation):
        assert sum(e["contribution"] for e in group["symptoms"]) == pytest.approx(float(logits[c]), abs=1e-4)


def test_gallery_ranks_symptoms_by_their_contribution():
    from vipcli.predict import Prediction
    from vipcli.report.gallery import top_symptoms

    symptoms = [{"symptom": "short feature", "similarity": 0.30, "weight": 0.5, "contribution": 1.0},
                {"symptom": "long feature", "similarity": 0.25, "weight": 0.5, "contribution": 2.0}]
    prediction = Prediction("x.png", "a", 0.9, {"a": 0.9, "b": 0.1}, [{"class": "a", "symptoms": symptoms}])
    assert [e["symptom"] for e in top_symptoms(prediction)] == ["long feature", "short feature"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_out_of_another_model_with_the_same_classes_is_refused(cli, two_runs, tmp_path, suffix, monkeypatch):
    """Refused before the backbone loads (it was refused after: seconds to minutes for a large one)."""
    import vipcli.registry

    data, run, other = two_runs
    out = tmp_path / f"p{suffix}"
    assert cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")[0] == 0
    before = out.read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(vipcli.registry, "load_backbone", lambda *a, **k: pytest.fail("the backbone was loaded"))
        code, _, err = cli("predict", data / "test", "--model", other, "--out", out, "--workers", "0")
    assert code == 1 and error_lines(err) == [error_lines(err)[0]]
    assert "holds predictions of another model" in err and "--force" in err
    assert out.read_bytes() == before
    assert cli("predict", data / "test", "--model", other, "--out", out, "--workers", "0", "--force")[0] == 0


def test_out_begun_for_other_images_is_refused_not_cut(cli, two_runs, tmp_path):
    data, run, _ = two_runs
    out = tmp_path / "p.jsonl"
    assert cli("predict", data / "test", "--model", run, "--out", out, "--workers", "0")[0] == 0
    before = out.read_bytes()
    code, _, err = cli("predict", data / "test" / "nevus", "--model", run, "--out", out, "--workers", "0")
    assert code == 1 and "holds records of 12 images that are not in this input" in err and "--force" in err
    assert out.read_bytes() == before, "the other images' records are kept"
    records = [json.loads(line) for line in before.decode().splitlines()]
    assert {r["model"] for r in records} == {json.loads(before.decode().splitlines()[0])["model"]}
    assert re.fullmatch(r"[0-9a-f]{12}", records[0]["model"])


def test_folder_mistakes_are_one_line_with_a_fix(cli, two_runs, tmp_path):
    _, run, _ = two_runs
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    code, _, err = cli("predict", tmp_path / "empty", "--model", run)
    assert code == 1 and len(error_lines(err)) == 1
    assert "has no image files (in it or in its subfolders) (pass a folder holding .jpg" in err
    code, _, err = cli("predict", tmp_path / "missing.png", "--model", run)
    assert code == 1 and "no such file or folder" in err and "(check the path" in err


def test_prediction_report_has_no_empty_header_row(cli, two_runs, tmp_path):
    data, run, _ = two_runs
    page = tmp_path / "r.html"
    assert cli("predict", data / "test" / "nevus", "--model", run, "--report", page, "--workers", "0")[0] == 0
    assert "<th></th>" not in page.read_text()


def test_a_prediction_report_says_where_to_open_it_as_vip_report_does(cli, two_runs, tmp_path):
    """`vip report` ends with "open it in a browser (file:///...)"; `vip predict --report` said only "report written
    to nevus.html", leaving the user to work out the address."""
    data, run, _ = two_runs
    page = tmp_path / "nevus.html"
    code, _, err = cli("predict", data / "test" / "nevus", "--model", run, "--report", page, "--workers", "0")
    assert code == 0 and f"report written to {page}; open it in a browser ({page.resolve().as_uri()})" in err, err


@needs_browser
def test_reports_fit_a_phone_screen(cli, two_runs, tmp_path):
    data, run, _ = two_runs
    pages = [tmp_path / "run.html", tmp_path / "predicted.html"]
    assert cli("report", run, "--out", pages[0], "--workers", "0", "--device", "cpu", "--gallery", "4")[0] == 0
    assert cli("predict", data / "test", "--model", run, "--coverage", "0.9", "--report", pages[1],
               "--workers", "0")[0] == 0
    for page in pages:
        result = render(page, tmp_path / f"phone-{page.stem}", width=390)
        assert result["width"] <= result["viewport"], f"{page.name} is wider than a phone: tables must scroll inside"
        # a figure is scaled towards the phone's width, but no further than its text stays readable; it is whole
        # in a box that scrolls sideways with a shadow at the edge (the page scrolled, its legend off-screen)
        cut = unreadable_figures(result, READABLE_TEXT_PX)
        assert not cut, f"{page.name}: figures not whole and readable on a phone's screen: {cut}"
        # a table of up to 5 columns fits ("88.60 (101/114)" ran past the screen's edge); a wider one may scroll
        # inside itself, with a shadow at the edge that has more beyond it (there was no sign of more)
        hidden = [(t["caption"], t["overflow"]) for t in result["tables"] if t["overflow"] > 1
                  and (t["columns"] <= 5 or not t["cue"])]
        assert not hidden, f"{page.name}: tables that hide columns on a phone: {hidden}"


def _logits(rng, n: int, flip: float):
    """Two-class logits that say the class fairly well; `flip` of the labels are then swapped."""
    import numpy as np

    labels = rng.integers(0, 2, n)
    logits = np.stack([2.0 * (labels == 0), 2.0 * (labels == 1)], axis=1) + rng.normal(0, 1.2, (n, 2))  # [N, 2]
    flipped = rng.random(n) < flip
    return logits, np.where(flipped, 1 - labels, labels)


def test_test_images_unlike_the_validation_images_are_warned_about():
    import numpy as np

    from vipcli.trust import calibrate_run

    rng = np.random.default_rng(0)
    val_logits, val_labels = _logits(rng, 300, 0.0)
    alike = calibrate_run(val_logits, val_labels, *_logits(rng, 600, 0.0))
    assert alike.warnings == []
    shifted = calibrate_run(val_logits, val_labels, *_logits(rng, 600, 0.3))
    coverage = next(w for w in shifted.warnings if "prediction sets" in w)
    assert coverage.startswith("prediction sets at coverage 0.9 held the true class for ")
    assert "far below" in coverage and "give a val/ split drawn like the images you will predict" in coverage
    assert any("made the test NLL worse" in w for w in shifted.warnings)


def test_coverage_shortfall_counts_both_draws():
    from vipcli.conformal import coverage_shortfall

    row = {"coverage": 0.9, "empirical_coverage": 0.85, "expected_coverage": 0.9, "coverage_sd": 0.01}
    assert coverage_shortfall(row, 10_000) is not None  # 5 sd below, with a large test set
    assert coverage_shortfall(row, 30) is None  # 30 test images: 0.85 is well within chance
    assert coverage_shortfall({**row, "empirical_coverage": 0.99}, 10_000) is None  # above is no shortfall
    # its ± is both draws together (sqrt(0.01² + 0.9 · 0.1 / 100) = 3.2%), not the validation draw's 1.0%
    # that the report's "expected ± sd" column shows beside the same 90.0%: the message says which it is
    assert "90.0% expected (± 3.2%, one sd of the validation and test draws together)" in coverage_shortfall(
        {**row, "empirical_coverage": 0.7}, 100)


def test_images_in_folders_of_other_classes_are_warned_about(cli, two_runs, tmp_path):
    import shutil

    data, run, _ = two_runs
    images = sorted((data / "test" / "nevus").iterdir())[:2]
    for folders, warned in ((("NORMAL", "PNEUMONIA"), True), (("patient1", "patient2"), False),
                            (("melanoma", "NORMAL"), False), (("NORMAL", "NORMAL"), True), (("patient1",) * 2, False)):
        root = tmp_path / "-".join(folders)
        for folder, image in zip(folders, images):
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, root / folder / image.name)
        given = root / folders[0] if len(set(folders)) == 1 else root  # one class folder given on its own
        code, _, err = cli("predict", given, "--model", run, "--workers", "0")
        assert code == 0
        shown = ", ".join(dict.fromkeys(folders))
        assert (f"folders named after other classes ({shown})" in err) == warned, err
        assert ("is it the right --model?" in err) == warned
