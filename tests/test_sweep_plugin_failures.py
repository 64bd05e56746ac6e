"""A method plugin that fails during `vip benchmark`: left out of `--methods all` with one warning, one error line when
named; a plugin's sys.exit() is its failure, never vip's exit; a batch-dependent plugin is refused in a sweep too."""

from __future__ import annotations

import html
import json
import re
import sys

from conftest import error_lines
from plugin_helpers import install_distribution, methods_fixture

FAILING_METHODS = '''
import sys
from dataclasses import dataclass

from vip_method_example import NearestCentroid


@dataclass
class ExitingSettings:
    temperature: float = 0.01

    def validate(self):
        sys.exit(7)


class ExitsInValidate(NearestCentroid):
    """sys.exit(7) in its Settings.validate(), before anything is built."""

    Settings = ExitingSettings


class ExitsOnBuild(NearestCentroid):
    """sys.exit(3) in __init__, at the sweep's first build."""

    def __init__(self, setup, settings=None, stored=None):
        sys.exit(3)


class FailsAtThirdBuild(NearestCentroid):
    """Builds at the sweep's check (and once more there, on meta: vip's device probe) and for its first row, then
    raises (a licence server gone)."""

    builds = 0

    def __init__(self, setup, settings=None, stored=None):
        type(self).builds += 1
        if type(self).builds > 3:
            raise RuntimeError("licence server gone")
        super().__init__(setup, settings, stored)


class ExitsInFit(NearestCentroid):
    """sys.exit(4) in fit at seed 2: the seed-1 rows finish."""

    def fit(self, data, context):
        if context.seed == 2:
            sys.exit(4)
        return super().fit(data, context)


class CentersValInPlace(NearestCentroid):
    """Fit centres the validation features in place: the features every method's rows share."""

    def fit(self, data, context):
        data.val.x.sub_(data.val.x.mean(dim=0))
        return super().fit(data, context)


class BatchCentered(NearestCentroid):
    """forward centres each class's logits on the batch's mean: an image's logits depend on the others."""

    def forward(self, image_features):
        logits = super().forward(image_features)
        return logits - logits.mean(dim=0)
'''

PLUGINS = {"validate-exits": "ExitsInValidate", "exits": "ExitsOnBuild", "late": "FailsAtThirdBuild", "fit-exits": "ExitsInFit",
           "centers-val": "CentersValInPlace", "batch-centered": "BatchCentered"}


# the plugins above, each in a distribution of its own, and a small lesion data set
failing = methods_fixture("failing_methods", FAILING_METHODS, PLUGINS)


def _all_is(monkeypatch, *ids: str) -> None:
    """`--methods all` as if only `ids` were installed (every built-in would take a minute per sweep)."""
    import vipcli.benchmark

    monkeypatch.setattr(vipcli.benchmark, "installed_methods", lambda: (list(ids), {}))


def _sweep(cli, data, out, methods: str, shots: str = "1,2", seeds: str = "1,2"):
    return cli("benchmark", "--data", data, "--backbone", "toy", "--methods", methods, "--shots", shots, "--seeds",
               seeds, "--epochs", "1", "--views", "1", "--workers", "0", "--out", out, "--json")


def test_methods_all_leaves_out_a_plugin_that_fails_during_the_sweep_and_keeps_its_finished_rows(
        cli, failing, tmp_path, monkeypatch):
    """A plugin brought in by `--methods all` whose __init__ called sys.exit() ended vip with the plugin's exit code
    and no word; one that failed at a later build or in fit stopped the whole sweep. Each is now left out with one
    warning, the rows it finished stay in results.json, the others' rows all run, and `vip report` lists none of
    the left-out rows as missing."""
    from vipcli.report.benchmark import missing_rows

    _all_is(monkeypatch, "zeroshot", "linear-probe", "validate-exits", "exits", "late", "fit-exits")
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, failing, out, "all")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning: method")]
    assert len(warned) == 4, err
    assert warned.pop(0).startswith("warning: method 'validate-exits' (from validate-exits-dist 0.1.0) failed in "
                                    "Settings.validate: SystemExit: 7 (it tried to end the process)")
    assert warned[0].startswith("warning: method 'exits' from distribution exits-dist failed to build: SystemExit: 3 "
                                "(it tried to end the process)") and "left out of --methods all" in warned[0]
    assert "method 'late' from distribution late-dist failed to build: RuntimeError: licence server gone" in warned[1]
    assert warned[2].startswith("warning: method 'fit-exits' (from fit-exits-dist 0.1.0) failed in fit: SystemExit: 4 "
                                "(it tried to end the process)") and warned[2].endswith("(the rows it finished are kept)")
    document = json.loads((out / "results.json").read_text())
    held = [(row["method"], row["shots"], row["seed"]) for row in document["rows"]]
    # the sweep runs shot by shot: each failed at its 1-shot seed-2 row, and kept its 1-shot seed-1 row
    assert [row for row in held if row[0] in ("late", "fit-exits")] == [("late", 1, 1), ("fit-exits", 1, 1)]
    assert sum(row[0] == "linear-probe" for row in held) == 4 and sum(row[0] == "zeroshot" for row in held) == 2
    assert document["config"]["last_sweep"]["methods"] == ["zeroshot", "linear-probe"]
    assert missing_rows(document) == [] and json.loads(printed)["trained"] == len(held)
    code, _, err = cli("report", out)
    assert code == 0 and "has not finished" not in (out / "report.html").read_text(), err


def test_a_named_or_built_in_method_failing_during_the_sweep_is_one_error_line(cli, failing, tmp_path, monkeypatch):
    """Named in --methods, the same failures stop the sweep in one line (exit code 1, never the plugin's own),
    the rows finished before it kept; `vip train` too no longer exits with a plugin __init__'s sys.exit() code."""
    out = tmp_path / "named"
    code, _, err = _sweep(cli, failing, out, "zeroshot,fit-exits")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: method 'fit-exits' (from fit-exits-dist 0.1.0) failed in fit: "
                                         "SystemExit: 4 (it tried to end the process) (a plugin must not call "
                                         "sys.exit()"), err
    assert "Traceback" not in err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(row["method"], row["seed"]) for row in rows if row["method"] == "fit-exits"} == {("fit-exits", 1)}

    code, _, err = _sweep(cli, failing, tmp_path / "validate", "zeroshot,validate-exits")
    line, = error_lines(err)
    assert code == 1 and "failed in Settings.validate: SystemExit: 7 (it tried to end the process)" in line, err
    code, _, err = _sweep(cli, failing, tmp_path / "exits", "exits")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: method 'exits' from distribution exits-dist failed to build: "
                                         "SystemExit: 3 (it tried to end the process)"), err
    code, _, err = cli("train", "--data", failing, "--backbone", "toy", "--method", "exits", "--shots", "1",
                       "--epochs", "1", "--views", "1", "--workers", "0", "--out", tmp_path / "run")
    line, = error_lines(err)
    assert code == 1 and "failed to build: SystemExit: 3 (it tried to end the process)" in line, err


def test_methods_all_stops_when_a_failed_plugin_changed_the_shared_features(cli, failing, tmp_path, monkeypatch):
    """A plugin left out after changing the features every row shares would leave the other methods' later rows
    computed on other features: that failure still stops the sweep, in one line."""
    _all_is(monkeypatch, "centers-val", "linear-probe")
    code, _, err = _sweep(cli, failing, tmp_path / "bench", "all", shots="1", seeds="1")
    line, = error_lines(err)
    assert code == 1 and "method 'centers-val'" in line and "fit changed data.val.x in place" in line, err
    assert "left out" not in err


def test_a_batch_dependent_plugin_is_refused_in_a_sweep_as_in_train(cli, failing, tmp_path, monkeypatch):
    """A plugin whose logits for an image depend on the other images of its batch was refused by `vip train` but
    benchmarked without a word (its figures depend on the evaluation's batch size). A sweep now checks it once per
    method, before its first row is written: one error line when named, left out of `--methods all`."""
    import vipcli.methods.contract as contract

    checked = []
    check = contract.check_batch_independence
    monkeypatch.setattr(contract, "check_batch_independence",
                        lambda method, *args: checked.append(method.id) or check(method, *args))
    code, _, err = _sweep(cli, failing, tmp_path / "named", "batch-centered")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: method 'batch-centered' (from batch-centered-dist 0.1.0) failed in "
                                         "forward: forward gives an image other probabilities alone than in a batch "
                                         "of "), err
    assert not json.loads((tmp_path / "named" / "results.json").read_text()
                          if (tmp_path / "named" / "results.json").exists() else '{"rows": []}')["rows"]

    _all_is(monkeypatch, "batch-centered", "fit-exits", "zeroshot")
    checked.clear()
    code, _, err = _sweep(cli, failing, tmp_path / "all", "all", seeds="1")
    assert code == 0 and "'batch-centered' is left out of --methods all" in err, err
    document = json.loads((tmp_path / "all" / "results.json").read_text())
    assert {row["method"] for row in document["rows"]} == {"fit-exits", "zeroshot"}
    assert checked == ["batch-centered", "fit-exits"]  # once per plugin and sweep (2 rows of fit-exits), no built-in


EXITING_BACKBONES = '''
import sys

from vip_backbones.toy import ToyBackbone


class ExitsOnLoad(ToyBackbone):
    def __init__(self, arch=None, pretrained=None, device="cpu"):
        sys.exit(5)


class ExitsOnEncode(ToyBackbone):
    def encode_image(self, images):
        sys.exit(6)
'''


def test_a_backbone_plugin_calling_sys_exit_is_its_failure_not_vips_exit(cli, site, tmp_path, monkeypatch):
    """A backbone plugin's __init__ or encode_image calling sys.exit() ended vip with the plugin's exit code and no
    line; it is now the plugin's one line (exit code 1)."""
    (site / "exiting_backbones.py").write_text(EXITING_BACKBONES)
    install_distribution(site, "exiting-backbones", "exits-on-load = exiting_backbones:ExitsOnLoad\n"
                                                     "exits-on-encode = exiting_backbones:ExitsOnEncode")
    monkeypatch.delitem(sys.modules, "exiting_backbones", raising=False)
    code, _, err = cli("backbones", "check", "exits-on-load")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: backbone 'exits-on-load' (from exiting-backbones 0.1.0) failed in "
                                         "ExitsOnLoad.__init__: SystemExit: 5 (it tried to end the process)"), err
    code, _, err = cli("backbones", "check", "exits-on-encode")
    line, = error_lines(err)
    assert code == 1 and "encode_image: raised SystemExit: 6 (it tried to end the process)" in line, err


def test_a_plugin_left_out_of_methods_all_is_named_with_its_failure_in_results_json_and_the_report(
        cli, failing, tmp_path, monkeypatch):
    """A plugin that `--methods all` left out was named in one stderr warning only: results.json kept its finished
    rows with no word of why it had no others, and `vip report` showed them (or nothing of a plugin that failed at
    its first build) without a word of the failure. results.json's `last_sweep.left_out` now says where and why each
    failed, and the report names it above the tables; a later sweep without it says nothing of it."""
    _all_is(monkeypatch, "zeroshot", "exits", "late")
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, failing, out, "all")
    assert code == 0, err
    left_out = json.loads((out / "results.json").read_text())["config"]["last_sweep"]["left_out"]
    assert set(left_out) == {"exits", "late"}
    assert left_out["exits"]["failed_in"] == "its first build, before any row"
    assert "failed to build: SystemExit: 3" in left_out["exits"]["error"]
    assert left_out["late"]["failed_in"] == "1-shot seed 2"
    assert "RuntimeError: licence server gone" in left_out["late"]["error"]
    assert json.loads(printed)["config"]["last_sweep"]["left_out"] == left_out  # the --json document, vip.benchmark's
    code, _, err = cli("report", out)
    assert code == 0, err
    page = html.unescape(re.sub(r"<[^>]+>", "", (out / "report.html").read_text()))
    assert ("Left out of the last sweep (--methods all), when it failed: Method 'exits' from distribution exits-dist "
            "failed to build: SystemExit: 3 (it tried to end the process) (in its first build, before any row): it has "
            "no row in the tables.") in page
    assert ("Method 'late' from distribution late-dist failed to build: RuntimeError: licence server gone (in 1-shot "
            "seed 2): the tables show the 1 row it finished before.") in page

    code, _, err = _sweep(cli, failing, out, "zeroshot")  # the last sweep left nothing out: no note
    assert code == 0, err
    assert "left_out" not in json.loads((out / "results.json").read_text())["config"]["last_sweep"]
    cli("report", out)
    assert "Left out of the last sweep" not in (out / "report.html").read_text()
