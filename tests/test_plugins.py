"""Third-party backbones: discovered through entry points, trained and predicted like built-ins."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import tiny_train_args, error_lines
from plugin_helpers import METHOD_EXAMPLE, install_distribution

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vip-plugin-example"


def _listed(cli, kind: str) -> tuple[int, dict, str]:
    """`vip {kind} list --json`: its exit code, the entries by id, and its stderr."""
    code, out, err = cli(kind, "list", "--json")
    return code, {entry["id"]: entry for entry in json.loads(out)}, err


def _check_error(cli, backbone_id: str) -> str:
    """The one error line `vip backbones check BACKBONE_ID` fails with (exit code 1)."""
    code, _, err = cli("backbones", "check", backbone_id)
    line, = error_lines(err)
    assert code == 1, err
    return line


def test_third_party_plugin_is_listed_trained_and_predicted(cli, site, isic_small, tmp_path):
    install_distribution(site, "vip-plugin-example", "tiny-example = vip_plugin_example:TinyExampleBackbone",
                         EXAMPLE / "vip_plugin_example.py")
    code, listed, _ = _listed(cli, "backbones")
    assert listed["tiny-example"]["distribution"] == "vip-plugin-example" and "clip" in listed

    run = tmp_path / "run"
    args = ["train", "--data", isic_small, "--backbone", "tiny-example", "--shots", "4", "--epochs", "3",
            "--views", "2", "--out", run, "--workers", "0"]
    code, out, err = cli(*args)
    assert code == 0, err
    code, out, err = cli("predict", isic_small / "test", "--model", run, "--json", "--explain")
    assert code == 0, err
    predictions = json.loads(out)["predictions"]
    assert len(predictions) == 8 and predictions[0]["explanation"][0]["class"] == "melanoma"


def test_broken_plugin_names_its_distribution_and_others_keep_working(cli, site, isic_small, tiny_clip, tmp_path):
    install_distribution(site, "broken-plugin", "broken = vip_no_such_module:Backbone")
    code, _, err = cli("train", "--data", isic_small, "--backbone", "broken", "--out", tmp_path / "x")
    assert code == 1 and "from distribution broken-plugin failed to import" in err and len(error_lines(err)) == 1 and "Traceback" not in err
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "ok"))
    assert code == 0, err


def test_a_plugin_registering_a_built_in_backbone_id_is_shadowed(cli, site):
    install_distribution(site, "impostor-plugin", "clip = impostor:ClipBackbone")
    code, out, err = cli("backbones", "list", "--json")
    rows = [entry for entry in json.loads(out) if entry["id"] == "clip"]
    assert code == 0 and [row["distribution"] for row in rows] == ["vipcli", "impostor-plugin"]
    assert not rows[0]["shadowed"] and not rows[0]["conflict"] and "rename the id" in rows[1]["shadowed"]
    shadow_lines = [line for line in err.splitlines() if "shadowed" in line]
    assert len(shadow_lines) == 1 and "impostor-plugin" in shadow_lines[0] and "pyproject.toml" in shadow_lines[0]
    code, out, err = cli("backbones", "list")
    assert "clip (shadowed" in out and "impostor-plugin 0.1.0" in out  # the row says so (the cell wraps)
    from vipcli.registry import backbone_class

    assert backbone_class("clip").__name__ == "ClipBackbone" and backbone_class("clip").__module__.startswith("vip_")


def test_two_plugins_registering_a_built_in_backbone_id_are_both_shadowed(cli, site):
    install_distribution(site, "impostor-plugin", "clip = impostor:ClipBackbone")
    install_distribution(site, "other-plugin", "clip = other:ClipBackbone")
    code, out, err = cli("backbones", "list", "--json")
    rows = [entry for entry in json.loads(out) if entry["id"] == "clip"]
    assert code == 0 and rows[0]["distribution"] == "vipcli" and not rows[0]["conflict"], err
    assert sorted(row["distribution"] for row in rows[1:]) == ["impostor-plugin", "other-plugin"]
    assert all("rename the id" in row["shadowed"] for row in rows[1:]) and "registered twice" not in err
    from vipcli.registry import backbone_class

    assert backbone_class("clip").__module__.startswith("vip_")  # the built-in, never disabled


def test_two_third_party_backbones_under_one_id_name_both_distributions(cli, site):
    install_distribution(site, "impostor-plugin", "tiny = impostor:Tiny")
    install_distribution(site, "other-plugin", "tiny = other:Tiny")
    code, listed, err = _listed(cli, "backbones")
    assert code == 0 and "'tiny' is registered twice" in err and "impostor-plugin" in err and "other-plugin" in err
    assert listed["tiny"]["conflict"] and not listed["toy"]["conflict"]  # only the conflicting id is disabled
    from vipcli.errors import VipError
    from vipcli.registry import backbone_class

    with pytest.raises(VipError, match="registered twice"):
        backbone_class("tiny")
    assert backbone_class("toy").__name__ == "ToyBackbone"


def test_a_mistyped_method_or_backbone_id_suggests_the_installed_one(cli, isic_small):
    for args, line in ((["--method", "vipp"], "error: can't find method 'vipp'; did you mean 'vip'? (installed "),
                       (["--backbone", "toyy"], "error: can't find backbone 'toyy'; did you mean 'toy'? (installed ")):
        code, _, err = cli("train", "--data", isic_small, *args)
        assert code == 2 and err.startswith(line), err
    code, _, err = cli("train", "--data", isic_small, "--backbone", "nope")
    assert code == 2 and "did you mean" not in err, err
    # the method as papers write it (ViP, CoOp): the id is lower case, which difflib did not suggest
    code, _, err = cli("benchmark", "--data", isic_small, "--methods", "zeroshot,ViP")
    assert code == 2 and err.startswith("error: can't find method 'ViP'; did you mean 'vip'? (installed "), err

def test_unknown_backbone_lists_the_installed_ones(cli, isic_small):
    code, _, err = cli("train", "--data", isic_small, "--backbone", "nope")
    assert code == 2 and "can't find backbone 'nope'" in err and "biomedclip, clip" in err




def test_third_party_method_is_listed_trained_predicted_and_benchmarked(cli, site, isic_small, tiny_clip, tmp_path):
    install_distribution(site, "vip-method-example", "centroid = vip_method_example:NearestCentroid",
                         METHOD_EXAMPLE / "vip_method_example.py", group="vip.methods")
    code, listed, err = _listed(cli, "methods")
    assert code == 0 and listed["centroid"]["distribution"] == "vip-method-example"
    assert listed["centroid"]["uses_shots"] and not listed["centroid"]["trains"] and "vip" in listed

    run = tmp_path / "run"
    code, out, err = cli(*tiny_train_args(isic_small, tiny_clip, run, "--method", "centroid", "-o", "temperature=0.05",
                                          "--json"))
    assert code == 0, err
    assert json.loads(out)["test"]["n"] == 8
    code, out, err = cli("predict", isic_small / "test", "--model", run, "--json")
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 8
    code, out, err = cli("benchmark", "--data", isic_small, "--arch", tiny_clip, "--pretrained", "none",
                         "--methods", "centroid,zeroshot", "--shots", "1,2", "--seeds", "1", "--views", "2",
                         "--out", tmp_path / "bench", "--device", "cpu", "--workers", "0", "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert {(r["method"], r["shots"]) for r in rows} == {("zeroshot", 0), ("centroid", 1), ("centroid", 2)}


def test_broken_method_plugin_is_named_and_the_others_keep_working(cli, site, isic_small, tiny_clip, tmp_path):
    install_distribution(site, "broken-method", "broken = no_such_module:Method", group="vip.methods")
    install_distribution(site, "impostor-method", "vip = impostor:Vip", group="vip.methods")
    install_distribution(site, "rival-method", "coop = rival:Coop\nshared = rival:Shared", group="vip.methods")
    install_distribution(site, "other-method", "shared = other:Shared", group="vip.methods")
    code, out, err = cli("methods", "list", "--json")
    listed = {(entry["id"], entry["distribution"]): entry for entry in json.loads(out)}
    assert code == 0 and "broken-method" in listed["broken", "broken-method"]["problem"] and "failed to import" in err
    assert not listed["vip", "vipcli"]["problem"] and not listed["vip", "vipcli"]["shadowed"]
    assert "rename the id" in listed["vip", "impostor-method"]["shadowed"]  # the built-in wins, never disabled
    shared = [entry for (name, _), entry in listed.items() if name == "shared"]
    assert len(shared) == 1 and "registered twice" in shared[0]["problem"]  # two third parties: still an error
    assert not listed["coop", "vipcli"]["problem"]
    assert len([line for line in err.splitlines() if "shadowed" in line]) == 2  # vip and coop, once each
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "x", "--method", "broken"))
    assert code == 1 and "method 'broken' from distribution broken-method failed to import" in err
    assert "its entry point 'broken = no_such_module:Method' names module no_such_module, which is not installed" in err
    assert "(fix the module name under [project.entry-points.\"vip.methods\"] in broken-method's pyproject.toml" in err
    assert len(error_lines(err)) == 1
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "y", "--method", "shared"))
    assert code == 1 and "registered twice" in err and "rival-method" in err and "other-method" in err
    import vipcli.plugins

    vipcli.plugins._warned_shadows.clear()  # a new process: `vip train` warns on its own
    code, _, err = cli(*tiny_train_args(isic_small, tiny_clip, tmp_path / "z", "--method", "coop"))
    assert code == 0, err
    assert [line for line in err.splitlines() if "shadowed" in line] == [  # once per process, naming the fix
        "warning: method 'coop' of rival-method 0.1.0 (rival:Coop) is shadowed by vip's built-in 'coop', which is "
        "used instead: rename the id under [project.entry-points.\"vip.methods\"] in rival-method's pyproject.toml "
        "and reinstall it"]


MEDICAL = Path(__file__).resolve().parents[1] / "examples" / "vip-plugin-medical"


def test_medical_plugins_are_a_few_lines_on_the_public_bases(site, tiny_clip, tmp_path):
    from tiny_models import write_tiny_hf_clip
    from vipcli.errors import VipError
    from vipcli.registry import load_backbone

    install_distribution(site, "vip-plugin-medical", "quiltnet = vip_plugin_medical:QuiltNetBackbone\n"
                         "plip = vip_plugin_medical:PlipBackbone", MEDICAL / "vip_plugin_medical.py")
    with pytest.raises(VipError, match="could not load weights 'hf-hub:wisdomik/QuiltNet-B-32': not in the local"):
        load_backbone("quiltnet")  # its defaults point at the hub (offline here)
    with pytest.raises(VipError, match="could not load weights 'vinid/plip' for CLIPModel: not in the local cache"):
        load_backbone("plip")
    quilt = load_backbone("quiltnet", str(tiny_clip), "none", warn_random=False)  # the options still work
    plip = load_backbone("plip", None, str(write_tiny_hf_clip(tmp_path / "plip")))
    assert type(quilt).__name__ == "QuiltNetBackbone" and plip.end_token_id == plip.pad_token_id


def test_methods_check_of_a_built_in_id_names_the_plugin_it_shadows(cli, site):
    """`vip methods check vip` with a plugin registered as `vip` checks the built-in, and says so (its quiet run
    must not swallow the warning)."""
    install_distribution(site, "impostor-method", "vip = impostor:Vip", group="vip.methods")
    code, out, err = cli("methods", "check", "vip")
    assert code == 0, err
    assert "method 'vip' passes" in out
    shadow_lines = [line for line in err.splitlines() if "shadowed" in line]
    assert len(shadow_lines) == 1 and "impostor-method" in shadow_lines[0] and "rename the id" in shadow_lines[0]


def test_a_method_registered_as_a_backbone_or_the_reverse_says_which_group_it_belongs_to(cli, site):
    shutil.copy(METHOD_EXAMPLE / "vip_method_example.py", site / "vip_method_example.py")
    install_distribution(site, "mixed-up", "centroid-bb = vip_method_example:NearestCentroid")
    install_distribution(site, "mixed-up-methods", "toy-method = vip_backbones.toy:ToyBackbone", group="vip.methods")
    code, listed, err = _listed(cli, "backbones")
    assert code == 0 and "names a method (a vipcli.methods.Method), registered under vip.backbones" in \
        listed["centroid-bb"]["problem"] and listed["centroid-bb"]["id"] == "centroid-bb"  # --json: the problem field
    assert _check_error(cli, "centroid-bb") == (
        "error: backbone 'centroid-bb' from distribution mixed-up: its entry point 'centroid-bb = "
        "vip_method_example:NearestCentroid' names a method (a vipcli.methods.Method), registered under vip.backbones "
        "(move that line under [project.entry-points.\"vip.methods\"] in mixed-up's pyproject.toml and reinstall it "
        "(pip install DIR); other backbones still work)")
    code, _, err = cli("methods", "show", "toy-method")
    line, = error_lines(err)
    assert code == 1 and "names a backbone (a vipcli.backbone.Backbone), registered under vip.methods (move that " \
                         "line under [project.entry-points.\"vip.backbones\"] in mixed-up-methods's pyproject.toml" in line


def test_an_entry_point_naming_no_plugin_class_is_one_line_naming_what_it_names(cli, site, tmp_path):
    """A module, a constant, a function or an unrelated class under vip.backbones / vip.methods: one error line
    naming the entry point and what it names, and `vip backbones list` marks the id unavailable."""
    module = tmp_path / "wrong_kinds.py"
    module.write_text("COUNT = 42\n\ndef build(arch=None, pretrained=None, device=None):\n    return 'no'\n\n\n"
                      "class Plain:\n    def __init__(self, arch=None, pretrained=None, device=None):\n        pass\n")
    install_distribution(site, "wrong-kinds", "bb-int = wrong_kinds:COUNT\nbb-function = wrong_kinds:build\n"
                         "bb-plain = wrong_kinds:Plain\nbb-module = wrong_kinds", module)
    install_distribution(site, "wrong-methods", "m-plain = wrong_kinds:Plain", group="vip.methods")
    expected = {"bb-int": "an int", "bb-function": "function build", "bb-plain": "class Plain",
                "bb-module": "module wrong_kinds"}
    for backbone_id, names in expected.items():
        code, _, err = cli("backbones", "check", backbone_id)
        line, = error_lines(err)
        assert code == 1 and "Traceback" not in err and "bug in vip" not in err, err
        assert line.startswith(f"error: backbone '{backbone_id}' from distribution wrong-kinds: its entry point "
                               f"'{backbone_id} = ") and f"names {names}, not a subclass of vipcli.backbone.Backbone" in line
        assert "[project.entry-points.\"vip.backbones\"] in wrong-kinds's pyproject.toml" in line
    code, listed, err = _listed(cli, "backbones")
    assert code == 0 and all("not a subclass" in listed[i]["problem"] for i in expected) and not listed["toy"]["problem"]
    code, _, err = cli("methods", "show", "m-plain")
    line, = error_lines(err)
    assert code == 1 and "its entry point 'm-plain = wrong_kinds:Plain' names class Plain, not a subclass of " \
                         "vipcli.methods.Method" in line


def test_a_plugin_module_missing_a_dependency_names_it_and_how_to_install_it(cli, site, tmp_path):
    """It said "failed to import: ModuleNotFoundError: ... (reinstall or fix DIST)"; the package to install is now
    named, and other backbones keep working."""
    module = tmp_path / "needs_missing_dep.py"
    module.write_text("import vip_no_such_dependency.runtime  # noqa: F401\n")
    install_distribution(site, "needs-dep", "needs-dep = needs_missing_dep:Backbone", module)
    assert _check_error(cli, "needs-dep") == (
        "error: backbone 'needs-dep' from distribution needs-dep failed to import: its module needs_missing_dep needs "
        "vip_no_such_dependency, which is not installed (ModuleNotFoundError: No module named "
        "'vip_no_such_dependency') (install the package that provides vip_no_such_dependency (pip install "
        "vip_no_such_dependency, if that is its name), or reinstall needs-dep with its dependencies; other backbones "
        "still work)")
    code, listed, err = _listed(cli, "backbones")
    assert code == 0 and "needs vip_no_such_dependency" in listed["needs-dep"]["problem"] and not listed["toy"]["problem"]


def test_methods_all_leaves_out_a_broken_method_plugin_with_a_warning(site, capsys):
    """`vip benchmark --methods all` with any broken method plugin installed refused the whole sweep ("... other
    methods still work"); it now runs every method that loads and names each one it leaves out."""
    from types import SimpleNamespace

    from vipcli.benchmark import method_ids, warn_left_out

    install_distribution(site, "broken-method", "broken = no_such_module:Method", group="vip.methods")
    install_distribution(site, "rival-a", "shared = rival_a:Shared", group="vip.methods")
    install_distribution(site, "rival-b", "shared = rival_b:Shared", group="vip.methods")
    config = SimpleNamespace(methods=("all",))
    ids = method_ids(config)
    assert "vip" in ids and "coop" in ids and "broken" not in ids and "shared" not in ids
    warn_left_out(config)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("warning: method 'broken' from distribution broken-method failed to "
                                                   "import") and lines[0].endswith("'broken' is left out of --methods all")
    assert "'shared' is registered twice" in lines[1]
    warn_left_out(SimpleNamespace(methods=("vip", "broken")))  # named: used, and refused where it is loaded
    assert capsys.readouterr().err == "" and method_ids(SimpleNamespace(methods=("vip", "broken"))) == ["vip", "broken"]


def test_a_plugin_module_that_exits_on_import_is_named_and_the_listing_goes_on(cli, site, tmp_path, monkeypatch):
    """A module calling sys.exit() or running an argparse parser when imported ended `vip backbones list` and
    `vip methods list` with its own exit code (0: nothing listed, no word why); an exception outside Exception
    gave a traceback. Each is now the plugin's one line, and the others are listed."""
    import sys

    # what the parser reads is vip's command line, not pytest's (a bare `pytest` has no argument it refuses)
    monkeypatch.setattr(sys, "argv", ["vip", "methods", "list", "--json"])
    exits = tmp_path / "exits_on_import.py"
    exits.write_text("import sys\nsys.exit(0)\n")
    parses = tmp_path / "parses_argv_on_import.py"
    parses.write_text("import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--foo')\n"
                      "parser.parse_args()\n")
    odd = tmp_path / "raises_base_exception.py"
    odd.write_text("class Odd(BaseException):\n    pass\n\nraise Odd('not an Exception')\n")
    install_distribution(site, "exits-dist", "exits = exits_on_import:Backbone", exits)
    install_distribution(site, "odd-dist", "odd = raises_base_exception:Backbone", odd)
    install_distribution(site, "parses-dist", "parses = parses_argv_on_import:Method", parses, group="vip.methods")
    assert _check_error(cli, "exits") == (
        "error: backbone 'exits' from distribution exits-dist failed to import: its module exits_on_import tried to "
        "end the process (SystemExit: 0) (a module must not call sys.exit() or parse the command line when imported: "
        "report it to the authors of exits-dist; other backbones still work)")
    assert "failed to import: Odd: not an Exception" in _check_error(cli, "odd")
    code, listed, err = _listed(cli, "backbones")
    assert code == 0 and "tried to end the process" in listed["exits"]["problem"] and not listed["toy"]["problem"]
    assert "Odd: not an Exception" in listed["odd"]["problem"] and "Traceback" not in err
    code, listed, err = _listed(cli, "methods")
    assert code == 0 and "(SystemExit: 2)" in listed["parses"]["problem"] and not listed["vip"]["problem"]
    # the parser's usage and its own "error:" line no longer come before vip's: the warning says they were left out
    assert "usage:" not in err and "unrecognized arguments" not in err, err
    assert "it printed 2 lines while importing, left out here: VIP_DEBUG=1 shows them" in listed["parses"]["problem"]


def test_a_plugin_raising_keyboard_interrupt_on_import_is_its_failure_and_a_real_ctrl_c_still_stops(
        cli, site, tmp_path):
    """A module raising KeyboardInterrupt when imported read as vip's "interrupted" (exit 130), as if the user had
    pressed Ctrl-C. With no signal at vip's handler it is now the plugin's one line (exit 1); a SIGINT that does
    arrive while a module is imported still stops the command as Ctrl-C does."""
    raises = tmp_path / "raises_interrupt.py"
    raises.write_text("raise KeyboardInterrupt\n")
    signals = tmp_path / "sends_sigint.py"
    signals.write_text("import signal\nsignal.raise_signal(signal.SIGINT)\n")
    install_distribution(site, "interrupt-dist", "interrupts = raises_interrupt:Backbone", raises)
    install_distribution(site, "signal-dist", "signals = sends_sigint:Backbone", signals)
    assert _check_error(cli, "interrupts") == (
        "error: backbone 'interrupts' from distribution interrupt-dist failed to import: its module raises_interrupt "
        "raised KeyboardInterrupt, though no Ctrl-C or SIGTERM reached vip (a module must not raise KeyboardInterrupt "
        "when imported: report it to the authors of interrupt-dist; other backbones still work)")
    code, _, err = cli("backbones", "check", "signals")
    assert code == 130 and error_lines(err) == ["error: interrupted; nothing half-written was left behind"], err


def test_what_a_plugin_prints_on_import_goes_to_stderr_after_it_loads(cli, site, tmp_path):
    """A plugin that prints a banner and warns while imported put the banner into `vip backbones list --json`'s
    stdout; both now reach stderr, whole, once the import is done, and stdout holds the JSON alone."""
    chatty = tmp_path / "chatty_plugin.py"
    chatty.write_text("import sys\nprint('chatty plugin 1.0 loaded')\n"
                      "print('chatty: fast kernels missing, using the slow path', file=sys.stderr)\n"
                      "from vip_plugin_example import TinyExampleBackbone as Chatty\n")
    shutil.copy(EXAMPLE / "vip_plugin_example.py", site / "vip_plugin_example.py")
    install_distribution(site, "chatty-dist", "chatty = chatty_plugin:Chatty", chatty)
    code, out, err = cli("backbones", "list", "--json")
    assert code == 0 and "chatty" in {entry["id"] for entry in json.loads(out)}, out
    assert "chatty plugin 1.0 loaded" in err and "fast kernels missing, using the slow path" in err, err


LLM_KEY = "sk-proj-Tq7Wz2Lx9Vb4Nc8Md1Kf5Hg3"  # what OPENAI_API_KEY (vip symptoms generate's default) holds
OTHER_TOKEN = "Zr4Yp8Qs2Wm6Xt0Lk3Jh"  # another variable named like a secret (--api-key-env may name any)


def _shows_no_llm_secret(text: str) -> bool:
    return not any(secret[i:i + 6] in text for secret in (LLM_KEY[8:], OTHER_TOKEN) for i in range(len(secret) - 5))


def test_a_plugins_own_error_text_shows_no_llm_key_nor_token(cli, site, tmp_path, monkeypatch):
    """A plugin's exception text was masked for the Hugging Face token only: one that echoed the LLM key
    (or any other secret-named variable) printed it in vip's one line. Every known secret is now masked,
    in a failed import and in a method's failed build."""
    monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)
    monkeypatch.setenv("MY_LLM_TOKEN", OTHER_TOKEN)
    leaky = tmp_path / "leaky_on_import.py"
    leaky.write_text(f"raise RuntimeError('bad config: key={LLM_KEY} token={OTHER_TOKEN}')\n")
    builds = tmp_path / "leaky_build.py"
    builds.write_text("import os\nfrom vip_method_example import NearestCentroid\n\n\nclass Leaky(NearestCentroid):\n"
                      "    def __init__(self, setup, settings=None, stored=None):\n"
                      "        raise ValueError('refused ' + os.environ['OPENAI_API_KEY'] + ' ' + os.environ['MY_LLM_TOKEN'])\n")
    shutil.copy(METHOD_EXAMPLE / "vip_method_example.py", site / "vip_method_example.py")
    install_distribution(site, "leaky-dist", "leaky = leaky_on_import:Backbone", leaky)
    install_distribution(site, "leaky-method", "leaky-build = leaky_build:Leaky", builds, group="vip.methods")
    line = _check_error(cli, "leaky")
    assert "failed to import: RuntimeError: bad config: key=" in line and "[redacted]" in line, line
    assert _shows_no_llm_secret(line), line
    code, _, err = cli("methods", "check", "leaky-build")
    line, = error_lines(err)
    assert code == 1 and "failed to build: ValueError: refused" in line and _shows_no_llm_secret(line), line


def test_a_distributions_metadata_is_parsed_once_while_unchanged(site, monkeypatch):
    """Every plugin lookup scans the group's entry points; each one's metadata was parsed again each time (20-35 ms
    a lookup, several per benchmark row). It is now parsed once per process, and again when its file changes."""
    from importlib.metadata import PathDistribution

    from vipcli.plugins import distribution_of

    install_distribution(site, "cached-dist", "cached = cached_dist:Backbone")
    entry, = PathDistribution(site / "cached_dist-0.1.0.dist-info").entry_points
    parsed = []
    real = PathDistribution.metadata
    monkeypatch.setattr(PathDistribution, "metadata", property(lambda dist: parsed.append(1) or real.fget(dist)))

    assert [distribution_of(entry) for _ in range(3)] == [("cached-dist", "0.1.0")] * 3
    assert len(parsed) == 1

    metadata = site / "cached_dist-0.1.0.dist-info" / "METADATA"  # edited in place, same length: still seen
    metadata.write_text(metadata.read_text().replace("Version: 0.1.0", "Version: 0.2.0"))
    assert distribution_of(entry) == ("cached-dist", "0.2.0") and len(parsed) == 2


FRAGILE_BUILD = ("import os\nfrom vip_method_example import NearestCentroid\n\n\nclass Fragile(NearestCentroid):\n"
                 "    def __init__(self, setup, settings=None, stored=None):\n"
                 "        raise RuntimeError('no licence server; sent ' + os.environ['OPENAI_API_KEY'])\n")


def test_methods_all_leaves_out_a_plugin_whose_first_build_fails_and_runs_it_once_fixed(cli, site, tmp_path,
                                                                                          monkeypatch):
    """A third-party method whose __init__ raised stopped `vip benchmark --methods all` at its first build, though
    `all` leaves out the methods that cannot load. It is now left out with one masked warning and is not among the
    sweep's recorded methods; named in --methods it still fails in one line before any image is encoded; fixed, a
    rerun of the same command runs its rows alone."""
    import sys

    from vipcli.lesion_world import write_dataset

    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # the module is rewritten below: no stale .pyc
    monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)
    shutil.copy(METHOD_EXAMPLE / "vip_method_example.py", site / "vip_method_example.py")
    (site / "fragile_build.py").write_text(FRAGILE_BUILD)
    install_distribution(site, "fragile-method", "fragile = fragile_build:Fragile", group="vip.methods")
    monkeypatch.delitem(sys.modules, "fragile_build", raising=False)  # and again when the test ends
    data = tmp_path / "lesions"
    write_dataset(data, {"train": 2, "val": 1, "test": 2}, seed=0)
    out = tmp_path / "bench"
    args = ["benchmark", "--data", data, "--backbone", "toy", "--shots", "1", "--seeds", "1", "--epochs", "1",
            "--views", "1", "--workers", "0", "--json"]

    code, _, err = cli(*args, "--methods", "zeroshot,fragile", "--out", tmp_path / "named")
    line, = error_lines(err)
    assert code == 1 and line.startswith("error: method 'fragile' from distribution fragile-method failed to build: "
                                         "RuntimeError: no licence server; sent sk-[redacted]"), err
    assert _shows_no_llm_secret(err) and not (tmp_path / "named").exists()  # refused before anything was encoded

    code, printed, err = cli(*args, "--methods", "all", "--out", out)
    assert code == 0, err
    warned = [line for line in err.splitlines() if "fragile" in line]
    assert len(warned) == 1 and warned[0].startswith(
        "warning: method 'fragile' from distribution fragile-method failed to build: RuntimeError: no licence server; "
        "sent sk-[redacted]") and warned[0].endswith("'fragile' is left out of --methods all"), err
    assert _shows_no_llm_secret(err)
    stored = json.loads((out / "results.json").read_text())
    methods = stored["config"]["last_sweep"]["methods"]
    assert "fragile" not in methods and {"vip", "zeroshot"} <= set(methods)
    assert {row["method"] for row in stored["rows"]} == set(methods)
    assert json.loads(printed)["trained"] == len(methods)

    (site / "fragile_build.py").write_text(FRAGILE_BUILD.replace("raise RuntimeError('no licence server; sent ' + "
                                                                 "os.environ['OPENAI_API_KEY'])",
                                                                 "super().__init__(setup, settings, stored)"))
    sys.modules.pop("fragile_build", None)
    code, printed, err = cli(*args, "--methods", "all", "--out", out)
    assert code == 0 and "failed to build" not in err and "left out" not in err, err
    assert "10 methods (biomedcoop, clap, coop, fragile," in err.splitlines()[0]  # the plan line: it runs
    assert (json.loads(printed)["trained"], json.loads(printed)["skipped"]) == (1, len(methods))
    stored = json.loads((out / "results.json").read_text())
    assert "fragile" in stored["config"]["last_sweep"]["methods"]
    assert [row["method"] for row in stored["rows"]].count("fragile") == 1


def test_what_a_c_library_writes_to_stderr_on_import_is_not_lost(site, tmp_path, capfd):
    """What a plugin's module writes to file descriptor 2 itself (a C library's message) is not held as its Python
    output is: holding the descriptor would lose it if the import crashed. It reaches stderr, beside vip's one line."""
    from vipcli.cli.main import main

    (site / "c_library_noise.py").write_text("import os\nos.write(2, b'libfoo: no AVX2, using the slow path\\n')\n"
                                             "raise RuntimeError('libfoo failed to start')\n")
    install_distribution(site, "noisy-dist", "noisy = c_library_noise:Backbone")
    code = main(["backbones", "check", "noisy"])
    err = capfd.readouterr().err
    assert code == 1 and "libfoo: no AVX2, using the slow path" in err, err
    assert error_lines(err) == ["error: backbone 'noisy' from distribution noisy-dist failed to import: RuntimeError: "
                                "libfoo failed to start (reinstall or fix noisy-dist; other backbones still work)"], err


def test_inside_scans_held_the_installed_entry_points_are_read_once(site):
    """A 32-row sweep made about 190 plugin lookups, each reading every installed distribution's entry points
    again (3-5 ms of CPU). Inside `scans_held` each group is read at its first lookup and kept until the block
    ends; outside, a lookup sees what is installed now."""
    from vipcli.plugins import PluginGroup, scans_held

    group = PluginGroup("vip.backbones", "backbone")
    install_distribution(site, "held-first", "held-first = held_first:Backbone")
    with scans_held():
        assert "held-first" in group.ids()
        install_distribution(site, "held-later", "held-later = held_later:Backbone")
        with scans_held():  # re-entrant: an inner block keeps the outer block's scan
            assert "held-later" not in group.ids()
        assert "held-later" not in group.ids()
    assert "held-later" in group.ids()  # the block ended: read afresh
    install_distribution(site, "held-third", "held-third = held_third:Backbone")
    assert "held-third" in group.ids()  # outside any block every lookup reads what is installed now


def test_a_command_reads_each_plugin_groups_entry_points_once_and_the_next_command_afresh(cli, site, monkeypatch):
    """Outside `vip benchmark`, every plugin lookup of a command read every installed distribution's entry points
    again: `vip methods list` 12 times, `vip demo` 62 times (3-8 ms of CPU each). A command now reads each group
    once; the next command (here, in the same process) sees what is installed by then."""
    from vipcli.plugins import PluginGroup

    real, scanned = PluginGroup._scan_installed, []
    monkeypatch.setattr(PluginGroup, "_scan_installed", lambda group: scanned.append(group.group) or real(group))
    code, stdout, stderr = cli("methods", "list")
    assert code == 0, stderr
    assert scanned == ["vip.methods"] and "tip-adapter-f" in stdout
    install_distribution(site, "listed-later", "listed-later = listed_later:Method", group="vip.methods")
    code, stdout, stderr = cli("methods", "list")
    assert code == 0, stderr
    assert scanned == ["vip.methods", "vip.methods"] and "listed-later" in stdout


def test_a_backbone_class_missing_a_member_is_unavailable_naming_it(cli, site, tmp_path):
    """A plugin that forgot `describe` (an abstract member of Backbone) was 'failed in Cls.__init__: TypeError:
    Can't instantiate abstract class ... (check --arch/--pretrained; ...)', and listed as available."""
    example = (EXAMPLE / "vip_plugin_example.py").read_text()
    describe = example.index("    def describe(self):")
    assert "\n    def " not in example[describe:]  # describe is the module's last method: drop it
    module = tmp_path / "forgets_describe.py"
    module.write_text(example[:describe])
    install_distribution(site, "forgets-describe", "no-describe = forgets_describe:TinyExampleBackbone", module)
    expected = ("backbone 'no-describe' (from forgets-describe 0.1.0) failed in describe: TinyExampleBackbone does "
                "not define describe, which every backbone must, so it cannot be built (define describe in "
                "TinyExampleBackbone (README 'Writing a backbone plugin' lists each member")
    code, listed, err = _listed(cli, "backbones")
    assert code == 0 and listed["no-describe"]["problem"].startswith(expected), listed["no-describe"]
    assert _check_error(cli, "no-describe").startswith(f"error: {expected}")
    sys.modules.pop("forgets_describe", None)
