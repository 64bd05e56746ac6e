"""What a report claims about how far its figures can be trusted: a prediction page does not call a run's
probabilities and sets sound when the run's own test images showed they are not, and the accuracy of a run or a
benchmark is set beside what calling every image the largest class would score."""

from __future__ import annotations

import json
import shutil

import test_report
from test_report_reading import _visible

lesion_run, benchmark_dir = test_report.lesion_run, test_report.benchmark_dir  # the fixtures, shared


def _predict_page(cli, run, images, page, coverage="0.9") -> str:
    code, _, err = cli("predict", *images, "--model", run, "--coverage", coverage, "--report", page, "--workers", "0")
    assert code == 0, err
    return page.read_text()


def test_a_prediction_page_says_when_the_runs_own_test_images_broke_its_calibration(cli, lesion_run, tmp_path):
    """`vip predict --report` with the toy run on the chest X-rays (its validation images carved from train/, 26%
    NORMAL; its test split 38%) showed 'Probabilities calibrated with temperature T = 0.7927. Prediction sets at
    coverage 80%' in a green box, and that the set holds the true class for at least 80% of images, though `vip
    train` had warned that on its own test images T made the NLL worse and the sets at 80% held the true class for
    70.35% of them. The page now says so, in a caution's colour, with the run's figures."""
    data, run = lesion_run
    copy = shutil.copytree(run, tmp_path / "run")
    images = sorted((data / "test" / "nevus").iterdir())[:2]
    page = _predict_page(cli, copy, images, tmp_path / "sound.html")
    assert 'class="ok"' in page and "Measured when this run was trained, on its" not in _visible(page)

    metrics = json.loads((copy / "metrics.json").read_text())
    test = metrics["calibration"]["test"]
    test["after"]["nll"] = round(1.5 * test["before"]["nll"], 4)
    row = next(row for row in metrics["conformal"]["test"] if row["coverage"] == 0.9)
    row["empirical_coverage"] = 0.5
    (copy / "metrics.json").write_text(json.dumps(metrics))
    page = _predict_page(cli, copy, images, tmp_path / "broken.html")
    text = _visible(page)
    assert 'class="ok"' not in page
    assert (f"Measured when this run was trained, on its {metrics['test']['n']} test images: temperature scaling made "
            f"the NLL worse ({test['before']['nll']:.4f} to {test['after']['nll']:.4f}) and the prediction sets at "
            f"coverage 90% held the true class for 50.00% of them, far below the "
            f"{100 * row['expected_coverage']:.2f}% expected") in text
    assert "cannot be taken at their word" in text
    assert text.index("cannot be taken at their word") < text.index("Images")  # before the cards it speaks of

    # a coverage the run did not measure: the one it measured that fell short is named with its own coverage
    text = _visible(_predict_page(cli, copy, images, tmp_path / "other.html", coverage="0.85"))
    assert "the prediction sets at coverage 90% held the true class for 50.00%" in text


UNBALANCED = [[2, 3], [5, 10]]  # a test confusion matrix whose first class has a third of the second's images (as
# ISIC's 117 melanomas to 393 nevi), the model finding some of each


def test_a_run_report_on_unbalanced_test_images_says_what_calling_every_image_the_largest_class_scores(
        cli, lesion_run, tmp_path):
    """The toy run on ISIC (117 melanoma, 393 nevus test images) opened with 'accuracy 54.12%' and the benchmark's
    accuracy table led, in bold, with 68.43%: both below the 77.06% that calling every image nevus scores, which
    the pages did not say. The summary, and the benchmark's accuracy table, now set the accuracy beside it."""
    _, run = lesion_run
    copy = shutil.copytree(run, tmp_path / "run")
    assert cli("report", copy, "--workers", "0", "--device", "cpu", "--gallery", "0")[0] == 0
    assert "Calling every test image" not in _visible((copy / "report.html").read_text())  # balanced: 15 and 15
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["test"]["confusion_matrix"] = UNBALANCED
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert cli("report", copy, "--workers", "0", "--device", "cpu", "--gallery", "0")[0] == 0
    text = _visible((copy / "report.html").read_text())
    sentence = ("Calling every test image nevus, the largest class, would score an accuracy of 75.00% (a balanced "
                "accuracy of 50.00%) with no model at all.")
    assert sentence in text and text.index(sentence) < text.index("Settings and data")  # in the summary


def test_a_benchmark_report_on_unbalanced_test_images_sets_accuracy_beside_the_largest_class(
        cli, benchmark_dir, tmp_path):
    """See the test above: the benchmark's accuracy table says it under the table, where its bold lead is named."""
    assert cli("report", benchmark_dir, "--out", tmp_path / "balanced.html")[0] == 0
    assert "Calling every test image" not in _visible((tmp_path / "balanced.html").read_text())
    folder = shutil.copytree(benchmark_dir, tmp_path / "unbalanced")
    document = json.loads((folder / "results.json").read_text())
    for row in document["rows"]:
        row["test_confusion_matrix"] = UNBALANCED
    (folder / "results.json").write_text(json.dumps(document))
    assert cli("report", folder)[0] == 0
    text = _visible((folder / "report.html").read_text())
    sentence = f"Calling every test image {document['class_names'][1]}, the largest class, would score an accuracy of 75.00%"
    accuracy = text.index("test accuracy % (")
    assert sentence in text and accuracy < text.index(sentence) < text.index("test balanced accuracy % (")
