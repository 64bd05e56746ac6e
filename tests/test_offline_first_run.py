"""A fresh machine without the model hub: missing weights are one line before any work (the data, open_clip)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import error_lines

MISSING = "error: could not load weights 'openai' for ViT-B-16-quickgelu: not in the local cache"


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """The hub's cache pointed at an empty folder (offline mode is on in every test, conftest)."""
    from huggingface_hub import constants

    folder = tmp_path / "empty-hub-cache"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))  # read once, when huggingface_hub was imported
    return folder


@pytest.fixture
def data_never_read(monkeypatch):
    """Reading the data folder fails the test: the weights must be refused first."""
    import vipcli.benchmark  # binds load_dataset when imported: imported here, so that the patch is undone for it too
    import vipcli.data

    def read(*args, **kwargs):
        raise AssertionError("the data folder was read before the missing weights were named")

    monkeypatch.setattr(vipcli.data, "load_dataset", read)
    monkeypatch.setattr(vipcli.benchmark, "load_dataset", read)
    monkeypatch.setitem(sys.modules, "open_clip", None)  # importing it would fail as well


def test_missing_default_weights_offline_are_refused_before_the_data_is_read(cli, isic_small, tmp_path,
                                                                             empty_hub_cache, data_never_read):
    code, out, err = cli("train", "--data", isic_small, "--out", tmp_path / "out")
    assert code == 1 and out == ""
    assert error_lines(err)[0].startswith(f"{MISSING} ({empty_hub_cache}) and offline mode is on")
    assert len(error_lines(err)) == 1 and "Traceback" not in err and "--pretrained none" in err
    assert not (tmp_path / "out").exists()


def test_missing_biomedclip_weights_offline_are_refused_before_the_data_is_read(cli, isic_small, tmp_path,
                                                                              empty_hub_cache, data_never_read):
    code, _, err = cli("train", "--data", isic_small, "--backbone", "biomedclip", "--out", tmp_path / "out")
    assert code == 1
    assert error_lines(err) == [line for line in error_lines(err) if line.startswith(
        "error: could not load weights 'hf-hub:microsoft/BiomedCLIP")] and len(error_lines(err)) == 1


def test_an_unknown_arch_offline_is_named_before_the_data_is_read(cli, isic_small, tmp_path, empty_hub_cache,
                                                                  data_never_read):
    code, _, err = cli("train", "--data", isic_small, "--arch", "ViT-B-16-nope", "--out", tmp_path / "out")
    assert code == 2 and error_lines(err)[0].startswith("error: unknown open_clip architecture 'ViT-B-16-nope'")


def test_usage_errors_of_the_run_folder_come_before_missing_weights(cli, isic_small, tmp_path, empty_hub_cache,
                                                                     data_never_read):
    """`--out` inside the data folder is a mistake of the command line (exit 2), named before the weights."""
    code, _, err = cli("train", "--data", isic_small, "--out", isic_small / "train" / "run")
    assert code == 2 and len(error_lines(err)) == 1 and MISSING not in err, err


@pytest.mark.parametrize("command", [["train"], ["benchmark", "--shots", "1", "--seeds", "1"]])
def test_the_vip_command_names_missing_weights_without_importing_open_clip(isic_small, tmp_path, command):
    """Importing open_clip takes seconds (13 s on the 2-core machine): the offline refusal comes before it, in a
    process of its own whose hub cache is an empty folder."""
    empty = tmp_path / "empty-hub-cache"
    empty.mkdir()
    script = ("import json, sys\nfrom vipcli.cli.main import main\n"
              f"code = main({command!r} + ['--data', {str(isic_small)!r}, '--out', {str(tmp_path / 'out')!r}])\n"
              "print(json.dumps({'code': code, 'open_clip': 'open_clip' in sys.modules}))\n")
    env = {**os.environ, "HF_HUB_CACHE": str(empty), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 1, "open_clip": False}
    assert error_lines(done.stderr)[0].startswith(f"{MISSING} ({empty}) and offline mode is on")


def test_cached_weights_pass_the_early_check_without_asking_the_network(monkeypatch, tmp_path):
    """A machine that has weights in the hub's cache is not slowed by the early check: no probe of the hub."""
    from huggingface_hub import constants

    from vip_backbones import hub
    from vip_backbones.openclip_weights import check_before_data

    (tmp_path / "models--timm--vit_base_patch16_clip_224.openai").mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def probe(*args, **kwargs):
        raise AssertionError("the hub was probed although its cache holds weights")

    monkeypatch.setattr(hub, "hub_unreachable_reason", probe)
    check_before_data("clip", None, None)
    check_before_data("toy", None, None)  # not an open_clip backbone of vip's: left to its load


def test_a_misspelt_method_is_named_before_the_missing_weights(cli, isic_small, tmp_path, empty_hub_cache,
                                                               data_never_read):
    """A mistake of the command line comes first (exit 2): fixing the weights, then the method, would be two trips."""
    code, _, err = cli("train", "--method", "vipp", "--data", isic_small, "--out", tmp_path / "out")
    assert code == 2 and err.startswith("error: can't find method 'vipp'; did you mean 'vip'?"), err


@pytest.mark.parametrize("backbone_id, model, model_class", [("hf-clip", "openai/clip-vit-base-patch16", "CLIPModel"),
                                                             ("siglip", "google/medsiglip-448", "SiglipModel")])
def test_missing_transformers_weights_offline_are_refused_before_the_data_is_read(
        cli, isic_small, tmp_path, empty_hub_cache, data_never_read, monkeypatch, backbone_id, model, model_class):
    monkeypatch.setitem(sys.modules, "transformers", None)  # nor is transformers imported (seconds)
    code, out, err = cli("train", "--data", isic_small, "--backbone", backbone_id, "--out", tmp_path / "out")
    assert code == 1 and out == "" and len(error_lines(err)) == 1 and "Traceback" not in err, err
    assert error_lines(err)[0].startswith(f"error: could not load weights '{model}' for {model_class}: not in the "
                                          f"local cache ({empty_hub_cache}) and offline mode is on"), err
    assert "--pretrained /path/to/a/save_pretrained/folder" in err and not (tmp_path / "out").exists()


def test_random_transformers_weights_offline_name_the_config_they_still_read_before_the_data(
        cli, isic_small, tmp_path, empty_hub_cache, data_never_read):
    """--pretrained none still reads the default model's config and tokenizer: said as such, with --arch as the fix."""
    code, _, err = cli("benchmark", "--data", isic_small, "--backbone", "hf-clip", "--pretrained", "none",
                       "--shots", "1", "--seeds", "1", "--out", tmp_path / "out")
    assert code == 1 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith("error: could not load the config and tokenizer "
                                          "'openai/clip-vit-base-patch16' for CLIPModel: not in the local cache")
    assert "--pretrained none needs --arch" in err and not (tmp_path / "out").exists()


def test_a_transformers_weights_path_that_does_not_exist_is_a_usage_error_before_the_data(cli, isic_small, tmp_path,
                                                                                         data_never_read):
    code, _, err = cli("train", "--data", isic_small, "--backbone", "siglip", "--pretrained", tmp_path / "medsiglip",
                       "--out", tmp_path / "out")
    assert code == 2 and len(error_lines(err)) == 1, err
    assert err.startswith(f"error: --pretrained {tmp_path / 'medsiglip'}: no such file or folder (pass an existing "
                          "save_pretrained folder, a hub id, or none")


def test_cached_transformers_models_and_local_folders_pass_the_early_check_without_asking_the_network(monkeypatch,
                                                                                                     tmp_path):
    from huggingface_hub import constants

    from vip_backbones import hub
    from vip_backbones.hf_weights import check_hf_clip, check_siglip

    for repo, weights in (("vinid--plip", "model.safetensors"), ("google--medsiglip-448", "pytorch_model.bin")):
        snapshot = tmp_path / f"models--{repo}" / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True)
        for name in ("config.json", "tokenizer.json", weights):
            (snapshot / name).write_text("{}")
    (tmp_path / "folder").mkdir()  # a save_pretrained folder as far as the check reads one
    (tmp_path / "folder" / "config.json").write_text(json.dumps({"model_type": "clip"}))
    (tmp_path / "folder" / "tokenizer.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))

    def probe(*args, **kwargs):
        raise AssertionError("the hub was probed although its cache holds the model")

    monkeypatch.setattr(hub, "hub_unreachable_reason", probe)
    check_hf_clip(None, "vinid/plip")
    check_siglip(None, None)
    check_siglip(None, "none")  # the default model's config and tokenizer, cached
    check_hf_clip(str(tmp_path / "folder"), "none")  # a local folder: the load names what it lacks
    check_hf_clip(None, str(tmp_path / "folder"))


@pytest.mark.parametrize("arch, pretrained, expected", [
    ("siglip-config", None, "error: {tmp}/siglip-config holds a 'siglip' model (SiglipModel), which --backbone siglip "
                            "takes (use --backbone siglip)"),
    ("siglip-config/config.json", "none", "error: {tmp}/siglip-config/config.json holds a 'siglip' model"),
    ("empty", None, "error: --arch {tmp}/empty holds no config.json"),
    (None, "empty", "error: --pretrained {tmp}/empty holds no config.json"),
    ("missing", None, "error: --arch {tmp}/missing: no such file or folder (pass an existing config.json"),
])
def test_a_transformers_model_folders_mistakes_are_named_before_the_missing_weights_and_the_data(
        cli, isic_small, tmp_path, empty_hub_cache, data_never_read, arch, pretrained, expected):
    """A mistake in a local --arch or --pretrained is a usage error (exit 2), named before weights the default model
    would need (exit 1) and before the data is read: fixing the weights first would be a wasted trip."""
    (tmp_path / "siglip-config").mkdir()
    (tmp_path / "siglip-config" / "config.json").write_text(json.dumps({"model_type": "siglip",
                                                                        "architectures": ["SiglipModel"]}))
    (tmp_path / "empty").mkdir()
    options = [*(["--arch", tmp_path / arch] if arch else []), *(["--pretrained", tmp_path / pretrained]
                                                                  if pretrained not in (None, "none") else []),
               *(["--pretrained", "none"] if pretrained == "none" else [])]
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", *options, "--out", tmp_path / "out")
    assert code == 2 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith(expected.format(tmp=tmp_path)), err


def test_speed_names_missing_weights_before_the_data_is_read(cli, isic_small, tmp_path, empty_hub_cache,
                                                              data_never_read):
    code, _, err = cli("benchmark", "--speed", "--data", isic_small, "--backbone", "siglip", "--out", tmp_path / "s")
    assert code == 1 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith("error: could not load weights 'google/medsiglip-448' for SiglipModel")
    assert not (tmp_path / "s").exists()


def test_a_cached_model_without_its_weight_files_is_named_before_the_data(monkeypatch, tmp_path):
    """A cache that holds a model's config and tokenizer only (what a `--pretrained none` run fetches) is enough for
    random weights, and offline it is the missing-weights line for its weights, before the data is read."""
    from huggingface_hub import constants

    from vip_backbones import hub
    from vip_backbones.hf_weights import check_hf_clip
    from vip_backbones.openclip_weights import check_biomedclip
    from vipcli.errors import VipError

    for repo in ("openai--clip-vit-base-patch16", "microsoft--BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"):
        snapshot = tmp_path / f"models--{repo}" / "snapshots" / "0123abcd"
        snapshot.mkdir(parents=True)
        (snapshot / "config.json").write_text("{}")
        (snapshot / "tokenizer.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "hub_unreachable_reason", lambda *args, **kwargs: "offline mode is on")
    check_hf_clip(None, "none")  # random weights: the config and tokenizer are there
    check_biomedclip(None, "none")
    for check, missing in ((check_hf_clip, "weights 'openai/clip-vit-base-patch16' for CLIPModel"),
                           (check_biomedclip, "weights 'hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224'")):
        with pytest.raises(VipError) as error:
            check(None, None)
        assert str(error.value).startswith(f"could not load {missing}: not in the local cache ({tmp_path})")
    weights = tmp_path / "models--openai--clip-vit-base-patch16" / "snapshots" / "0123abcd" / "model.safetensors"
    weights.write_text("{}")
    check_hf_clip(None, None)  # its weights are there now


@pytest.mark.parametrize("command", [["train"], ["benchmark", "--shots", "1", "--seeds", "1"], ["benchmark", "--speed"]])
def test_a_data_folder_that_does_not_exist_is_named_before_the_missing_weights(cli, tmp_path, empty_hub_cache,
                                                                               command):
    """Two mistakes at once: the folder, the cheaper to tell and to fix, is named first, as `vip train` names it."""
    code, _, err = cli(*command, "--data", tmp_path / "nowhere", "--out", tmp_path / "out")
    assert code == 1 and error_lines(err) == [f"error: data folder not found: {tmp_path / 'nowhere'} (pass --data DIR "
                                              "with one subfolder per class)"], err
