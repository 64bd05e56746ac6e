"""The contract against plugin mistakes found in review: learned context ignored, randomness in eval,
a tokenizer that loses words, a remembered pass that outlives an edit, broken entry points in the
list, and plugin text read as Rich markup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import error_lines
from plugin_helpers import install_distribution, install_sample_plugins
from vipcli.errors import VipError
from vipcli.registry import load_backbone

NEW_ROWS = ("same prompts, same features", "one word apart", "long prompts, last word", "features follow embeds",
            "same images, same features", "no state between calls")
EXAMPLE_MODULE = Path(__file__).resolve().parents[1] / "examples" / "vip-plugin-example" / "vip_plugin_example.py"


@pytest.fixture
def samples(site):
    install_sample_plugins(site)
    return site


@pytest.mark.parametrize("plugin, member, reason", [
    ("ignores-embeds", "encode_text_embeds", "leaves its feature unchanged: build the tower's input from `embeds`, "
                                             "not from `ids`: the learned context would be ignored"),
    ("detaches-embeds", "encode_text_embeds", "no gradient reaches the embeddings it is given"),
    ("noisy-images", "encode_image", "encode_image is not deterministic in eval: the same images give features"),
    ("noisy-text", "encode_text_embeds", "encode_text_embeds is not deterministic in eval: the same prompts give"),
    ("loses-words", "tokenize", "'a photo of a melanoma.' and 'a photo of a nevus.' get the same token ids: the "
                                "tokenizer loses words"),
    ("reads-length-only", "encode_text_embeds", "(one word apart) get the same feature: the text tower does not read "
                                                "every word"),
    ("positions-in-place", "encode_text_embeds", "encode_text_embeds changed the `embeds` it was given in place (e.g. "
                                                 "embeds += positions)"),
    ("text-features-elsewhere", "encode_text_embeds", "text features are on meta, not on cpu where `device` says the "
                                                      "towers are"),
])
def test_new_flaws_fail_at_load_naming_the_member_and_the_fix(samples, plugin, member, reason):
    with pytest.raises(VipError) as error:
        load_backbone(plugin)
    message = str(error.value)
    assert message.startswith(f"backbone '{plugin}' (from sample-plugins 0.1.0) failed in {member}: "), message
    assert reason in message and "bug in vip" not in message and "\n" not in message


def test_backbones_check_fails_a_tower_that_ignores_its_embeddings_in_one_line(cli, samples):
    code, out, err = cli("backbones", "check", "ignores-embeds")
    assert code == 1 and len(error_lines(err)) == 1 and "Traceback" not in err
    assert "fails 1 of" in err and "first: features follow embeds" in err
    assert "build the tower's input from `embeds`, not from `ids`" in err


def test_backbones_check_fails_functional_dropout_in_encode_image(cli, samples):
    code, out, err = cli("backbones", "check", "noisy-images", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    row = rows["same images, same features"]
    assert code == 1 and row["ok"] is False and row["member"] == "encode_image" and "remove randomness" in row["detail"]
    assert rows["encode_image"]["ok"] is True  # shapes and dtype are right: only the repeat tells


def test_backbones_check_fails_image_features_that_depend_on_the_batch(cli, samples):
    """Batch statistics in encode_image passed every check, and results then depended on batch size and on
    which images the cache already held."""
    code, out, _ = cli("backbones", "check", "batch-stats-images", "--json")
    row = {row["check"]: row for row in json.loads(out)["checks"]}["same images, same features"]
    assert code == 1 and row["ok"] is False and "alone and in a batch" in row["detail"]
    assert "freeze() must put every module in eval()" in row["detail"]


def test_backbones_check_fails_image_features_that_depend_on_earlier_calls(cli, samples):
    """State kept between calls (a running mean behind a memo of the last call) passed the repeat check, and
    features then depended on which images were encoded before, and on what the cache already held."""
    code, out, _ = cli("backbones", "check", "stateful-images", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    row = rows["no state between calls"]
    assert code == 1 and rows["encode_image"]["ok"] is True
    assert row["ok"] is False and row["member"] == "encode_image"
    assert "before and after encoding other images: a feature must not depend on earlier calls" in row["detail"]
    with pytest.raises(VipError) as error:  # at load too (one image: its repeat passes), before any data is encoded
        load_backbone("stateful-images")
    assert str(error.value).startswith("backbone 'stateful-images' (from sample-plugins 0.1.0) failed in "
                                       "encode_image: encode_image gives the same images features ")


def test_image_features_whose_norm_overflows_fail_at_load(samples):
    """Features times 1e30 passed as finite, then normalised to NaN: chance-level results, no error."""
    with pytest.raises(VipError, match="so large that their norm overflows float32"):
        load_backbone("huge-image-features")


def test_a_sound_plugin_passes_the_new_rows(cli, samples):
    code, out, err = cli("backbones", "check", "pad-is-end", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 0, err
    for name in NEW_ROWS:
        assert rows[name]["ok"] is True, rows[name]
    assert rows["one word apart"]["detail"].startswith("'a photo of a melanoma.' / 'a photo of a nevus.'")
    assert rows["features follow embeds"]["detail"].endswith("the gradient reaches it")


def test_a_vocabulary_without_the_first_pairs_words_passes_on_the_next_pair(cli, samples):
    """A chest X-ray tokenizer that lacks 'melanoma' and 'nevus' loses no words it knows."""
    code, out, err = cli("backbones", "check", "domain-vocabulary", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 0 and rows["one word apart"]["ok"] is True, err
    assert not rows["one word apart"]["detail"].startswith("'a photo of a melanoma.'")


@pytest.fixture(scope="module")
def builtin_models(tmp_path_factory):
    """(id, arch, pretrained) of every built-in backbone, with tiny random models (nothing downloaded)."""
    from tiny_models import (write_tiny_biomedclip_config, write_tiny_clip_config, write_tiny_hf_clip,
                             write_tiny_siglip)

    folder = tmp_path_factory.mktemp("builtins")
    for name in ("clip", "biomedclip", "hf-clip", "siglip"):
        (folder / name).mkdir()
    return [("clip", str(write_tiny_clip_config(folder / "clip")), "none"),
            ("biomedclip", str(write_tiny_biomedclip_config(folder / "biomedclip")), "none"),
            ("hf-clip", None, str(write_tiny_hf_clip(folder / "hf-clip" / "model"))),
            ("siglip", None, str(write_tiny_siglip(folder / "siglip" / "model"))),
            ("toy", None, None)]


def test_every_built_in_backbone_passes_the_new_checks(builtin_models):
    from vipcli.backbone_contract import run_checks

    for backbone_id, arch, pretrained in builtin_models:
        backbone = load_backbone(backbone_id, arch, pretrained, check=False, warn_random=False)
        rows = {check.name: check for check in run_checks(backbone, images=2)}
        failed = {name: row.detail for name, row in rows.items() if row.ok is not True}
        assert not failed, (backbone_id, failed)
        assert set(NEW_ROWS) <= set(rows)


def test_an_edited_plugin_is_checked_again_at_its_next_load(samples):
    assert load_backbone("pad-is-end").load_phases["checks"] == "ran"
    assert load_backbone("pad-is-end").load_phases["checks"] == "remembered"
    module = samples / "vip_sample_plugins.py"
    module.write_text(module.read_text() + "\n# edited: the plugin's code changed, its version did not\n")
    assert load_backbone("pad-is-end").load_phases["checks"] == "ran"
    assert load_backbone("pad-is-end").load_phases["checks"] == "remembered"


def test_a_new_plugin_version_is_checked_again(samples):
    assert load_backbone("pad-is-end").load_phases["checks"] == "ran"
    metadata = next(samples.glob("sample_plugins-*.dist-info")) / "METADATA"
    metadata.write_text(metadata.read_text().replace("Version: 0.1.0", "Version: 0.2.0"))
    assert load_backbone("pad-is-end").load_phases["checks"] == "ran"


def test_a_failed_backbones_check_forgets_the_remembered_pass(cli, samples):
    import os

    # same-images passes the load-time checks (one image) but not the full table (two images)
    assert load_backbone("same-images").load_phases["checks"] == "ran"
    assert load_backbone("same-images").load_phases["checks"] == "remembered"
    assert load_backbone("pad-is-end").load_phases["checks"] == "ran"
    probes = Path(os.environ["VIP_CACHE_DIR"]) / "checks"
    assert len(list(probes.glob("*.probes.json"))) == 2  # kept beside a third-party backbone's pass
    code, _, err = cli("backbones", "check", "same-images")
    assert code == 1 and "2 different images get the same feature" in err
    assert len(list(probes.glob("*.probes.json"))) == 1  # the forgotten pass's go with it
    assert load_backbone("same-images").load_phases["checks"] == "ran"
    assert load_backbone("pad-is-end").load_phases["checks"] == "remembered"  # other backbones keep theirs


def test_cache_clear_removes_the_probes_kept_with_a_third_party_backbones_pass(cli, samples):
    """A third-party backbone's remembered pass keeps its probes' features beside it
    (`checks/<hex>.probes.json`); `vip cache clear` took them for a user's file: it kept them, warned
    "kept 1 file(s) ... that vip did not write" and left checks/ behind."""
    import os

    assert load_backbone("pad-is-end").load_phases["checks"] == "ran"
    root = Path(os.environ["VIP_CACHE_DIR"])
    assert len(list((root / "checks").glob("*.probes.json"))) == 1
    code, out, err = cli("cache", "clear")
    assert code == 0 and "removed" in out and "kept" not in err and not (root / "checks").exists(), err


def test_cache_clear_removes_the_temp_files_a_stopped_write_of_a_pass_leaves(cli, samples):
    """A pass and its probes are written through a temp file each; one a `kill -9` left behind is vip's to clear."""
    import os

    load_backbone("pad-is-end")
    checks = Path(os.environ["VIP_CACHE_DIR"]) / "checks"
    marker = next(path for path in checks.iterdir() if "." not in path.name)
    for left in (f".{marker.name}.k3x9_q1z.tmp", f".{marker.name}.probes.json.a8b2c4d1.tmp"):
        (checks / left).write_text("half")
    code, out, err = cli("cache", "clear")
    assert code == 0 and "kept" not in err and not checks.exists(), err


ONNX_HINT = "pip install 'optdep-plugin[onnx]'"


@pytest.fixture
def broken_modules():
    """Forget the modules of `_install_broken_plugins` after the test."""
    import sys

    yield
    for name in ("optdep_plugin", "missing_class_plugin"):
        sys.modules.pop(name, None)


def _install_broken_plugins(site, tmp_path, group: str) -> None:
    """A plugin module that needs a missing extra (its ImportError quotes `ONNX_HINT`) and an entry point
    naming a class its module lacks."""
    module = tmp_path / "optdep_plugin.py"
    module.write_text(f"raise ImportError(\"onnx needs onnxruntime: {ONNX_HINT}\")\n")
    missing = tmp_path / "missing_class_plugin.py"
    missing.write_text("VALUE = 1\n")
    install_distribution(site, "optdep-plugin", "onnx-thing = optdep_plugin:Thing", module, group=group)
    install_distribution(site, "missing-class-plugin", "missing-thing = missing_class_plugin:DoesNotExist", missing,
                         group=group)


def test_backbones_list_marks_a_backbone_that_cannot_load(cli, site, tmp_path, broken_modules, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # table rows on one line each
    _install_broken_plugins(site, tmp_path, "vip.backbones")
    code, out, err = cli("backbones", "list")
    assert code == 0 and "Traceback" not in err
    assert "onnx-thing (unavailable)" in out and "missing-thing (unavailable)" in out
    assert "│ clip  " in out and "│ toy  " in out  # the built-ins load: not marked
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert not [line for line in warnings if "'clip'" in line or "'toy'" in line], warnings
    assert [line for line in warnings if "onnx-thing" in line] == [
        "warning: backbone 'onnx-thing' from distribution optdep-plugin failed to import: ImportError: onnx needs "
        f"onnxruntime: {ONNX_HINT} (reinstall or fix optdep-plugin; other backbones still work); 'onnx-thing' is "
        "unavailable"]  # the message and its fix, as `vip methods list` warns
    assert any("names DoesNotExist" in line and "'missing-thing' is unavailable" in line for line in warnings)
    code, out, _ = cli("backbones", "list", "--json")
    listed = {entry["id"]: entry for entry in json.loads(out)}
    assert ONNX_HINT in listed["onnx-thing"]["problem"] and listed["clip"]["problem"] == ""


def test_methods_list_keeps_square_brackets_of_a_plugin_message(cli, site, tmp_path, broken_modules, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _install_broken_plugins(site, tmp_path, "vip.methods")
    code, out, err = cli("methods", "list")
    assert code == 0 and ONNX_HINT in err and "onnx-thing (unavailable)" in out


def test_backbones_check_keeps_square_brackets_of_a_plugin_error(cli, samples, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    code, out, err = cli("backbones", "check", "brackets-in-error")
    assert code == 1 and len(error_lines(err)) == 1
    assert "pip install 'sample-plugins[onnx]'" in out  # the table row
    assert "pip install 'sample-plugins[onnx]'" in err  # the error line


def test_a_plugin_whose_default_is_random_weights_warns_as_pretrained_none_does(samples, capsys):
    """A plugin with `default_pretrained = "none"` loaded random weights without a word on the command line
    (only the report said so); an explicit `--pretrained` that names weights gets no such warning."""
    load_backbone("pad-is-end")
    assert ("backbone 'pad-is-end' has random weights by default (--pretrained loads weights where the backbone "
            "offers any)") in capsys.readouterr().err
    load_backbone("toy")
    assert "random weights" not in capsys.readouterr().err


def test_a_plugin_whose_describe_leaves_out_its_seed_gets_a_feature_cache_per_option(samples, tmp_path,
                                                                                        monkeypatch):
    from vipcli.features import FeatureCache

    def key(**options):  # unchecked: the cache's key alone
        return FeatureCache(tmp_path, load_backbone("forgets-seed", **options, check=False)).key

    one, two = key(pretrained="1"), key(pretrained="2")
    assert one != two and key(pretrained="1") == one  # other weights, other entries; the same ones, the same
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert key(arch="config.json") == key(arch=str(tmp_path / "config.json"))  # a path keys as the file it names
    assert "options" not in FeatureCache(tmp_path, load_backbone("toy")).identity  # vip's own keys are unchanged


def test_towers_left_on_another_device_than_the_backbone_says_fail_at_load_naming_the_fix(samples):
    import torch

    with pytest.raises(VipError) as error:  # a plugin that forgot .to(device): said on a machine without a GPU
        load_backbone("leaves-towers-behind", device=torch.device("meta"))
    message = str(error.value)
    assert message.startswith("backbone 'leaves-towers-behind' (from sample-plugins 0.1.0) failed in modules: "), \
        message
    assert "weight(s) are on cpu, not on meta where `device` says the towers are" in message
    assert "(.to(self.device))" in message and "\n" not in message


def test_a_backbone_that_ignores_the_device_it_is_given_is_warned_of(samples, capsys):
    import torch

    backbone = load_backbone("ignores-device", device=torch.device("meta"))
    warned = [line for line in capsys.readouterr().err.splitlines() if "was asked for device" in line]
    assert backbone.device == torch.device("cpu") and len(warned) == 1, warned
    assert "backbone 'ignores-device' (from sample-plugins 0.1.0) was asked for device meta but says its towers " \
           "are on cpu" in warned[0] and "self.device = torch.device(device)" in warned[0]
    load_backbone("ignores-device")  # asked for the CPU: nothing to say
    assert "was asked for device" not in capsys.readouterr().err


def test_a_backbone_whose_weights_differ_between_loads_of_one_describe_is_refused(cli, samples):
    import torch

    code, out, err = cli("backbones", "check", "unseeded", "--json")
    reload = {row["check"]: row for row in json.loads(out)["checks"]}["same describe() on reload"]
    assert code == 1 and reload["ok"] is False, err
    assert "two loads with equal describe() give the probe prompts and image features" in reload["detail"]
    assert "torch.random.fork_rng()" in reload["detail"] and all(  # a sound plugin: equal features on reload
        row["ok"] is not False for row in json.loads(cli("backbones", "check", "pad-is-end", "--json")[1])["checks"])
    torch.manual_seed(1)
    load_backbone("unseeded")  # passes the checks; its pass is remembered with its probes' features
    torch.manual_seed(2)
    with pytest.raises(VipError) as error:  # a later command, other weights: refused before any image is encoded
        load_backbone("unseeded")
    message = str(error.value)
    assert message.startswith("backbone 'unseeded' (from sample-plugins 0.1.0) failed in describe: this load and an "
                              "earlier one with the same describe() give the probe prompts and image features "), \
        message
    torch.manual_seed(1)
    assert load_backbone("unseeded").id == "unseeded"  # the same weights again: the remembered pass holds
    # an option describe() leaves out: each choice keeps its own pass, whichever was loaded first (as its
    # features are cached apart), instead of the second choice being refused as other weights under one describe()
    assert load_backbone("forgets-seed", pretrained="1").load_phases["checks"] == "ran"
    assert load_backbone("forgets-seed", pretrained="2").load_phases["checks"] == "ran"
    assert load_backbone("forgets-seed", pretrained="1").load_phases["checks"] == "remembered"
    torch.manual_seed(3)
    with pytest.raises(VipError) as error:  # the remembered pass still holds a choice to its weights
        load_backbone("unseeded")
    assert "a weights file replaced under the same --pretrained path" in str(error.value)


def test_a_load_stopped_while_its_pass_is_remembered_leaves_later_loads_checked_for_other_weights(samples,
                                                                                                  monkeypatch):
    """A pass of the load-time checks was written before the probes' features it holds a backbone to: a command
    stopped between the two writes (Ctrl-C, `kill -9`) left a pass without probes, and from then on every load of
    that describe() was let through whatever its weights, so cached features, runs and predictions mixed weights."""
    import torch

    import vipcli.registry as registry

    real = registry._remember_probes

    def stopped(*args):
        raise KeyboardInterrupt  # the command stops as it writes the probes

    monkeypatch.setattr(registry, "_remember_probes", stopped)
    torch.manual_seed(1)
    with pytest.raises(KeyboardInterrupt):
        load_backbone("unseeded")
    monkeypatch.setattr(registry, "_remember_probes", real)
    torch.manual_seed(2)
    load_backbone("unseeded")  # the weights later loads are held to
    torch.manual_seed(3)
    with pytest.raises(VipError) as error:
        load_backbone("unseeded")
    assert "this load and an earlier one with the same describe() give the probe prompts" in str(error.value)


def test_a_pass_remembered_without_its_probes_keeps_them_at_its_next_load(samples):
    """A pass an earlier vip (or a stopped command) remembered without probes: the next load keeps them, and a load
    of other weights after it is refused instead of being let through for good."""
    import os

    import torch

    torch.manual_seed(1)
    load_backbone("unseeded")
    checks = Path(os.environ["VIP_CACHE_DIR"]) / "checks"
    probes, = checks.glob("*.probes.json")
    probes.unlink()
    torch.manual_seed(2)
    assert load_backbone("unseeded").load_phases["checks"] == "remembered"
    assert probes.is_file()
    torch.manual_seed(3)
    with pytest.raises(VipError):
        load_backbone("unseeded")


def test_image_features_of_a_batch_need_one_row_per_image(cli, samples, isic_small, tmp_path):
    """A plugin returning the first image's feature for a whole batch passed the load-time checks (one image), then
    failed inside vip as "a bug in vip" (split_with_sizes)."""
    code, _, err = cli("train", "--data", isic_small, "--backbone", "first-row-only", "--shots", "2", "--epochs", "1",
                       "--out", tmp_path / "run", "--workers", "0")
    line, = error_lines(err)
    assert code == 1 and "bug in vip" not in err and "Traceback" not in err and not (tmp_path / "run").exists()
    assert line.startswith("error: backbone 'first-row-only' (from sample-plugins 0.1.0) failed in encode_image: for "
                           "a batch of ") and "images it returned features [1, 16], not [" in line
    assert "return one feature row per image of the batch" in line


def test_backbones_check_fails_image_features_squeezed_for_one_image(cli, samples):
    """An encode_image ending in .squeeze() gives one image [D]: `vip backbones check` passed it (the single image
    broadcast against the batch's row), while `vip train` failed on its last batch of one image and sent the user
    to `vip backbones check`, which said ok."""
    code, out, _ = cli("backbones", "check", "squeezes-images", "--json")
    row = {row["check"]: row for row in json.loads(out)["checks"]}["same images, same features"]
    assert code == 1 and row["ok"] is False and row["member"] == "encode_image", row
    assert "a batch of 1 image are [16]; expected [1, D=16]" in row["detail"] and "no .squeeze()" in row["detail"]


def test_a_plugin_that_normalises_its_image_batch_in_place_passes(cli, samples):
    """Harmless in vip (every call gets a batch of its own), it failed the check on the CPU as randomness
    ("not deterministic in eval"), the probe having been changed by the call before (on a GPU, a copy)."""
    code, out, err = cli("backbones", "check", "normalises-images-in-place", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 0 and rows["same images, same features"]["ok"] is True, err


def _example_changed(site, tmp_path, name: str, old: str, new: str) -> str:
    """README's backbone example with `old` replaced by `new`, installed as backbone `name` of distribution
    `name`-dist (module `name` with dashes as underscores); returns the id."""
    import sys

    source = EXAMPLE_MODULE.read_text()
    assert source.count(old) == 1, old
    module = name.replace("-", "_")
    (tmp_path / f"{module}.py").write_text(source.replace(old, new))
    install_distribution(site, f"{name}-dist", f"{name} = {module}:TinyExampleBackbone", tmp_path / f"{module}.py")
    sys.modules.pop(module, None)
    return name


def test_a_tokenizer_that_cuts_prompts_short_before_its_context_fails_in_tokenize(cli, site, tmp_path):
    """README's example with a tokenizer that stops after 11 words of its 32 tokens passed every row: long
    symptoms then lost their tails without a word (two symptoms that differ past the 11th word got one prompt)."""
    plugin = _example_changed(site, tmp_path, "cuts-short", "split()[: self.context_length - 2]", "split()[:11]")
    code, out, err = cli("backbones", "check", plugin, "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    row = rows["long prompts, last word"]
    assert code == 1 and row["ok"] is False and row["member"] == "tokenize", row
    assert [name for name, r in rows.items() if r["ok"] is False] == ["long prompts, last word"]  # the one row
    assert "get the same token ids, though the tokenizer kept only 13 of context_length=32 tokens: it cuts prompts " \
           "short before context_length, so long symptoms lose their tails" in row["detail"]
    with pytest.raises(VipError) as error:  # at load too, before any image is encoded
        load_backbone(plugin)
    assert str(error.value).startswith("backbone 'cuts-short' (from cuts-short-dist 0.1.0) failed in tokenize: two "
                                       "prompts of 37 words that differ only at their end ")


def test_a_text_tower_that_reads_only_the_first_tokens_fails_on_long_prompts(cli, site, tmp_path):
    """A tower that pools the first 12 positions reads every word of short prompts, and none past the 12th."""
    plugin = _example_changed(site, tmp_path, "reads-twelve", "self.text_proj(self.pool_at_end(x, ids))",
                              "self.text_proj(x[:, :12].mean(dim=1))")
    code, out, err = cli("backbones", "check", plugin, "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    row = rows["long prompts, last word"]
    assert code == 1 and row["ok"] is False and row["member"] == "encode_text_embeds", row
    assert [name for name, r in rows.items() if r["ok"] is False] == ["long prompts, last word"]
    assert "(30 of context_length=32 tokens) that differ only at their end" in row["detail"]
    assert "get the same feature: the text tower stops reading before context_length" in row["detail"]


def test_a_sound_tokenizer_passes_the_long_prompts_at_the_edge_of_its_context(cli, site, tmp_path):
    """README's example as it is: the longest probe that fits with a token to spare takes 30 of its 32 tokens, and
    the last word still tells the two apart."""
    plugin = _example_changed(site, tmp_path, "as-written", "dropout=0.0", "dropout=0.0")
    code, out, err = cli("backbones", "check", plugin, "--json")
    row = {row["check"]: row for row in json.loads(out)["checks"]}["long prompts, last word"]
    assert code == 0 and row["ok"] is True, err
    assert row["detail"] == "27 words ending '... a melanoma.' / '... a nevus.': 30 of 32 tokens, distinct"


@pytest.mark.parametrize("scale, reason", [
    # the multiplier where its log belongs: `vip train` said "training diverged ... lower the learning rate", also
    # of zero-shot, which trains nothing
    ("torch.tensor(100.0)", "logit_scale is 100, so logits would be cosines times exp() = inf"),
    # the log of CLIP's temperature (0.07) where the log of its inverse belongs: probabilities near 1/C
    ("torch.tensor(math.log(0.07))", "logit_scale is -2.659, so logits would be cosines times exp() = 0.07"),
])
def test_a_logit_scale_that_is_not_the_log_of_a_plausible_multiplier_fails_at_load(cli, site, tmp_path, scale,
                                                                                     reason):
    plugin = _example_changed(site, tmp_path, "odd-scale", "torch.tensor(math.log(100.0))", scale)
    code, out, err = cli("backbones", "check", plugin, "--json")
    row = {row["check"]: row for row in json.loads(out)["checks"]}["logit_scale"]
    assert code == 1 and row["ok"] is False and reason in row["detail"], row
    assert "store the model's log scale as it is (model.logit_scale, not model.logit_scale.exp())" in row["detail"]
    with pytest.raises(VipError) as error:
        load_backbone(plugin)
    assert str(error.value).startswith(f"backbone 'odd-scale' (from odd-scale-dist 0.1.0) failed in logit_scale: "
                                       f"{reason}")
