"""Every call vip makes into a method plugin's code goes through one seam (`vipcli.plugins.plugin_code`): a failure
outside fit/forward/record... (its class's fits_in_batches(), its Settings' __post_init__ or annotations, an
overridden train()/eval(), merge_weights()) is the plugin's one line, left out of `--methods all` with one warning."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import error_lines
from plugin_helpers import methods_fixture

SEAM_METHODS = '''
from __future__ import annotations

from dataclasses import dataclass

from vip_method_example import NearestCentroid
from vipcli.methods.coop import Coop


class BatchesRaise(Coop):
    """Its fits_in_batches() raises: vip asks it to group a sweep's rows."""

    @classmethod
    def fits_in_batches(cls):
        raise RuntimeError("fits_in_batches broke")


ASKED = []  # one entry per call of CountedBatches.fits_in_batches


class CountedBatches(Coop):
    """Counts how often vip asks whether its rows train together."""

    @classmethod
    def fits_in_batches(cls):
        ASKED.append(1)
        return super().fits_in_batches()


class Unsummarised(NearestCentroid):
    """Nearest centroid, summed up by its docstring alone.

    More words that `vip methods show` keeps for --json's doc."""

    summary = ""


class Bare(NearestCentroid):
    summary = ""


class BatchesClaimed(NearestCentroid):
    """Says its rows train batched, which only a PromptMethod that learns context can."""

    @classmethod
    def fits_in_batches(cls):
        return True


@dataclass
class CheckedSettings:
    temperature: float = 0.01

    def __post_init__(self):
        if self.temperature > 0.001:
            raise ValueError("temperature must be at most 0.001")


class PostInitRaises(NearestCentroid):
    """Its Settings' __post_init__ refuses the default with a ValueError."""

    Settings = CheckedSettings


@dataclass
class UnreadableSettings:
    temperature: Temperature = 0.01  # noqa: F821 - a name the module never defines


class UnreadableAnnotations(NearestCentroid):
    """Its Settings' annotation names a class that does not exist (text, under `from __future__ import annotations`)."""

    Settings = UnreadableSettings


class Level:
    """A setting type of the plugin's own: converting `-o level=VALUE` calls it."""

    def __init__(self, text):
        if not str(text).isdigit():
            raise RuntimeError(f"no level {text}")
        self.value = int(text)


@dataclass
class LevelSettings:
    level: Level = None


class OwnSettingType(NearestCentroid):
    Settings = LevelSettings


class TrainRaises(NearestCentroid):
    """Overrides nn.Module.train, which eval() calls, and breaks when switched to evaluation."""

    def train(self, mode=True):
        if not mode:
            raise RuntimeError("no eval mode")
        return super().train(mode)


class MergeWeightsRaise(Coop):
    """Overrides merge_weights (vip report draws it)."""

    def merge_weights(self):
        raise RuntimeError("no weights")
'''

SEAMS = {"batches-raise": "BatchesRaise", "batches-claimed": "BatchesClaimed", "post-init": "PostInitRaises",
         "unreadable": "UnreadableAnnotations", "train-raises": "TrainRaises", "merge-raises": "MergeWeightsRaise",
         "own-type": "OwnSettingType", "counted": "CountedBatches",
         "unsummarised": "Unsummarised", "bare": "Bare"}


# the plugins above, each in a distribution of its own, and a small lesion data set
seams = methods_fixture("seam_methods", SEAM_METHODS, SEAMS)


def _sweep(cli, data, out, methods: str):
    return cli("benchmark", "--data", data, "--backbone", "toy", "--methods", methods, "--shots", "1", "--seeds",
               "1,2", "--epochs", "1", "--views", "1", "--workers", "0", "--out", out, "--json")


FAULTS = {  # method -> the start of its one line, after "method 'ID' (from ID-dist 0.1.0) failed in "
    "batches-raise": "fits_in_batches: RuntimeError: fits_in_batches broke",
    "batches-claimed": "fits_in_batches: fits_in_batches() says its rows train together, but only a PromptMethod",
    "post-init": "Settings: ValueError: temperature must be at most 0.001",
    "train-raises": "train: RuntimeError: no eval mode",
}


def test_methods_all_leaves_out_a_plugin_failing_outside_the_members_vip_wrapped(cli, seams, tmp_path, monkeypatch):
    """Each of these failures stopped a `--methods all` sweep with "unexpected RuntimeError ... a bug in vip" (or
    ValueError, from fit_sgd_many for a plugin claiming batched rows); each plugin is now left out with one warning
    naming it and the member, and the other methods' rows all run."""
    import vipcli.benchmark

    monkeypatch.setattr(vipcli.benchmark, "installed_methods", lambda: (["zeroshot", *FAULTS], {}))
    out = tmp_path / "bench"
    code, printed, err = _sweep(cli, seams, out, "all")
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning: method")]
    assert len(warned) == len(FAULTS), err
    for line, (name, fault) in zip(warned, FAULTS.items()):
        assert line.startswith(f"warning: method '{name}' (from {name}-dist 0.1.0) failed in {fault}"), line
        assert f"'{name}' is left out of --methods all" in line
    assert "bug in vip" not in err and "Traceback" not in err
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {(row["method"], row["seed"]) for row in rows} == {("zeroshot", 1), ("zeroshot", 2)}


@pytest.mark.parametrize("name", FAULTS)
def test_a_named_plugin_failing_outside_the_wrapped_members_is_one_error_line(cli, seams, tmp_path, name):
    """Named in --methods, the same failures are one `error:` line (exit code 1) naming the plugin, its
    distribution and the member, never "a bug in vip"."""
    code, _, err = _sweep(cli, seams, tmp_path / "named", f"zeroshot,{name}")
    line, = error_lines(err)
    assert code == 1 and line.startswith(f"error: method '{name}' (from {name}-dist 0.1.0) failed in {FAULTS[name]}"), err
    assert "bug in vip" not in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["post-init", "train-raises"])
def test_vip_train_names_a_plugin_failing_outside_the_wrapped_members(cli, seams, tmp_path, name):
    """`vip train --method X` says the same one line, and writes no run folder."""
    code, _, err = cli("train", "--data", seams, "--backbone", "toy", "--method", name, "--shots", "1", "--epochs",
                       "1", "--views", "1", "--workers", "0", "--out", tmp_path / "run")
    line, = error_lines(err)
    assert code == 1 and line.startswith(f"error: method '{name}' (from {name}-dist 0.1.0) failed in {FAULTS[name]}")
    assert not (tmp_path / "run").exists()


def test_methods_check_asks_whether_the_rows_train_together_as_a_sweep_does(cli, seams):
    """`vip methods check batches-claimed` passed a method whose fits_in_batches() says yes without being a
    PromptMethod that learns context; the first `vip benchmark` with it then failed."""
    code, _, err = cli("methods", "check", "batches-claimed")
    line, = error_lines(err)
    assert code == 1 and line.startswith(f"error: method 'batches-claimed' (from batches-claimed-dist 0.1.0) failed in "
                                         f"{FAULTS['batches-claimed']}"), err
    code, out, err = cli("methods", "check", "counted")  # a CoOp that asks its base: it may say yes
    assert code == 0 and "passes" in out + err, err


def test_settings_whose_annotations_cannot_be_evaluated_are_refused_when_loaded(cli, seams, tmp_path):
    """A Settings annotation naming an undefined class was NameError "a bug in vip" in `vip methods show`, `vip train`
    and a sweep; the class is now refused when loaded: `vip methods list` marks it, the others keep working."""
    fault = ("failed in Settings: the type annotations of UnreadableSettings cannot be evaluated (NameError: name "
             "'Temperature' is not defined)")
    code, _, err = cli("methods", "show", "unreadable")
    line, = error_lines(err)
    assert code == 1 and fault in line and "import every name they use" in line, err
    code, _, err = cli("methods", "list")
    assert code == 0 and fault in err and "'unreadable' is unavailable" in err, err
    code, _, err = _sweep(cli, seams, tmp_path / "bench", "zeroshot,unreadable")
    line, = error_lines(err)
    assert code == 1 and fault in line, err


def test_a_stored_setting_refused_by_the_plugins_post_init_names_it_at_load(seams):
    """Rebuilding a run's method passes the stored settings through the plugin's __post_init__: its ValueError was
    "a bug in vip" in `vip predict`; it is the plugin's one error now."""
    from vipcli.methods import restore_method
    from vipcli.plugins import PluginError

    with pytest.raises(PluginError) as raised:
        restore_method("post-init", None, {"temperature": 0.5}, {}, {}, "runs/x")
    assert str(raised.value).startswith("method 'post-init' (from post-init-dist 0.1.0) failed in Settings: "
                                        "ValueError: temperature must be at most 0.001")


def test_a_setting_type_of_the_plugins_own_that_raises_names_the_plugin(seams):
    """Converting a setting's text calls its type: a plugin's own type raising RuntimeError was "a bug in vip"."""
    from vipcli.methods import make_settings, method_class
    from vipcli.plugins import PluginError

    cls = method_class("own-type")
    assert make_settings(cls, {"level": "3"}, "own-type").level.value == 3
    with pytest.raises(PluginError, match=r"^method 'own-type' \(from own-type-dist 0.1.0\) failed in Settings: "
                                          r"RuntimeError: no level x"):
        make_settings(cls, {"level": "x"}, "own-type")


def test_an_overridden_merge_weights_is_guarded_like_fit(seams):
    """`vip report` reads merge_weights(); a plugin's failure in it names the plugin, not vip."""
    from vipcli.methods import MethodSetup, build_method
    from vipcli.plugins import PluginError
    from vipcli.registry import load_backbone

    method = build_method("merge-raises", MethodSetup(load_backbone("toy", None, None), ["melanoma", "nevus"]))
    with pytest.raises(PluginError, match=r"^method 'merge-raises' \(from merge-raises-dist 0.1.0\) failed in "
                                          r"merge_weights: RuntimeError: no weights"):
        method.merge_weights()


def test_a_built_in_failing_in_the_seam_stays_a_bug_in_vip(monkeypatch):
    """vip's own method failing in its Settings.validate() is not blamed on a plugin: it is raised as it is."""
    from vipcli.methods import method_class
    from vipcli.methods.base import make_settings
    from vipcli.methods.prompting import ContextSettings

    monkeypatch.setattr(ContextSettings, "validate", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        make_settings(method_class("coop"), {}, "coop")


def test_a_sweep_asks_a_plugin_whether_its_rows_train_together_once(cli, seams, tmp_path, monkeypatch):
    """`validate` asked `fits_in_batches()` before any work and the grouping of the rows asked it again for every
    row (five times for four rows), so a plugin could be asked to change its mind; it is now asked once, and its
    four rows train together as it said (once, not once more by the batched loop's own check)."""
    import vipcli.benchmark

    real, groups = vipcli.benchmark.run_rows_together, []
    monkeypatch.setattr(vipcli.benchmark, "run_rows_together",
                        lambda name, cls, jobs, *rest, **kw: groups.append(jobs) or real(name, cls, jobs, *rest, **kw))
    code, printed, err = _sweep(cli, seams, tmp_path / "bench", "counted")  # shots 1, seeds 1,2
    assert code == 0, err
    assert sys.modules["seam_methods"].ASKED == [1]
    code, printed, err = cli("benchmark", "--data", seams, "--backbone", "toy", "--methods", "counted", "--shots",
                             "1,2", "--seeds", "1,2", "--epochs", "1", "--views", "1", "--workers", "0", "--out",
                             tmp_path / "bench2", "--json")
    assert code == 0, err
    assert sys.modules["seam_methods"].ASKED == [1, 1] and len(json.loads(printed)["rows"]) == 4
    assert groups == [[(1, 1), (1, 2)], [(1, 1), (1, 2), (2, 1), (2, 2)]]


def test_a_plugin_without_a_summary_is_shown_with_its_docstrings_first_line(cli, seams):
    """`vip methods show` printed "unsummarised: " and a blank for a plugin that left `summary` out."""
    code, printed, err = cli("methods", "show", "unsummarised")
    assert code == 0 and printed.splitlines()[0] == "unsummarised: Nearest centroid, summed up by its docstring alone."
    code, printed, err = cli("methods", "show", "unsummarised", "--json")
    assert code == 0 and json.loads(printed)["summary"] == "Nearest centroid, summed up by its docstring alone."
    code, printed, err = cli("methods", "show", "bare")  # nothing to say: the id alone, no dangling colon
    assert code == 0 and printed.splitlines()[0] == "bare"
