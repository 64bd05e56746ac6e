"""A run whose model tells its classes apart no better than chance is named in a warning (`vipcli.chance`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from vipcli.chance import LEVEL, chance_level_warning, chance_rows_warning, chance_scores, vs_chance


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
                       "image right would score that high by chance 17% of the time (better than chance takes 5% or "
                       "less); give the test split more images of each class to measure the model")


def test_a_model_at_chance_is_named_with_the_backbones_own_images_where_it_says():
    labels = np.array([0, 1] * 10)
    probabilities = np.full((20, 2), 0.5)  # every image tied: AUROC 50
    warning = chance_level_warning(vs_chance(labels, probabilities, ["melanoma", "nevus"]), ["melanoma", "nevus"], 20,
                                   "the lesion world", "toy")
    assert warning.startswith("the 20 test images do not show that the model tells melanoma from nevus better than "
                              "chance: its AUROC of 50.00 is not clearly above the 50 of guessing (a guess scores at "
                              "least as high 100% of the time; better than chance takes 5% or less)")
    assert warning.endswith("backbone 'toy' knows only the lesion world; for other images pass another backbone "
                            "(`vip backbones list`)")
    three = chance_level_warning(vs_chance(np.repeat([0, 1, 2], 12), np.full((36, 3), 1 / 3), ["a", "b", "c"]),
                                 ["a", "b", "c"], 36)
    assert three.startswith("the 36 test images do not show that the model tells any of its 3 classes from the "
                            "others better than chance (one-vs-rest AUROC: a 50.00, b 50.00, c 50.00;")
    assert "try more shots, another backbone" in three


def test_a_sweep_blames_the_backbones_images_only_when_no_row_beats_chance():
    """Rows at chance beside rows that beat it on the same test images say the backbone sees them: `vip demo`'s own
    sweep told the user that the toy backbone knows only the lesion world, of the lesion world's own images."""
    labels = np.array([0, 1] * 10)
    guessing = vs_chance(labels, np.full((20, 2), 0.5), ["melanoma", "nevus"])
    telling = vs_chance(labels, np.stack([1 - labels * 0.8 - 0.1, labels * 0.8 + 0.1], axis=1), ["melanoma", "nevus"])
    rows = [{"method": "zeroshot", "shots": 0, "seed": 1, "test_vs_chance": guessing},
            {"method": "vip", "shots": 16, "seed": 1, "test_vs_chance": telling}]
    mixed = chance_rows_warning(rows, "the lesion world", "toy")
    assert mixed.startswith("1 of the 2 rows does not show on test that its model beats chance: zeroshot (seed 1)")
    assert mixed.endswith("the other row beats chance on the same test images, so the backbone tells these classes "
                          "apart: what falls short is this row's method or shots")
    alone = chance_rows_warning(rows[:1] * 2, "the lesion world", "toy")
    assert alone.endswith("backbone 'toy' knows only the lesion world; for other images pass another backbone "
                          "(`vip backbones list`)")
    assert chance_rows_warning(rows[1:], "the lesion world", "toy") == ""


def test_a_perfect_ranking_of_three_images_against_three_beats_chance_at_5_percent():
    """The exact test's p of a perfect ranking of 3 against 3 is 1 in 20, 5%: at the level, which a test of size 5%
    rejects at; vip named it a split too small for any model."""
    labels, perfect = np.array([0, 0, 0, 1, 1, 1]), np.linspace(0.1, 0.9, 6)
    scores = vs_chance(labels, np.stack([1 - perfect, perfect], axis=1), ["a", "b"])
    assert scores[0]["p"] == scores[0]["p_perfect"] == pytest.approx(1 / 20)
    assert chance_level_warning(scores, ["a", "b"], 6, "the lesion world", "toy") == ""


def test_tied_probabilities_in_few_images_are_counted_exactly_not_approximated():
    """With one tie among 3 against 3, SciPy's normal approximation gave p = 3.8%: less than a perfect ranking's
    5%, which no model can beat. The p is now counted over the 20 arrangements of the images."""
    labels, own = np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.9])
    [(_, auroc, p, perfect)] = chance_scores(labels, np.stack([1 - own, own], axis=1))
    assert auroc == 100.0 and p == pytest.approx(perfect) == pytest.approx(1 / 20)
    labels, tied = np.array([0, 0, 1, 1, 1]), np.array([0.2, 0.5, 0.5, 0.7, 0.9])  # 2 against 3: a tie across
    [(_, auroc, p, _)] = chance_scores(labels, np.stack([1 - tied, tied], axis=1))
    wins = [(1.0 if o > r else 0.5 if o == r else 0.0) for o in tied[2:] for r in tied[:2]]
    arrangements = [(1.0 if o > r else 0.5 if o == r else 0.0) for picked in _picks(5, 3)
                    for o in tied[list(picked)] for r in tied[[i for i in range(5) if i not in picked]]]
    sums = np.asarray(arrangements).reshape(10, 6).sum(axis=1)  # U of each of the C(5, 3) arrangements
    assert auroc == pytest.approx(100 * np.mean(wins)) and p == pytest.approx(np.mean(sums >= sum(wins)))


def _picks(n: int, k: int) -> list[tuple[int, ...]]:
    """Every choice of k of range(n)."""
    from itertools import combinations

    return list(combinations(range(n), k))


def test_three_classes_share_the_5_percent_level_so_a_guessing_model_is_named_as_often_as_two():
    """Each of C one-vs-rest tests at 5% let a model that guesses escape the warning up to C x 5% of the time; a
    class now beats chance at 5% / C (Bonferroni). One class at p = 3.4% of three no longer clears the run."""
    labels, c = np.repeat([0, 1, 2], 12), np.random.default_rng(22).random(36)
    probabilities = np.stack([(1 - c) / 2 + 0.001 * np.random.default_rng(1022).random(36), (1 - c) / 2, c], axis=1)
    scores = vs_chance(labels, probabilities, ["a", "b", "c"])
    assert LEVEL / 3 < scores[2]["p"] < LEVEL and min(scores[0]["p"], scores[1]["p"]) > LEVEL  # the case at hand
    warning = chance_level_warning(scores, ["a", "b", "c"], 36)
    assert warning.startswith("the 36 test images do not show that the model tells any of its 3 classes from the "
                              "others better than chance (one-vs-rest AUROC: a 53.12, b 65.97, c 69.10; a guess scores "
                              "each at least as high 3.4% of the time or more; better than chance takes 1.7% or less "
                              "for one of the 3 classes, 5% shared among them)"), warning


def test_a_good_model_on_a_test_split_too_small_to_show_it_is_not_blamed_on_the_backbone():
    """An AUROC of 80 on 5 test images against 5 misses 5% (a guess scores as high 7.5% of the time): the warning
    said the model tells the classes apart no better than chance and that the backbone knows only its own images,
    of images it knows. At these counts only an AUROC of 84 beats chance, so even an excellent model cannot show
    it: the warning says so, and asks for more test images."""
    labels = np.array([0] * 5 + [1] * 5)
    nevus = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.25, 0.5, 0.75, 0.85, 0.95])  # nevus wins 20 of the 25 pairs
    scores = vs_chance(labels, np.stack([1 - nevus, nevus], axis=1), ["melanoma", "nevus"])
    assert scores == [{"class": "nevus", "auroc": 80.0, "p": 0.0754, "p_perfect": 0.004,
                       "auroc_needed": 84.0}]
    warning = chance_level_warning(scores, ["melanoma", "nevus"], 10, "the lesion world", "toy")
    assert warning == ("the 10 test images are too few to tell this model from guessing: its AUROC of 80.00 is not "
                       "clearly above the 50 of guessing (a guess scores at least as high 7.5% of the time; better "
                       "than chance takes 5% or less), and at these counts only an AUROC of 84.00 or more would be; "
                       "give the test split more images of each class to measure the model")


def test_a_rare_class_among_thousands_of_test_images_is_tested_in_moments():
    """5 test images of a class against 5,000 others: SciPy's exact method (its choice where a sample has at most 8
    values) took about 20 s a call at an AUROC near 50 on a 2-core machine, at the end of `vip train`."""
    import time

    rng = np.random.default_rng(0)
    labels = np.array([1] * 5 + [0] * 5000)
    nevus = rng.random(labels.size)
    started = time.perf_counter()
    [score] = vs_chance(labels, np.stack([1 - nevus, nevus], axis=1), ["melanoma", "nevus"])
    assert time.perf_counter() - started < 3
    assert score["p"] > LEVEL and score["p_perfect"] < 1e-12 and 60 < score["auroc_needed"] < 80


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
    assert "the 24 test images do not show that the model tells melanoma from nevus better than chance" in warning, err
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
        assert ("The 24 test images do not show that the model tells melanoma from nevus better than chance"
                in text) is shown
