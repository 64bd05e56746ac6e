"""`hf-clip` and `siglip`: transformers CLIPModel / SiglipModel, on tiny random models saved to disk."""

from __future__ import annotations

import time

import pytest
import torch

from conftest import error_lines
from tiny_models import write_tiny_hf_clip, write_tiny_siglip
from vipcli.errors import UsageError, VipError
from vipcli.prompts import build_prompt_bank, encode_prompts
from vipcli.registry import load_backbone

TEXTS = ["The spot is asymmetric on both sides.", "Air bronchogram sign", "a photo of a nevus.",
         "The spot has multiple colors, like brown, black, blue, red, or white."]
PROMPTS = [["The spot has blurry, or jagged edges.", "Small dark areas within the spot."],
           ["Normal lung markings.", "The spot has a consistent color, usually brown, tan or black, and clear edges."]]


@pytest.fixture(scope="module")
def hf_clip_folder(tmp_path_factory):
    return write_tiny_hf_clip(tmp_path_factory.mktemp("hf-clip") / "model")


@pytest.fixture(scope="module")
def siglip_folder(tmp_path_factory):
    return write_tiny_siglip(tmp_path_factory.mktemp("siglip") / "model")


@pytest.fixture(scope="module")
def hf_clip(hf_clip_folder):
    return load_backbone("hf-clip", None, str(hf_clip_folder))


@pytest.fixture(scope="module")
def siglip(siglip_folder):
    return load_backbone("siglip", None, str(siglip_folder))


def model_text_features(backbone, ids):
    from vip_backbones.hf_base import pooled_features

    with torch.no_grad():
        return pooled_features(backbone.model.get_text_features(input_ids=ids))


@pytest.mark.parametrize("name", ["hf_clip", "siglip"])
def test_text_features_equal_get_text_features_for_every_prompt_trimmed_or_not(name, request):
    backbone = request.getfixturevalue(name)
    ids = backbone.tokenize(TEXTS)
    theirs = model_text_features(backbone, ids)
    length = int(backbone.sequence_lengths(ids).max())
    with torch.no_grad():
        full = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
        trimmed = backbone.encode_text_embeds(backbone.embed_tokens(ids[:, :length]), ids[:, :length])
    torch.testing.assert_close(full, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(trimmed, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["hf_clip", "siglip"])
def test_learned_context_is_spliced_exactly_where_words_would_be(name, request):
    """Context vectors equal to four words' embeddings give the model's features for those words there."""
    backbone = request.getfixturevalue(name)
    bank = build_prompt_bank(backbone, PROMPTS, n_ctx=4, trim=True)
    words = backbone.tokenize(["black blue red white"])[0, backbone.num_prefix_tokens:backbone.num_prefix_tokens + 4]
    context = backbone.embed_tokens(words).detach()  # [4, W]
    ids = bank.ids.clone()
    ids[:, bank.prefix:bank.prefix + 4] = words
    with torch.no_grad():
        ours = encode_prompts(backbone, bank, context)
    full_ids = torch.cat([ids, torch.full((ids.shape[0], backbone.context_length - ids.shape[1]),
                                          backbone.pad_token_id)], dim=1)
    torch.testing.assert_close(ours, model_text_features(backbone, full_ids), rtol=1e-5, atol=1e-6)


def test_hf_clip_pads_with_its_end_token_and_trimming_keeps_it(hf_clip):
    assert hf_clip.pad_token_id == hf_clip.end_token_id == hf_clip.tokenizer.eos_token_id
    assert hf_clip.num_prefix_tokens == 1
    bank = build_prompt_bank(hf_clip, PROMPTS, n_ctx=4, trim=True)
    assert bank.ids.shape[1] < hf_clip.context_length
    assert (bank.ids == hf_clip.end_token_id).any(dim=1).all()


def test_siglip_is_padded_to_64_tokens_never_trimmed_and_has_no_start_token(siglip):
    ids = siglip.tokenize(TEXTS)
    assert ids.shape == (len(TEXTS), 64) and siglip.num_prefix_tokens == 0
    assert siglip.sequence_lengths(ids).tolist() == [64] * len(TEXTS)
    bank = build_prompt_bank(siglip, PROMPTS, n_ctx=4, trim=True)
    assert bank.ids.shape[1] == 64  # room for context was checked on the words, not on the full length
    assert siglip.logit_scale.dim() == 0  # SiglipModel's parameter has shape [1]


@pytest.mark.parametrize("name", ["hf_clip", "siglip"])
def test_image_features_equal_get_image_features(name, request):
    from PIL import Image

    from vip_backbones.hf_base import pooled_features

    backbone = request.getfixturevalue(name)
    picture = Image.new("RGB", (48, 32), (200, 120, 40))
    pixels = backbone.image_transform(False)(picture)[None]  # [1, 3, 32, 32]
    assert pixels.shape == (1, 3, 32, 32)
    with torch.no_grad():
        theirs = pooled_features(backbone.model.get_image_features(pixel_values=pixels))
    torch.testing.assert_close(backbone.encode_image(pixels), theirs)


def test_siglip_reads_its_preprocessor_config(siglip):
    assert siglip.preprocessing == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    assert siglip.squash


@pytest.mark.parametrize("backbone_id, folder", [("hf-clip", "hf_clip_folder"), ("siglip", "siglip_folder")])
def test_random_weights_from_a_config_are_reproducible(backbone_id, folder, request):
    source = str(request.getfixturevalue(folder))
    first = load_backbone(backbone_id, source, "none", warn_random=False)
    second = load_backbone(backbone_id, source + "/config.json", "none", warn_random=False)
    ids = first.tokenize(TEXTS)
    torch.testing.assert_close(first.encode_text(ids), second.encode_text(ids))
    assert first.describe()["weights"] == "random (seed 0)" and first.fingerprint() == second.fingerprint()


def test_the_wrong_model_family_is_a_usage_error(siglip_folder):
    with pytest.raises(UsageError, match="is a 'siglip' model, not clip"):
        load_backbone("hf-clip", None, str(siglip_folder))


def test_train_and_predict_with_hf_clip(cli, hf_clip_folder, isic_small, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", "--pretrained", hf_clip_folder,
                       "--shots", "4", "--epochs", "2", "--views", "2", "--out", run, "--workers", "0")
    assert code == 0, err
    code, out, err = cli("predict", isic_small / "test", "--model", run, "--json")
    assert code == 0, err


def test_missing_hub_weights_offline_fail_fast_in_one_line_without_library_noise(cli, isic_small, hf_clip):
    started = time.perf_counter()
    with pytest.raises(VipError) as error:
        load_backbone("hf-clip", None, "vinid/plip")
    assert time.perf_counter() - started < 5
    assert "could not load weights 'vinid/plip' for CLIPModel: not in the local cache" in str(error.value)
    code, out, err = cli("train", "--data", isic_small, "--backbone", "siglip", "--device", "cpu")
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert error_lines(err)[0].startswith("error: could not load weights 'google/medsiglip-448' for SiglipModel")
    for noise in ("ERROR:root", "Traceback", "Loading weights", "[transformers]"):
        assert noise not in err


@pytest.mark.parametrize("backbone_id", ["hf-clip", "siglip"])
def test_random_weights_without_arch_offline_say_that_arch_is_needed(cli, isic_small, backbone_id):
    """`--pretrained none` needs a config and tokenizer, not weights: the error says to pass --arch."""
    code, _, err = cli("train", "--data", isic_small, "--backbone", backbone_id, "--pretrained", "none",
                       "--device", "cpu")
    assert code == 1 and len(error_lines(err)) == 1, err
    line = error_lines(err)[0]
    assert line.startswith("error: could not load the config and tokenizer '") and "weights" not in line
    assert "--pretrained none needs --arch (a config.json, a save_pretrained folder, or a cached hub id)" in line


def test_unreachable_hub_is_detected_quickly_without_offline_mode(monkeypatch, hf_clip):
    """No HF_HUB_OFFLINE: a closed endpoint is probed once and the load runs from the cache only."""
    from huggingface_hub import constants

    from vip_backbones import hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(hub, "_PROBED", {})
    for name in hub.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    started = time.perf_counter()
    with pytest.raises(VipError) as error:
        load_backbone("hf-clip", None, "vinid/plip")
    assert time.perf_counter() - started < 5
    assert "not in the local cache" in str(error.value) and "127.0.0.1 cannot be reached" in str(error.value)
    assert constants.HF_HUB_OFFLINE is False  # offline mode only for the duration of the load


def test_a_gated_repository_says_how_to_get_access():
    from vip_backbones.hub import missing_weights_error

    class GatedRepoError(Exception):
        pass

    error = GatedRepoError("401 Client Error. Cannot access gated repo for url https://huggingface.co/"
                           "google/medsiglip-448/resolve/main/config.json.\nAccess to model google/medsiglip-448 is restricted.")
    message = str(missing_weights_error("google/medsiglip-448", "SiglipModel", None, error, "unused"))
    assert message.startswith("could not load weights 'google/medsiglip-448' for SiglipModel: the repository is gated")
    assert "hf auth login" in message and "\n" not in message


def test_a_transformers_that_refuses_the_installed_torch_is_named_not_blamed_on_weights(
        cli, monkeypatch, hf_clip_folder, isic_small, tmp_path):
    """transformers 5 beside torch < 2.6 imports, then fails every load saying PyTorch was not found:
    the user is told which two packages disagree and how to fix it, before any work."""
    import transformers.utils

    from vip_backbones.hub import missing_weights_error

    monkeypatch.setattr(transformers.utils, "is_torch_available", lambda: False)
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", "--pretrained", hf_clip_folder,
                       "--shots", "4", "--epochs", "2", "--out", tmp_path / "run", "--workers", "0")
    assert code == 1 and len(error_lines(err)) == 1, err
    line = error_lines(err)[0]
    assert line.startswith(f"error: transformers {transformers.__version__} cannot use the installed torch "
                           f"{torch.__version__}"), line
    assert "pip install -U torch torchvision" in err and "weights" not in line
    assert not (tmp_path / "run").exists()
    # open_clip's BiomedCLIP path meets the same refusal as a failed load: the same line, not a weights error
    error = ImportError("AutoModel requires PyTorch >= 2.6, but PyTorch was not found")
    message = str(missing_weights_error("tiny-biomedclip", "tiny.json", None, error, "unused"))
    assert message.startswith(f"transformers {transformers.__version__} cannot use the installed torch")
