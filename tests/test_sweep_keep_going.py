"""`vip benchmark --keep-going`: a row that fails is recorded in results.json and the other rows run, the sweep ends
with exit code 1 naming the failures, `vip report` names them, and the same command runs them again; without the
flag the sweep stops, its one line saying the finished rows are kept and naming --keep-going."""

from __future__ import annotations

import html
import json
import re

from conftest import error_lines
from plugin_helpers import methods_fixture

FLAKY_METHODS = '''
import os

from vip_method_example import NearestCentroid


class FailsAtSeedTwo(NearestCentroid):
    """Raises in fit at seed 2 until VIP_TEST_FLAKY_FIXED is set (a licence server back up)."""

    def fit(self, data, context):
        if context.seed == 2 and not os.environ.get("VIP_TEST_FLAKY_FIXED"):
            raise RuntimeError("licence server gone")
        return super().fit(data, context)
'''

flaky = methods_fixture("flaky_methods", FLAKY_METHODS, {"flaky": "FailsAtSeedTwo"})


def _sweep(cli, data, out, methods: str, *extra: str):
    return cli("benchmark", "--data", data, "--backbone", "toy", "--methods", methods, "--shots", "1,2", "--seeds",
               "1,2", "--epochs", "1", "--views", "1", "--workers", "0", "--out", out, *extra)


def test_keep_going_records_the_failed_rows_runs_the_others_and_exits_1(cli, flaky, tmp_path):
    """A named method failing in one row stopped the whole sweep. With --keep-going its failed rows are recorded in
    results.json (method, shots, seed, error), every other row runs, the tables are printed with the failures named
    under them, and the sweep ends with one error line and exit code 1."""
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, flaky, out, "zeroshot,flaky", "--keep-going")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: 2 of the 6 rows run now failed (flaky 1-shot seed 2, flaky 2-shot "
                                         "seed 2); the others are kept in "), err
    assert "Traceback" not in err
    document = json.loads((out / "results.json").read_text())
    assert sorted((row["method"], row["shots"], row["seed"]) for row in document["rows"]) == [
        ("flaky", 1, 1), ("flaky", 2, 1), ("zeroshot", 0, 1), ("zeroshot", 0, 2)]
    failed = document["config"]["last_sweep"]["failed_rows"]
    assert [(row["method"], row["shots"], row["seed"]) for row in failed] == [("flaky", 1, 2), ("flaky", 2, 2)]
    assert all("RuntimeError: licence server gone" in row["error"] and "\n" not in row["error"] for row in failed)
    assert "failed, not in the tables: flaky 1-shot seed 2 (" in printed
    assert "4 rows run, 2 failed, 0 resumed from earlier" in printed

    code, _, err = cli("report", out)
    assert code == 0, err
    page = html.unescape(re.sub(r"<[^>]+>", "", (out / "report.html").read_text()))
    assert "2 rows of the last sweep failed (--keep-going): flaky 1-shot seed 2 (" in page
    assert "has not finished" not in page  # failed, not missing: named once, with why


def test_a_rerun_after_keep_going_runs_the_failed_rows_only(cli, flaky, tmp_path, monkeypatch):
    """The failed rows are not stored, so the same command runs them (and only them) again; once they finish,
    results.json no longer names any failure."""
    out = tmp_path / "bench"
    code, _, err = _sweep(cli, flaky, out, "zeroshot,flaky", "--keep-going")
    assert code == 1, err
    monkeypatch.setenv("VIP_TEST_FLAKY_FIXED", "1")
    code, _, err = _sweep(cli, flaky, out, "zeroshot,flaky", "--json")
    assert code == 0, err
    assert "resuming " in err and "4 finished rows skipped, 2 to run" in err
    document = json.loads((out / "results.json").read_text())
    assert len(document["rows"]) == 6 and "failed_rows" not in document["config"]["last_sweep"]


def test_without_keep_going_the_stop_names_it_and_the_kept_rows(cli, flaky, tmp_path):
    """The stop said only the method's error: its one line now says that the rows finished before it are kept and
    that --keep-going runs the others."""
    out = tmp_path / "bench"
    code, _, err = _sweep(cli, flaky, out, "zeroshot,flaky")
    line, = error_lines(err)
    assert code == 1 and "RuntimeError: licence server gone" in line, err
    assert f"the rows finished before it are kept in {out / 'results.json'}" in line
    assert "add --keep-going to record the rows that fail and run the others" in line
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 3  # zeroshot's 2, flaky's 1-shot seed 1


def test_keep_going_records_a_built_in_methods_unexpected_error(cli, flaky, tmp_path, monkeypatch):
    """A built-in method raising an unexpected exception in one row ended the sweep as a bug in vip, naming neither
    the row nor what was kept; it now names both, and with --keep-going it is that row's failure, "Type: message"
    on one line, and the other rows run."""
    from vipcli.methods.linear_probe import LinearProbe

    fit = LinearProbe.fit

    def failing_fit(self, data, context):
        if context.seed == 1:
            raise ValueError("solver\ndiverged")
        return fit(self, data, context)

    monkeypatch.setattr(LinearProbe, "fit", failing_fit)
    out = tmp_path / "bench"
    code, _, err = _sweep(cli, flaky, out, "linear-probe")  # without --keep-going: the stop names the row and it
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: unexpected ValueError: solver diverged in linear-probe 1-shot seed 1 "
                                         "(this is a bug in vip; "), err
    assert line.endswith("no row had finished before it; add --keep-going to record the rows that fail and run the "
                         "others)")
    code, printed, err = _sweep(cli, flaky, out, "linear-probe", "--keep-going", "--json")
    assert code == 1 and "error: 2 of the 4 rows run now failed (linear-probe 1-shot seed 1, linear-probe 2-shot "\
                         "seed 1)" in err, err
    document = json.loads(printed)
    assert [row["error"] for row in document["failed_rows"]] == ["ValueError: solver diverged"] * 2
    assert [(row["shots"], row["seed"]) for row in document["rows"]] == [(1, 2), (2, 2)]


def test_keep_going_is_refused_with_speed(cli, flaky, tmp_path):
    """--speed runs no rows: --keep-going with it is refused before any work, as the other sweep options are."""
    code, _, err = cli("benchmark", "--speed", "--data", flaky, "--keep-going", "--out", tmp_path / "speed")
    line, = error_lines(err)
    assert code == 2 and "--keep-going does not apply" in line, err


def test_a_keep_going_sweep_whose_every_row_failed_records_them_and_report_says_why(cli, flaky, tmp_path):
    """Every row failing left no record of why: results.json now lists them, and `vip report` refuses the folder
    naming the failure rather than only "has no finished rows"."""
    out = tmp_path / "bench"
    code, _, err = cli("benchmark", "--data", flaky, "--backbone", "toy", "--methods", "flaky", "--shots", "1",
                       "--seeds", "2", "--epochs", "1", "--views", "1", "--workers", "0", "--out", out, "--keep-going")
    assert code == 1 and "error: the row run now failed (flaky 1-shot seed 2); " in err, err
    document = json.loads((out / "results.json").read_text())
    assert document["rows"] == [] and len(document["config"]["last_sweep"]["failed_rows"]) == 1
    code, _, err = cli("report", out)
    line, = error_lines(err)
    assert code == 1 and "has no finished rows: the 1 row of its last sweep failed (first flaky: " in line, err
    assert "RuntimeError: licence server gone" in line


def test_the_python_interface_takes_keep_going_and_returns_the_failed_rows(flaky, tmp_path):
    """`vipcli.api.benchmark(keep_going=True)` is `--keep-going`: the result lists the failed rows (no exception), and
    a value that is not True or False is refused by name."""
    import pytest

    from vipcli import api

    sweep = dict(methods=["flaky"], shots=[1], seeds=[1, 2], backbone="toy", epochs=1, views=1, workers=0,
                 out=tmp_path / "bench", quiet=True)
    result = api.benchmark(flaky, keep_going=True, **sweep)
    assert [(row["seed"], row["error"].startswith("method 'flaky'")) for row in result.failed_rows] == [(2, True)]
    assert [row["seed"] for row in result.rows] == [1] and "1 failed" in repr(result)
    with pytest.raises(api.VipError, match=r"^keep_going='yes': expected True or False"):
        api.benchmark(flaky, keep_going="yes", **sweep)


def test_keep_going_runs_again_one_by_one_the_rows_trained_with_a_failing_one(cli, flaky, tmp_path, monkeypatch):
    """CoOp's four rows train together; one failing seed recorded all four as failed, the seed that trains well
    included. With --keep-going the group's rows now run again one by one: only seed 2's rows are recorded as
    failed, and the tables, results.json and results.csv hold seed 1's."""
    from vipcli import fitting

    def failing_at_seed_two(fit):
        def fit_or_fail(methods, data, contexts, *args, **kwargs):
            if any(context.seed == 2 for context in (contexts if isinstance(contexts, list) else [contexts])):
                raise RuntimeError("NaN loss")
            return fit(methods, data, contexts, *args, **kwargs)
        return fit_or_fail

    monkeypatch.setattr(fitting, "fit_sgd_many", failing_at_seed_two(fitting.fit_sgd_many))
    monkeypatch.setattr(fitting, "fit_sgd", failing_at_seed_two(fitting.fit_sgd))
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, flaky, out, "coop", "--keep-going")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: 2 of the 4 rows run now failed (coop 1-shot seed 2, coop 2-shot seed "
                                         "2)"), err
    assert "coop's 4 rows trained together (1-shot seed 1, 1-shot seed 2, 2-shot seed 1, 2-shot seed 2) failed: " \
           "running them one by one (--keep-going)" in err
    document = json.loads((out / "results.json").read_text())
    assert [(row["shots"], row["seed"]) for row in document["rows"]] == [(1, 1), (2, 1)]
    assert [(row["shots"], row["seed"], row["error"]) for row in document["config"]["last_sweep"]["failed_rows"]] == [
        (1, 2, "RuntimeError: NaN loss"), (2, 2, "RuntimeError: NaN loss")]
    assert [line.split(",")[1:3] for line in (out / "results.csv").read_text().splitlines()[1:]] == [["1", "1"],
                                                                                                      ["2", "1"]]
    assert "2 rows run, 2 failed, 0 resumed from earlier" in printed


def test_a_sweep_whose_every_row_failed_prints_no_empty_tables(cli, flaky, tmp_path):
    """Every row failing printed three tables with no row under a "0-shot" column, titled "test accuracy %, seed",
    the failures as "not in the tables", and a last line naming a shots.png that no row drew: now the failures, said
    to leave no tables, and the counts, naming only the files written."""
    out = tmp_path / "bench"
    code, printed, err = cli("benchmark", "--data", flaky, "--backbone", "toy", "--methods", "flaky", "--shots", "1",
                             "--seeds", "2", "--epochs", "1", "--views", "1", "--workers", "0", "--out", out,
                             "--keep-going")
    assert code == 1, err
    assert "test accuracy %" not in printed and "0-shot" not in printed
    assert printed.startswith("no row has finished, so there are no tables; failed: flaky 1-shot seed 2 ("), printed
    assert "0 rows run, 1 failed, 0 resumed from earlier" in printed
    assert not (out / "shots.png").exists() and "shots.png" not in printed, printed
    assert "results.csv, summary.csv, results.json, split.json" in printed, printed


UNBUILT_METHODS = '''
import os

from vip_method_example import NearestCentroid


class FailsToBuild(NearestCentroid):
    """Raises in __init__ (its first build, before any row) until VIP_TEST_BUILD_FIXED is set (a model file back)."""

    def __init__(self, setup, settings=None, stored=None):
        if not os.environ.get("VIP_TEST_BUILD_FIXED"):
            raise OSError("weights file gone")
        super().__init__(setup, settings, stored)
'''

unbuilt = methods_fixture("unbuilt_methods", UNBUILT_METHODS, {"unbuilt": "FailsToBuild"})


def test_keep_going_fails_only_the_rows_of_a_method_whose_first_build_fails(cli, unbuilt, tmp_path, monkeypatch):
    """A method whose build failed before its first row stopped the whole sweep, --keep-going or not. With the flag
    its rows are now recorded as failed with the reason, the other methods' rows run and are written, the sweep
    ends with exit code 1, and the same command builds it again and runs its rows only."""
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, unbuilt, out, "zeroshot,unbuilt", "--keep-going")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: 4 of the 6 rows run now failed (unbuilt 1-shot seed 1, unbuilt "
                                         "1-shot seed 2, unbuilt 2-shot seed 1 and 1 more); the others are kept in "), err
    assert "Traceback" not in err
    assert "unbuilt's 4 rows (1-shot seed 1, 1-shot seed 2, 2-shot seed 1, 2-shot seed 2) are recorded as failed, " \
           "and the sweep goes on (--keep-going)" in " ".join(err.split()), err
    document = json.loads((out / "results.json").read_text())
    assert [(row["method"], row["seed"]) for row in document["rows"]] == [("zeroshot", 1), ("zeroshot", 2)]
    failed = document["config"]["last_sweep"]["failed_rows"]
    assert [(row["method"], row["shots"], row["seed"]) for row in failed] == [
        ("unbuilt", 1, 1), ("unbuilt", 1, 2), ("unbuilt", 2, 1), ("unbuilt", 2, 2)]
    assert all("failed to build" in row["error"] and "OSError: weights file gone" in row["error"] for row in failed)
    assert "2 rows run, 4 failed, 0 resumed from earlier" in printed

    monkeypatch.setenv("VIP_TEST_BUILD_FIXED", "1")
    code, _, err = _sweep(cli, unbuilt, out, "zeroshot,unbuilt", "--keep-going")
    assert code == 0 and "2 finished rows skipped, 4 to run" in err, err
    document = json.loads((out / "results.json").read_text())
    assert len(document["rows"]) == 6 and "failed_rows" not in document["config"]["last_sweep"]


def test_keep_going_records_a_sweep_whose_only_method_fails_to_build(cli, unbuilt, tmp_path):
    """Every row to run failing at its method's build left nothing behind: results.json now lists them (no image is
    encoded for them), and the sweep ends with exit code 1 naming them."""
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, unbuilt, out, "unbuilt", "--keep-going")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: all 4 rows run now failed (unbuilt 1-shot seed 1, "), err
    document = json.loads((out / "results.json").read_text())
    assert document["rows"] == [] and len(document["config"]["last_sweep"]["failed_rows"]) == 4
    assert "0 image views encoded" in printed, printed


def test_without_keep_going_a_failed_first_build_names_it(cli, unbuilt, tmp_path):
    """A method failing its first build stops the sweep, before any image is encoded, its one line naming
    --keep-going as a row's failure does, and what is kept."""
    out = tmp_path / "bench"
    assert _sweep(cli, unbuilt, out, "zeroshot")[0] == 0
    code, _, err = _sweep(cli, unbuilt, out, "zeroshot,unbuilt")
    line, = error_lines(err)
    assert code == 1 and "method 'unbuilt' from distribution unbuilt-dist failed to build: OSError: weights file " \
                         "gone" in line, err
    assert f"the rows finished before it are kept in {out / 'results.json'}: run the same command again to " \
           "resume, or add --keep-going to record the rows that fail and run the others" in line, line
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 2
