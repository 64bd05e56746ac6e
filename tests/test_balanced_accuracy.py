"""Balanced accuracy (the mean over the classes of each one's recall), as the ISIC 2018/2019 challenges ranked
methods: exact from the confusion matrix, in metrics.json, a benchmark's rows, summary and report, a run's
report; runs and sweeps of an earlier vip, which stored none, still read and report."""

from __future__ import annotations

import csv
import json
import re
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from lesion_runs import make_lesions
from vipcli.metrics import compute_metrics, exact_figures, round_half_up, split_figure

FIXTURE = Path(__file__).parent / "fixtures" / "run-v0.1.0"


def metrics_of(matrix: list[list[int]]) -> dict:
    """compute_metrics on the labels and one-hot predictions that a confusion matrix stands for."""
    labels, predicted = [], []
    for true, counts in enumerate(matrix):
        for guess, count in enumerate(counts):
            labels += [true] * count
            predicted += [guess] * count
    return compute_metrics(labels, np.eye(len(matrix))[predicted], len(matrix))


def test_balanced_accuracy_of_an_imbalanced_3_class_matrix_is_the_mean_recall_over_the_classes_with_images():
    """melanoma (3 images) is never predicted, nevus has 9, seborrheic keratosis none in this split (the model
    still calls 2 images that). Recalls 0/3, 8/9 and none: (0 + 88.89) / 2 = 44.44, sklearn's
    balanced_accuracy_score, which leaves the class without images out (an earlier vip counted it 0 and gave 29.63,
    so a model finding every image of a 3-class split missing one class scored 66.67). Accuracy is 8/12 = 66.67;
    macro-F1 (0 + 16/19 + 0) / 3 = 28.07 still counts the absent class's F1 as 0 (its 2 predictions are all wrong)."""
    from sklearn.metrics import balanced_accuracy_score

    matrix = [[0, 2, 1], [0, 8, 1], [0, 0, 0]]
    stored = metrics_of(matrix)
    assert stored["confusion_matrix"] == matrix
    assert (stored["accuracy"], stored["balanced_accuracy"], stored["macro_f1"]) == (66.67, 44.44, 28.07)
    assert exact_figures(matrix)["balanced_accuracy"] == Fraction(400, 9)  # 100 · (8/9) / 2, exactly
    labels = [0] * 3 + [1] * 9
    predicted = [1, 1, 2] + [1] * 8 + [2]
    with pytest.warns(UserWarning, match="y_pred contains classes not in y_true"):  # sklearn drops that class too
        assert round(100 * balanced_accuracy_score(labels, predicted), 2) == stored["balanced_accuracy"]
    # every image found, the third class absent: 100, not the 66.67 of counting it 0
    assert metrics_of([[3, 0, 0], [0, 9, 0], [0, 0, 0]])["balanced_accuracy"] == 100.0
    # 1 melanoma to 4 nevi, the model finds 1 of 2 melanomas: accuracy 90 hides what balanced accuracy shows
    assert (metrics_of([[1, 1], [0, 8]])["accuracy"], metrics_of([[1, 1], [0, 8]])["balanced_accuracy"]) == (90.0, 75.0)
    # exactly halfway (1/16 and 0 of 4: 3.125) rounds half up, as accuracy and macro-F1 do; round() gives 3.12
    assert metrics_of([[1, 15], [4, 0]])["balanced_accuracy"] == 3.13 != round(3.125, 2)
    assert compute_metrics([], np.zeros((0, 2)), 2)["balanced_accuracy"] is None


def test_a_split_block_of_an_earlier_vip_gets_its_balanced_accuracy_from_its_confusion_matrix():
    old = {"n": 12, "accuracy": 66.67, "macro_f1": 28.07, "auroc": None,
           "confusion_matrix": [[0, 2, 1], [0, 8, 1], [0, 0, 0]]}
    assert split_figure(old, "balanced_accuracy") == 44.44 and split_figure(old, "accuracy") == 66.67
    # one stored by a vip that counted the class without images as 0: the matrix's figure, as the report's caption
    assert split_figure({**old, "balanced_accuracy": 29.63}, "balanced_accuracy") == 44.44
    assert split_figure({"n": 2, "balanced_accuracy": 12.5}, "balanced_accuracy") == 12.5  # no matrix: as stored
    assert split_figure({"n": 0, "accuracy": None}, "balanced_accuracy") is None  # no matrix: no figure


def test_a_benchmark_summary_averages_the_exact_balanced_accuracies_of_its_seeds():
    """Three seeds on 3 melanomas and 12 nevi: recalls 1/3 and 8/12, 2/3 and 8/12, 3/3 and 10/12 are exactly 50,
    66.666.. and 91.666..: their mean 69.444.. is 69.44, where the rows' figures (50.0, 66.67, 91.67) average to
    69.4467, 69.45. The summary, summary.csv and the report's table give 69.44, as for accuracy."""
    import statistics

    from vipcli.report.benchmark import _tables
    from vipcli.sweep_folder import summarize, summary_csv

    rows = []
    for seed, matrix in enumerate(([[1, 2], [4, 8]], [[2, 1], [4, 8]], [[3, 0], [2, 10]]), 1):
        stored = metrics_of(matrix)
        rows.append({"method": "vip", "shots": 1, "seed": seed, "test_accuracy": stored["accuracy"],
                     "test_balanced_accuracy": stored["balanced_accuracy"], "test_macro_f1": stored["macro_f1"],
                     "test_auroc": None, "test_confusion_matrix": matrix, "fit_s": 1.0})
    assert [r["test_balanced_accuracy"] for r in rows] == [50.0, 66.67, 91.67]
    std = round(statistics.stdev([50, 200 / 3, 275 / 3]), 2)
    summary = summarize(rows)[0]
    assert (summary["balanced_accuracy_mean"], summary["balanced_accuracy_std"]) == (69.44, std) == (69.44, 20.97)
    without_matrices = [{k: v for k, v in r.items() if k != "test_confusion_matrix"} for r in rows]
    assert summarize(without_matrices)[0]["balanced_accuracy_mean"] == 69.45  # only the stored figures to average
    line = next(csv.DictReader(summary_csv(rows).splitlines()))
    assert (line["test_balanced_accuracy_mean_pct"], line["test_balanced_accuracy_std_pct"]) == ("69.44", "20.97")
    assert "test balanced accuracy %" in _tables(rows) and "69.44 ± 20.97" in _tables(rows)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """A lesion world whose test split has 3 melanomas to 10 nevi (val and train balanced)."""
    root = tmp_path_factory.mktemp("balanced")
    data = make_lesions(root / "lesions", {"train": 4, "val": 4, "test": 10})
    for path in sorted((data / "test" / "melanoma").glob("*.png"))[3:]:
        path.unlink()
    return data, root


def _table(page: str, caption: str) -> dict[str, list[str]]:
    """The table captioned `caption` of a report: first cell -> the other cells."""
    found = re.search(rf"<caption>{re.escape(caption)}</caption>(.*?)</table>", page, re.S)
    assert found, caption
    return {row[0]: row[1:] for row in (re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)
                                        for tr in re.findall(r"<tr>(.*?)</tr>", found.group(1)))}


def _balanced(matrix: list[list[int]]) -> float:
    """The mean recall over the classes, computed here from the matrix (rounded half up)."""
    return round_half_up(sum(Fraction(100 * row[c], sum(row)) if sum(row) else 0
                             for c, row in enumerate(matrix)) / len(matrix))


def test_a_benchmark_stores_reports_and_resumes_balanced_accuracy_and_an_earlier_sweep_still_reports(
        cli, skewed, tmp_path, monkeypatch):
    data, root = skewed
    monkeypatch.setenv("VIP_CACHE_DIR", str(root / "cache"))
    out = tmp_path / "bench"
    command = ("benchmark", "--data", data, "--methods", "vip", "--shots", "1", "--seeds", "1,2", "--backbone", "toy",
               "--epochs", "2", "--views", "2", "--workers", "0", "--device", "cpu", "--out", out)
    code, stdout, stderr = cli(*command)
    assert code == 0, stderr
    printed = stdout.split("test balanced accuracy %, mean±std over seeds 1, 2")  # 3 melanomas to 10 nevi: uneven,
    assert len(printed) == 2 and "test macro-F1 %" in printed[1]  # its own table, between accuracy and macro-F1
    balanced_line = next(line.split() for line in printed[1].splitlines() if line.split()[:1] == ["vip"])
    document = json.loads((out / "results.json").read_text())
    for row in document["rows"]:
        matrix = row["test_confusion_matrix"]
        assert sum(matrix[0]) == 3 and sum(matrix[1]) == 10
        assert row["test_balanced_accuracy"] == _balanced(matrix)
        assert row["test_balanced_accuracy"] not in (row["test_accuracy"], row["test_macro_f1"])  # tells them apart
        assert row["val_balanced_accuracy"] is not None
    with open(out / "results.csv", newline="") as stream:
        assert [float(r["test_balanced_accuracy"]) for r in csv.DictReader(stream)] == [
            r["test_balanced_accuracy"] for r in document["rows"]]
    entry = document["summary"][0]
    with open(out / "summary.csv", newline="") as stream:
        line = next(csv.DictReader(stream))
    mean, std = entry["balanced_accuracy_mean"], entry["balanced_accuracy_std"]
    assert (line["test_balanced_accuracy_mean_pct"], line["test_balanced_accuracy_std_pct"]) == (f"{mean:.2f}",
                                                                                                f"{std:.2f}")
    assert balanced_line == ["vip", f"{mean:.2f}±{std:.2f}"]  # the printed table shows the summary's figure
    assert cli("report", out, "--out", tmp_path / "new.html")[0] == 0
    cells = _table((tmp_path / "new.html").read_text(), "test balanced accuracy % (mean ± std over seeds 1, 2)")
    assert [cell for name, cell in cells.items() if name != "method"] == [[f"{mean:.2f} ± {std:.2f}"]]
    # the same sweep as an earlier vip wrote it, without any balanced accuracy: reported and resumed alike
    for row in document["rows"]:
        del row["val_balanced_accuracy"], row["test_balanced_accuracy"]
    for entry in document["summary"]:
        del entry["balanced_accuracy_mean"], entry["balanced_accuracy_std"]
    (out / "results.json").write_text(json.dumps(document))
    (out / "report.html").unlink(missing_ok=True)
    assert cli("report", out, "--out", tmp_path / "old.html")[0] == 0
    assert _table((tmp_path / "old.html").read_text(), "test balanced accuracy % (mean ± std over seeds 1, 2)") \
        == cells
    code, _, stderr = cli(*command)
    assert code == 0 and "2 finished rows skipped" in stderr, stderr
    resumed = json.loads((out / "results.json").read_text())
    assert "test_balanced_accuracy" not in resumed["rows"][0]  # the stored rows are kept as they were
    assert (resumed["summary"][0]["balanced_accuracy_mean"], resumed["summary"][0]["balanced_accuracy_std"]) == (
        mean, std)


def test_a_run_reports_balanced_accuracy_and_one_of_an_earlier_vip_still_does(cli, skewed, tmp_path, monkeypatch):
    import vipcli.api as vip

    data, root = skewed
    monkeypatch.setenv("VIP_CACHE_DIR", str(root / "cache"))
    result = vip.train(data, backbone="toy", shots=2, epochs=2, views=2, workers=0, device="cpu", seed=1,
                       out=tmp_path / "run")
    written = json.loads((result.run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        assert written[split]["balanced_accuracy"] == result.metrics[split]["balanced_accuracy"] == _balanced(
            written[split]["confusion_matrix"])
    test = written["test"]
    code, _, err = cli("report", result.run_dir, "--out", tmp_path / "run.html", "--workers", "0", "--device", "cpu",
                       "--gallery", "0")
    assert code == 0, err
    page = (tmp_path / "run.html").read_text()
    scores = _table(page, "Scores on each split")
    assert list(scores) == ["score", "images", "accuracy %", "balanced accuracy %", "macro-F1 %", "AUROC %"]
    assert scores["score"] == ["val", "test"]  # a score a row, a split a column
    assert [scores[name][1] for name in ("images", "accuracy %", "balanced accuracy %")] == [
        str(test["n"]), f"{test['accuracy']:.2f}", f"{test['balanced_accuracy']:.2f}"]
    assert (f"The mean of the sensitivity column over the 2 classes, {test['balanced_accuracy']:.2f}%, is the "
            "balanced accuracy on test.") in page
    # a run of vip 0.1.0 (no balanced_accuracy in its metrics.json), its test split made 3 melanomas to 9 nevi
    old = shutil.copytree(FIXTURE / "vip", tmp_path / "old")
    metrics = json.loads((old / "metrics.json").read_text())
    assert "balanced_accuracy" not in metrics["test"] and "balanced_accuracy" not in metrics["val"]
    metrics["test"]["confusion_matrix"] = [[1, 2], [0, 9]]  # recalls 1/3 and 9/9: (33.33 + 100) / 2
    (old / "metrics.json").write_text(json.dumps(metrics))
    code, _, err = cli("report", old, "--out", tmp_path / "old.html", "--workers", "0", "--device", "cpu",
                       "--gallery", "0")
    assert code == 0, err
    scores = _table((tmp_path / "old.html").read_text(), "Scores on each split")
    assert scores["balanced accuracy %"] == ["87.50", "66.67"]  # val [[3, 1], [0, 4]]: (75 + 100) / 2


def _printed(renderable, width: int) -> list[str]:
    """`renderable` as a terminal `width` columns wide prints it, line by line (no colour)."""
    import io

    from rich.console import Console

    out = Console(file=io.StringIO(), width=width, color_system=None)
    out.print(renderable)
    return out.file.getvalue().splitlines()


def test_the_train_table_shows_balanced_accuracy_in_80_columns_and_computes_it_for_a_run_of_an_earlier_vip():
    """`vip train`'s closing table showed accuracy, macro-F1 and AUROC: on 3 melanomas to 9 nevi a model finding 1
    melanoma scored 83.33% accuracy, and its balanced accuracy (66.67%) was in metrics.json only. It is now a column,
    the table fits an 80-column terminal whole, and a metrics block without it (an earlier vip's) gets it from its
    confusion matrix, as `vip report` does; a split without images shows '-'."""
    from vipcli.cli.train import scores_table

    test = metrics_of([[1, 2], [0, 9]])
    old_val = {key: value for key, value in metrics_of([[3, 1], [0, 4]]).items() if key != "balanced_accuracy"}
    lines = _printed(scores_table({"val": old_val, "test": test}, "runs/isic"), 80)
    assert max(map(len, lines)) <= 80
    header = next(line for line in lines if "split" in line)
    assert [cell.strip() for cell in header.strip("┃ ").split("┃")] == [
        "split", "images", "accuracy %", "balanced accuracy %", "macro-F1 %", "AUROC %"]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("│ ").split("│")] for line in lines
                                              if line.startswith("│"))}
    assert rows["test"][:3] == ["12", "83.33", "66.67"] and rows["val"][:3] == ["8", "87.50", "87.50"]
    empty = _printed(scores_table({"val": metrics_of([]), "test": test}, "runs/isic"), 80)
    assert [c.strip() for c in next(line for line in empty if "│ val" in line).strip("│ ").split("│")][1:] == [
        "0", "-", "-", "-", "-"]


def _bench(rows: list[dict]):
    """What `print_benchmark` and `benchmark_tables` read of a finished sweep of `rows`."""
    from types import SimpleNamespace

    from vipcli.sweep_folder import summarize

    return SimpleNamespace(rows=rows, summary=summarize(rows), out=Path("sweep"), trained=len(rows), skipped=0,
                           encoded_views=0)


def test_the_benchmark_prints_balanced_accuracy_where_classes_are_uneven_and_says_when_it_is_accuracy():
    """The printed sweep showed test accuracy and macro-F1, and balanced accuracy was in the report only. With uneven
    test classes it is its own table, between them (as in the report), its figures the summary's, one a row of an
    earlier vip stored none of computed from the matrix; with as many test images in every class it is accuracy
    figure for figure, which one line says instead of the same table twice."""
    from vipcli.cli.benchmark import benchmark_tables

    uneven = [{"method": "vip", "shots": 1, "seed": seed, "test_confusion_matrix": matrix,
               **{f"test_{k}": v for k, v in metrics_of(matrix).items() if k in ("accuracy", "macro_f1")}}
              for seed, matrix in ((1, [[1, 2], [0, 9]]), (2, [[2, 1], [1, 8]]))]
    tables = benchmark_tables(_bench(uneven))
    assert [table.title for table, _ in tables] == [
        f"test {name} %, mean±std over seeds 1, 2" for name in ("accuracy", "balanced accuracy", "macro-F1")]
    balanced = tables[1][0]
    recalls = (Fraction(100, 3) + 100) / 2, (Fraction(200, 3) + Fraction(800, 9)) / 2  # 66.67 and 77.78
    mean = round_half_up(sum(recalls) / 2)
    assert [str(cell) for cell in balanced.columns[1]._cells] == [f"{mean:.2f}±{float(recalls[1] - recalls[0]) / 2 ** 0.5:.2f}"]
    assert mean == 72.22
    even = [{**row, "test_confusion_matrix": matrix} for row, matrix in zip(uneven, ([[3, 1], [2, 2]], [[4, 0], [1, 3]]))]
    tables = benchmark_tables(_bench(even))
    assert tables[1] == (None, "test balanced accuracy %: the same figures as test accuracy % (4 test images in each "
                               "class; balanced accuracy differs only where classes are uneven)")
    assert tables[0][0] is not None and tables[2][0] is not None
    no_matrix = [{key: value for key, value in row.items() if key != "test_confusion_matrix"} for row in even]
    assert [str(cell) for cell in benchmark_tables(_bench(no_matrix))[1][0].columns[1]._cells] == ["-"]


def test_the_printed_benchmark_tables_fit_80_columns_with_balanced_accuracy():
    """Every default method at 1, 4 and 16 shots over three seeds, test classes uneven: each printed table, the balanced
    accuracy one too, fits an 80-column terminal (the notes under them are one line each, for grep)."""
    import io
    from unittest.mock import patch

    from rich.console import Console

    from vipcli.cli import benchmark as cli_benchmark

    methods = cli_benchmark.DEFAULT_METHODS
    rows = [{"method": method, "shots": shots, "seed": seed, "test_confusion_matrix": [[3 + seed, 7 - seed], [i, 30 - i]],
             "test_accuracy": 0.0, "test_macro_f1": 0.0}
            for i, method in enumerate(methods) for shots in ((0,) if "zeroshot" in method else (1, 4, 16))
            for seed in (1, 2, 3)]
    out = Console(file=io.StringIO(), width=80, color_system=None)
    with patch.object(cli_benchmark.console, "stdout", lambda: out):
        cli_benchmark.print_benchmark(_bench(rows), as_json=False)
    lines = out.file.getvalue().splitlines()
    assert "test balanced accuracy %, mean±std over seeds 1, 2, 3" in [line.strip() for line in lines]
    tables = [line for line in lines if not line.startswith(("In bold", "* uses", "69 rows run"))]
    assert len(tables) < len(lines) - 3 and max(map(len, tables)) <= 80


def test_auroc_is_rounded_half_up_as_the_other_figures_are():
    """metrics.json's accuracy, balanced accuracy and macro-F1 round half up (3.125 -> 3.13), its AUROC with round(),
    which gave 3.12 for an AUROC of 1/32 (one melanoma ranked above 1 of 32 nevi): two conventions in one table.
    AUROC now rounds half up too, from the figure sklearn computes, taken as written."""
    from sklearn.metrics import roc_auc_score

    labels = [1] + [0] * 32
    scores = [0.2] + [0.1] + [0.9] * 31  # the melanoma (class 1) is ranked above 1 of the 32 nevi: AUROC 1/32
    assert roc_auc_score(labels, scores) == 1 / 32
    probabilities = np.stack([1 - np.array(scores), np.array(scores)], axis=1)
    stored = compute_metrics(labels, probabilities, 2)
    assert stored["auroc"] == 3.13 != round(100 * (1 / 32), 2)
    assert compute_metrics([0, 1, 1, 0], np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]), 2)["auroc"] == 75.0
