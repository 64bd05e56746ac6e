"""A run whose model tells its classes apart no better than chance is named in a warning (`vipcli.chance`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from vipcli.chance import LEVEL, chance_level_warning, chance_scores, vs_chance


def test_each_score_is_the_one_vs_rest_auroc_and_its_chance_under_guessing():
    """The statistic is scikit-learn's one-vs-rest AUROC, and a guess scores as high about as often as p says:
    checked against 2,000 shuffles of the labels."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 12)
    probabilities = rng.dirichlet(np.ones(3), size=labels.size)  # [36, 3]
    probabilities[labels == 2, 2] += 0.3  # class 2 is told apart a little
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    scores = chance_scores(labels, probabilities)
    assert [score[0] for score in scores] == [0, 1, 2]
    for index, auroc, p, _ in scores:
        assert auroc == pytest.approx(100 * roc_auc_score(labels == index, probabilities[:, index]))
        ranks, own = rankdata(probabilities[:, index]), 12  # a shuffle's AUROC from the ranks it gives the class
        shuffled = [(rng.permutation(ranks)[:own].sum() - own * (own + 1) / 2) / (own * 24)
                    for _ in range(2000)]
        assert p == pytest.approx(np.mean(np.asarray(shuffled) >= auroc / 100 - 1e-12), abs=0.04)
    assert chance_scores(labels, probabilities)[2][2] < LEVEL < chance_scores(labels, probabilities)[0][2]


def test_two_classes_are_one_test_and_a_missing_class_none():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    probabilities = np.stack([1 - np.linspace(0.1, 0.9, 8), np.linspace(0.1, 0.9, 8)], axis=1)  # perfectly ranked
    [(index, auroc, p, perfect)] = chance_scores(labels, probabilities)
    assert (index, auroc) == (1, 100.0) and p == perfect == pytest.approx(1 / 70)  # one ordering of C(8, 4)
    assert chance_level_warning(vs_chance(labels, probabilities, ["melanoma", "nevus"]), ["melanoma", "nevus"], 8) == ""
    assert chance_scores(np.zeros(8, dtype=int), probabilities) == []


def test_a_test_split_too_small_for_any_model_to_beat_chance_is_named_as_such():
    """Two test images a class: even a perfect ranking comes by chance 1 time in 6, and the warning would have
    blamed the backbone for an AUROC of 100."""
    labels, perfect = np.array([0, 0, 1, 1]), np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    warning = chance_level_warning(vs_chance(labels, perfect, ["a", "b"]), ["a", "b"], 4, "the lesion world", "toy")
    assert warning == ("the 4 test images are too few to tell any model from guessing: even one that ranks every "
                       "image right would score that high by chance 17% of the time; give the test split more images "
                       "of each class to measure the model")


def test_a_model_at_chance_is_named_with_the_backbones_own_images_where_it_says():
    labels = np.array([0, 1] * 10)
    probabilities = np.full((20, 2), 0.5)  # every image tied: AUROC 50
    warning = chance_level_warning(vs_chance(labels, probabilities, ["melanoma", "nevus"]), ["melanoma", "nevus"], 20,
                                   "the lesion world", "toy")
    assert warning.startswith("the model tells melanoma from nevus no better than chance on the 20 test images: "
                              "its AUROC of 50.00 is not clearly above the 50 of guessing")
    assert warning.endswith("backbone 'toy' knows only the lesion world; for other images pass another backbone "
                            "(`vip backbones list`)")
    three = chance_level_warning(vs_chance(np.repeat([0, 1, 2], 4), np.full((12, 3), 1 / 3), ["a", "b", "c"]),
                                 ["a", "b", "c"], 12)
    assert three.startswith("the model tells none of its 3 classes from the others better than chance on the 12 "
                            "test images (one-vs-rest AUROC: a 50.00, b 50.00, c 50.00;")
    assert "try more shots, another backbone" in three


def _mixed_classes(data: Path, mixed: Path) -> Path:
    """The lesion world's images dealt into two classes that differ in nothing: every split's melanoma-like and
    nevus-like images, alternately, into the folders 'melanoma' and 'nevus' (their symptom packs ship)."""
    for split in ("train", "val", "test"):
        images = sorted((data / split).glob("*/*.png"), key=lambda path: path.name)  # melanoma_*, then nevus_*
        for number, image in enumerate(images):
            target = mixed / split / ("melanoma", "nevus")[number % 2]
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(image, target / image.name)
    return mixed


def test_vip_train_on_images_the_toy_backbone_cannot_tell_apart_warns_and_names_what_it_knows(cli, tmp_path,
                                                                                             monkeypatch):
    """The toy backbone on real photographs gave 54% accuracy and AUROC 54 without a word: a clinician could read
    it as "ViP does not work". Classes that differ in nothing give a warning naming what the toy backbone knows;
    the lesion world's own classes give none."""
    from lesion_runs import make_lesions

    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache"))
    data = make_lesions(tmp_path / "lesions", {"train": 8, "val": 6, "test": 12})
    common = ["--backbone", "toy", "--shots", "8", "--epochs", "3", "--views", "1", "--workers", "0"]
    code, _, err = cli("train", "--data", data, "--out", tmp_path / "run", *common)
    assert code == 0 and "chance" not in err, err
    mixed = _mixed_classes(data, tmp_path / "mixed")
    code, _, err = cli("train", "--data", mixed, "--out", tmp_path / "mixed-run", *common)
    warning = " ".join(err.split())
    assert code == 0, err
    assert "the model tells melanoma from nevus no better than chance on the 24 test images" in warning, err
    assert "backbone 'toy' knows only the generated lesion world of `vip demo`" in warning
    import html
    import json
    import re

    assert json.loads((tmp_path / "mixed-run" / "metrics.json").read_text())["test"]["vs_chance"][0]["p"] >= LEVEL
    for run, shown in (("run", False), ("mixed-run", True)):  # the run report says it too
        page = tmp_path / f"{run}.html"
        code, _, _ = cli("report", tmp_path / run, "--out", page, "--workers", "0", "--device", "cpu", "--gallery", "0")
        assert code == 0
        text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page.read_text())).split())
        assert ("The model tells melanoma from nevus no better than chance on the 24 test images" in text) is shown
