"""The CLIP and BERT text paths, the plugin registry, and loading failures."""

from __future__ import annotations

import json

import pytest

from conftest import error_lines
import torch

from vipcli.errors import UsageError, VipError
from vipcli.registry import load_backbone

TEXTS = ["The spot is asymmetric on both sides.", "Air bronchogram sign", "a photo of a nevus."]


@pytest.fixture(scope="module")
def clip_backbone(tiny_clip):
    return load_backbone("clip", str(tiny_clip), "none")


@pytest.fixture(scope="module")
def bert_backbone(tiny_biomedclip):
    return load_backbone("biomedclip", str(tiny_biomedclip), "none")


@pytest.mark.parametrize("name", ["clip_backbone", "bert_backbone"])
def test_text_path_equals_the_models_own_encode_text(name, request):
    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(TEXTS)
    ours = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
    theirs = backbone.model.encode_text(ids)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["clip_backbone", "bert_backbone"])
def test_trimming_to_the_longest_prompt_changes_nothing(name, request):
    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(TEXTS)
    length = int(backbone.sequence_lengths(ids).max())
    assert length < ids.shape[1]
    trimmed = backbone.encode_text_embeds(backbone.embed_tokens(ids[:, :length]), ids[:, :length])
    torch.testing.assert_close(trimmed, backbone.model.encode_text(ids), rtol=1e-5, atol=1e-5)


def test_bert_tokenizer_knows_every_word(bert_backbone):
    ids = bert_backbone.tokenize(TEXTS)
    assert bert_backbone.tokenizer.tokenizer.unk_token_id not in ids.tolist()[0]


@pytest.mark.parametrize("name", ["clip_backbone", "bert_backbone"])
def test_backbone_is_frozen_and_random_init_is_reproducible(name, request, tiny_clip, tiny_biomedclip):
    backbone = request.getfixturevalue(name)
    assert not any(p.requires_grad for p in backbone.model.parameters())
    config = tiny_clip if name == "clip_backbone" else tiny_biomedclip
    again = load_backbone(backbone.id, str(config), "none")
    ids = backbone.tokenize(TEXTS)
    torch.testing.assert_close(again.encode_text(ids), backbone.encode_text(ids))
    assert again.fingerprint() == backbone.fingerprint()


def test_backbones_list_shows_the_built_ins(cli):
    code, out, _ = cli("backbones", "list", "--json")
    assert code == 0
    ids = {entry["id"]: entry for entry in json.loads(out)}
    assert {"clip", "biomedclip"} <= set(ids)
    assert ids["clip"]["target"] == "vip_backbones.clip:ClipBackbone"


def test_unknown_backbone_lists_installed_ids():
    with pytest.raises(UsageError) as error:
        load_backbone("nope")
    assert "clip" in str(error.value) and "biomedclip" in str(error.value)


def test_unknown_arch_and_tag_are_usage_errors():
    with pytest.raises(UsageError, match="unknown open_clip architecture"):
        load_backbone("clip", "ViT-Nope-99", "none")
    with pytest.raises(UsageError, match="openai"):
        load_backbone("clip", "ViT-B-32", "no-such-tag")


def test_missing_weights_offline_is_one_clear_cli_line(cli, isic_small):
    code, out, err = cli("train", "--data", isic_small, "--arch", "RN50", "--pretrained", "openai", "--device", "cpu")
    assert code == 1
    assert error_lines(err)[0].startswith("error: could not load weights 'openai' for RN50")
    assert len(error_lines(err)) == 1 and "Traceback" not in err and "Traceback" not in err and "--pretrained none" in err


def test_missing_weights_offline_is_one_line(monkeypatch, tiny_clip):
    with pytest.raises(VipError) as error:
        load_backbone("clip", "RN50", "openai")
    message = str(error.value)
    assert "could not load weights 'openai'" in message and "--pretrained" in message and "none" in message


def test_local_weights_file_is_loaded(tmp_path, tiny_clip, clip_backbone):
    from safetensors.torch import save_file

    state = {k: v.clone() + 0.01 for k, v in clip_backbone.model.state_dict().items() if v.is_floating_point()}
    weights = tmp_path / "tiny-weights.safetensors"
    save_file(state, weights)
    loaded = load_backbone("clip", str(tiny_clip), str(weights))
    ids = loaded.tokenize(TEXTS)
    torch.testing.assert_close(loaded.model.token_embedding.weight, state["token_embedding.weight"])
    assert not torch.allclose(loaded.encode_text(ids), clip_backbone.encode_text(ids))
    assert loaded.describe()["weights"]["size"] == weights.stat().st_size
    assert loaded.fingerprint() != clip_backbone.fingerprint()
