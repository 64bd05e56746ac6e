"""`vip benchmark` says what it will do (a plan line, as `vip train`'s, from the command and from Python), which of
its rows do not show on test that their model beats chance (stderr, results.json, `vip report`), and balanced
accuracy leaves a class without test images out, alike in a run, a sweep and their reports."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lesion_runs import make_lesions
from vipcli.chance import at_chance


def _sweep(data, out, methods="zeroshot,vip", seeds="1,2"):
    """`vip benchmark` arguments for a fast toy-backbone sweep (1 shot; by default zeroshot and vip, seeds 1 and 2)."""
    return ("benchmark", "--data", data, "--methods", methods, "--shots", "1", "--seeds", seeds, "--backbone", "toy",
            "--epochs", "2", "--views", "2", "--workers", "0", "--device", "cpu", "--out", out)


@pytest.fixture(scope="module")
def lesions(tmp_path_factory):
    """A small lesion world (10 test images per class), on which the toy backbone's zero-shot rows are at chance."""
    root = tmp_path_factory.mktemp("plan")
    return make_lesions(root / "lesions", {"train": 4, "val": 4, "test": 10})


def test_a_sweep_opens_with_its_plan_and_says_so_again_on_resume_but_not_when_quiet(cli, lesions, tmp_path):
    out = tmp_path / "bench"
    code, _, stderr = cli(*_sweep(lesions, out))
    assert code == 0, stderr
    plan = stderr.splitlines()[0]
    assert plan == (f"benchmark of 4 rows: 1 method (vip) x 1 shot count (1) x 2 seeds (1, 2), and 1 zero-shot "
                    f"method (zeroshot) once per seed; 2 classes (melanoma, nevus); backbone toy (toy) on cpu; "
                    f"results in {out}")
    code, _, stderr = cli(*_sweep(lesions, out, seeds="1,2,3"))  # one more seed: 2 of 6 rows to run
    assert code == 0, stderr
    assert stderr.splitlines()[:2] == [plan.replace("4 rows", "6 rows").replace("2 seeds (1, 2)", "3 seeds (1, 2, 3)"),
                                       f"resuming {out}: 4 finished rows skipped, 2 to run"]
    code, _, stderr = cli(*_sweep(lesions, out), "-q")
    assert code == 0 and "benchmark of" not in stderr and "resuming" not in stderr


def test_the_python_benchmark_prints_its_plan_on_stderr(lesions, tmp_path, capsys):
    import vipcli.api as vip

    sweep = vip.benchmark(lesions, methods=["zeroshot"], seeds=[1], backbone="toy", device="cpu", workers=0,
                          out=tmp_path / "py")
    assert sweep.trained == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"benchmark of 1 row: 1 zero-shot method (zeroshot) once per seed; 2 classes (melanoma, nevus); backbone toy "
        f"(toy) on cpu; results in {tmp_path / 'py'}")


def test_rows_at_chance_are_named_in_one_warning_in_results_json_and_in_the_report(cli, lesions, tmp_path):
    out = tmp_path / "bench"
    code, stdout, stderr = cli(*_sweep(lesions, out))
    assert code == 0, stderr
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert all(row["test_vs_chance"] for row in rows)  # each row's test against guessing, as metrics.json's
    at = [(row["method"], row["seed"]) for row in rows if at_chance(row["test_vs_chance"])]
    assert at and len(at) < len(rows), at  # the toy's zero-shot rows are at chance here, its vip rows are not
    warnings = [line for line in stderr.splitlines() if "model beats chance" in line]
    assert len(warnings) == 1, stderr  # one line for the sweep, not one per row
    assert warnings[0].startswith(f"warning: {len(at)} of the {len(rows)} rows do not show on test that their model "
                                  "beats chance: zeroshot (seeds 1, 2)")
    # the vip rows beat chance on the same images: the backbone sees them, so the toy's own domain is not blamed
    assert warnings[0].endswith(f"the other {len(rows) - len(at)} rows beat chance on the same test images, so the "
                                "backbone tells these classes apart: what falls short is these rows' method or shots")
    assert "knows only" not in stderr
    assert "model beats chance" not in stdout
    assert cli("report", out, "--out", tmp_path / "report.html")[0] == 0
    page = (tmp_path / "report.html").read_text()
    assert re.search(rf"{len(at)} of the {len(rows)} rows do not show on test that their model beats chance: "
                     r"zeroshot \(seeds 1, 2\)", page)


@pytest.fixture(scope="module")
def no_nevus_on_test(tmp_path_factory):
    """A lesion world whose test split has melanomas only."""
    root = tmp_path_factory.mktemp("absent")
    data = make_lesions(root / "lesions", {"train": 4, "val": 4, "test": 6})
    shutil.rmtree(data / "test" / "nevus")
    return data


def test_balanced_accuracy_leaves_a_class_without_test_images_out_in_a_run_a_sweep_and_their_reports(
        cli, no_nevus_on_test, tmp_path):
    """With only melanomas on test, balanced accuracy is the melanomas' sensitivity (= accuracy), not half of it."""
    run = tmp_path / "run"
    code, _, stderr = cli("train", "--data", no_nevus_on_test, "--backbone", "toy", "--shots", "4", "--epochs", "2",
                          "--views", "2", "--workers", "0", "--device", "cpu", "--out", run)
    assert code == 0, stderr
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert sum(test["confusion_matrix"][1]) == 0 and test["accuracy"] > 0
    assert test["balanced_accuracy"] == test["accuracy"]
    assert cli("report", run, "--out", tmp_path / "run.html")[0] == 0
    page = (tmp_path / "run.html").read_text()
    assert (f"The mean of the sensitivity column over the 1 class with test images, {test['accuracy']:.2f}%, is the "
            "balanced accuracy on test") in page
    out = tmp_path / "bench"
    code, stdout, stderr = cli(*_sweep(no_nevus_on_test, out, methods="vip", seeds="1"))
    assert code == 0, stderr
    [row] = json.loads((out / "results.json").read_text())["rows"]
    assert row["test_balanced_accuracy"] == row["test_accuracy"] > 0
    table = stdout.split("test balanced accuracy %")[1].split("test macro-F1 %")[0]
    assert [line.split() for line in table.splitlines() if line.split()[:1] == ["vip"]] == [
        ["vip", f"{row['test_accuracy']:.2f}"]]
