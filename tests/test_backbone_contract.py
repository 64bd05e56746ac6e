"""The plugin contract: checked at load and by `vip backbones check`; plugin failures name the plugin."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import error_lines
from plugin_helpers import install_sample_plugins
from vipcli.errors import VipError
from vipcli.prompts import build_prompt_bank, encode_prompts
from vipcli.registry import load_backbone

PROMPTS = [["a photo of a spot.", "The spot has blurry, or jagged edges, and several colors like brown and black."],
           ["Small dark areas.", "The spot is symmetric on both sides."]]


@pytest.fixture
def samples(site):
    install_sample_plugins(site)
    return site


def test_vip_error_is_importable_from_the_backbone_module():
    from vipcli import backbone, errors

    assert backbone.VipError is errors.VipError and backbone.UsageError is errors.UsageError
    assert issubclass(backbone.PluginError, errors.VipError)


def test_a_plugin_that_pads_with_its_end_token_keeps_the_end_token_when_trimmed(samples):
    backbone = load_backbone("pad-is-end")
    assert backbone.pad_token_id == backbone.end_token_id
    trimmed = build_prompt_bank(backbone, PROMPTS, n_ctx=4, trim=True)
    full = build_prompt_bank(backbone, PROMPTS, n_ctx=4, trim=False)
    assert trimmed.ids.shape[1] < full.ids.shape[1]
    assert (trimmed.ids == backbone.end_token_id).any(dim=1).all()  # every prompt, the longest too
    context = torch.randn(4, backbone.token_width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(encode_prompts(backbone, trimmed, context), encode_prompts(backbone, full, context))


def test_the_same_plugin_without_end_token_id_fails_at_load_naming_itself(samples):
    with pytest.raises(VipError) as error:
        load_backbone("pad-is-end-undeclared")
    message = str(error.value)
    assert message.startswith("backbone 'pad-is-end-undeclared' (from sample-plugins 0.1.0) failed in sequence_lengths")
    assert "end_token_id" in message and "vip backbones check pad-is-end-undeclared" in message


@pytest.mark.parametrize("plugin, member, reason", [
    ("half-features", "encode_image", "float16 [1, 16]; the contract needs float32"),
    ("path-in-describe", "describe", "describe()['weights'] is a PosixPath"),
    ("vector-scale", "logit_scale", "logit_scale has shape [1]; make it 0-d"),
    ("broken-init", "BrokenInit.__init__", "KeyError: 'width'"),
    ("prefix-mix-up", "encode_text_parts", "features of 3 prompts in 2 groups sharing 3 tokens differ from "
                                           "encode_text_embeds(parts.embeds(), ids)"),
    ("prefix-gradient-halved", "encode_text_parts", "gradient of 3 prompts in 2 groups sharing 3 tokens differ"),
    ("pool-at-start", "encode_text_embeds", "get the same feature: the tower reads a position every prompt shares"),
    ("no-modules", "modules", "modules() returned 0 module(s) holding no weights"),
    ("no-device-argument", "NoDeviceArgument.__init__", "does not take arch=, pretrained= and device="),
])
def test_a_broken_plugin_fails_at_load_with_its_name_distribution_and_member(samples, plugin, member, reason):
    with pytest.raises(VipError) as error:
        load_backbone(plugin)
    message = str(error.value)
    assert message.startswith(f"backbone '{plugin}' (from sample-plugins 0.1.0) failed in {member}: "), message
    assert reason in message and "bug in vip" not in message


def test_train_stops_at_a_broken_plugin_before_encoding_any_image(cli, samples, isic_small, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIP_CACHE_DIR", str(cache))
    code, _, err = cli("train", "--data", isic_small, "--backbone", "half-features", "--out", tmp_path / "run",
                       "--workers", "0")
    assert code == 1 and len(error_lines(err)) == 1 and "Traceback" not in err
    assert "backbone 'half-features' (from sample-plugins 0.1.0) failed in encode_image" in err
    assert not list(cache.rglob("*.safetensors"))  # not one image was encoded
    assert not (tmp_path / "run").exists()


def test_a_plugin_failing_later_is_named_never_a_bug_in_vip(cli, samples, isic_small, tmp_path):
    code, _, err = cli("train", "--data", isic_small, "--backbone", "flaky-images", "--shots", "4", "--epochs", "1",
                       "--views", "2", "--out", tmp_path / "run", "--workers", "0")
    assert code == 1 and len(error_lines(err)) == 1 and "Traceback" not in err
    assert error_lines(err)[0].startswith("error: backbone 'flaky-images' (from sample-plugins 0.1.0) failed in "
                                          "encode_image: RuntimeError: cannot encode a batch of")
    assert "bug in vip" not in err and "sample-plugins" in err


def test_backbones_check_prints_the_table_and_passes_a_sound_plugin(cli, samples):
    code, out, err = cli("backbones", "check", "pad-is-end")
    assert code == 0, err
    for row in ("logit_scale", "tokenize", "sequence_lengths", "trimmed = full length", "plain text tower = usual",
                "encode_text_parts",
                "image_transform", "encode_image", "describe / fingerprint", "same describe() on reload"):
        assert row in out
    assert "FAIL" not in out and "float32 [2, 16]" in out and "0-d float32 on cpu" in out
    assert "the default" in out  # it does not override encode_text_parts


def test_a_cache_folder_vip_does_not_trust_does_not_hide_what_backbones_check_found(cli, samples, tmp_path,
                                                                                   monkeypatch):
    """A fault sent `vip backbones check` to forget the remembered passes in the cache folder: one every user can
    write was refused there, and that line took the place of the fault (an unknown id too, exit 1 for 2)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("VIP_CACHE_DIR", str(shared))
    code, out, err = cli("backbones", "check", "half-features")
    assert code == 1 and "FAIL" in out
    assert len(error_lines(err)) == 1 and error_lines(err)[0].startswith("error: backbone 'half-features' fails")
    code, _, err = cli("backbones", "check", "no-such-backbone")
    assert code == 2 and error_lines(err)[0].startswith("error: can't find backbone 'no-such-backbone'")


def test_the_first_load_checks_pass_under_no_grad_too(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache"))  # nothing remembered: the checks run
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            backbone = load_backbone("clip", str(tiny_clip), "none", warn_random=False)
        assert backbone.load_phases["checks"] == "ran"
        monkeypatch.setenv("VIP_CACHE_DIR", str(tmp_path / "cache-2"))


def test_backbones_check_compares_an_encode_text_parts_override_with_the_spelled_out_prompts(cli, tiny_clip):
    code, out, err = cli("backbones", "check", "clip", "--arch", tiny_clip, "--pretrained", "none", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 0, err
    assert rows["encode_text_parts"]["ok"] is True
    assert rows["encode_text_parts"]["detail"].startswith("3 prompts, 2 groups, 3 shared tokens: relative difference")


def test_backbones_check_compares_the_plain_text_tower_with_the_usual_path(cli, tiny_clip, monkeypatch):
    code, out, err = cli("backbones", "check", "clip", "--arch", tiny_clip, "--pretrained", "none", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 0, err
    assert rows["plain text tower = usual"]["ok"] is True
    assert rows["plain text tower = usual"]["detail"].startswith("plain_text_tower set: max relative difference")

    from vip_backbones.clip import ClipBackbone

    usual = ClipBackbone.encode_text_embeds

    def wrong_when_plain(self, embeds, ids):  # a plain path that forgets the positional embedding, say
        features = usual(self, embeds, ids)
        return features + 1.0 if self.plain_text_tower else features

    monkeypatch.setattr(ClipBackbone, "encode_text_embeds", wrong_when_plain)
    code, out, _ = cli("backbones", "check", "clip", "--arch", tiny_clip, "--pretrained", "none", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 1 and rows["plain text tower = usual"]["ok"] is False
    assert "with plain_text_tower set (the --reference mode)" in rows["plain text tower = usual"]["detail"]


def test_backbones_check_fails_when_describe_changes_between_loads(cli, samples):
    code, out, err = cli("backbones", "check", "new-identity", "--json")
    report = json.loads(out)
    rows = {row["check"]: row for row in report["checks"]}
    assert code == 1 and report["ok"] is False
    assert rows["same describe() on reload"]["ok"] is False and "run" in rows["same describe() on reload"]["detail"]
    assert rows["encode_image"]["ok"] is True  # everything else is sound
    assert error_lines(err) == [line for line in error_lines(err) if "fails 1 of" in line]
    # with --json no table is printed: the hint points at the JSON (it said "see the table above")
    assert "see `checks` in the JSON on stdout" in err and "table above" not in err


def test_backbones_check_of_a_describe_that_is_not_a_method_names_it(cli, samples):
    """`describe = None` failed its own row, then the reload row raised TypeError: 'a bug in vip'."""
    code, out, err = cli("backbones", "check", "describe-none", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 1 and "bug in vip" not in err, err
    assert rows["describe / fingerprint"]["ok"] is False and "not callable" in rows["describe / fingerprint"]["detail"]
    assert rows["same describe() on reload"]["ok"] is None


def test_backbones_check_reports_every_flaw_not_just_the_first(cli, samples):
    code, out, _ = cli("backbones", "check", "pad-is-end-undeclared", "--json")
    rows = {row["check"]: row for row in json.loads(out)["checks"]}
    assert code == 1
    assert rows["trimmed = full length"]["ok"] is False and "changes by" in rows["trimmed = full length"]["detail"]
    assert rows["describe / fingerprint"]["ok"] is True


def test_plugin_user_errors_pass_through_unchanged():
    from vipcli.errors import UsageError

    with pytest.raises(UsageError) as error:
        load_backbone("toy", None, "/no/such/toy.safetensors")
    assert str(error.value).startswith("--pretrained /no/such/toy.safetensors: no such toy weights file")


def test_pretrained_none_warns_that_results_mean_nothing(cli, tiny_clip):
    code, _, err = cli("backbones", "check", "clip", "--arch", tiny_clip, "--pretrained", "none")
    assert code == 0, err
    assert "warning: --pretrained none: backbone 'clip' has random weights" in err and "timing" in err


def test_load_time_checks_run_once_per_backbone_and_weights(tiny_clip, monkeypatch):
    import vipcli.backbone_contract as contract
    from vipcli.registry import load_backbone

    calls = []
    real = contract.run_checks
    monkeypatch.setattr(contract, "run_checks", lambda backbone: calls.append(backbone.id) or real(backbone))
    load_backbone("clip", str(tiny_clip), "none", warn_random=False)
    load_backbone("clip", str(tiny_clip), "none", warn_random=False)  # same plugin, class and weights: remembered
    assert calls == ["clip"]
    load_backbone("toy")  # another backbone is checked
    assert calls == ["clip", "toy"]


def test_backbones_check_fails_an_encode_image_that_ignores_its_images(cli, samples):
    code, out, err = cli("backbones", "check", "same-images")
    assert code == 1 and "2 different images get the same feature" in err
    code, out, err = cli("backbones", "check", "pad-is-end")
    assert code == 0 and "finite, distinct" in out


def test_the_plain_text_tower_switch_is_put_back_even_after_an_error():
    from vipcli.backbone import using_plain_text_tower

    class Plugin:
        pass

    plugin = Plugin()
    with pytest.raises(RuntimeError), using_plain_text_tower(plugin):
        assert plugin.plain_text_tower is True
        raise RuntimeError("a step failed")
    assert not hasattr(plugin, "plain_text_tower")
    plugin.plain_text_tower = None  # a value of its own comes back as it was
    with using_plain_text_tower(plugin):
        assert plugin.plain_text_tower is True
    assert plugin.plain_text_tower is None

    class Fixed:  # no instance attributes: nothing to switch, nothing fails
        __slots__ = ()

    with using_plain_text_tower(Fixed()):
        pass
