"""`hf-clip` and `siglip`: transformers CLIPModel / SiglipModel, on tiny random models saved to disk."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from conftest import error_lines
from text_paths import assert_equal_to_rounding, features_and_grads, parts_features_and_grads
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


def copied_folder(folder, tmp_path, name="model"):
    """A copy of a save_pretrained folder, to change a file of."""
    import shutil

    return Path(shutil.copytree(folder, tmp_path / name))


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


def _copy_of(backbone):
    """The same towers in a new backbone object (its own fast-path self-check), without loading them again."""
    copy = object.__new__(type(backbone))
    copy.__dict__.update({key: value for key, value in backbone.__dict__.items()  # not the guards bound to `backbone`
                          if key != "_pooled_path_agrees" and not getattr(value, "__vip_guarded__", False)})
    return copy


def _model_text_path(backbone, embeds, ids):
    """The model's own `get_text_features` over learned embeddings (hf_base's path), with gradients."""
    from vip_backbones.hf_base import TransformersBackbone

    return TransformersBackbone.encode_text_embeds(backbone, embeds, ids)


@pytest.fixture
def tower_calls(monkeypatch):
    """The keyword arguments of every `pooled_causal_tower` call the hf-clip backbone makes."""
    import vip_backbones.hf_clip as hf_clip_module

    calls, tower = [], hf_clip_module.pooled_causal_tower

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return tower(*args, **kwargs)

    monkeypatch.setattr(hf_clip_module, "pooled_causal_tower", spy)
    return calls


def test_hf_clip_text_tower_on_the_cpu_gives_the_models_features_and_gradients(hf_clip, tower_calls):
    backbone = _copy_of(hf_clip)
    ids = backbone.tokenize(TEXTS)
    length = int(backbone.sequence_lengths(ids).max())
    for rows in (ids[:, :length], ids):  # trimmed, and the full context
        ours = features_and_grads(lambda b, embeds, i: b.encode_text_embeds(embeds, i), backbone, rows)
        assert_equal_to_rounding(ours, features_and_grads(_model_text_path, backbone, rows))
    assert backbone._pooled_path_agrees and len(tower_calls) == 3  # the self-check, then the two paths measured


@pytest.mark.parametrize("groups", [[0] * 6, [0, 1, 0, 1, 1, 0], list(range(6))],
                         ids=["one group", "two groups", "each its own"])
def test_hf_clip_computes_shared_prompt_parts_once_and_as_the_model_would(hf_clip, tower_calls, groups):
    backbone = _copy_of(hf_clip)
    ids = backbone.tokenize(TEXTS[:3] * 2)  # [6, 77]
    ids = ids[:, :int(backbone.sequence_lengths(ids).max())]
    shared, group = 4, torch.tensor(groups)  # the start token and 3 context vectors
    ours = parts_features_and_grads(lambda parts: backbone.encode_text_parts(parts, ids), backbone, ids, group, shared)
    assert_equal_to_rounding(ours, parts_features_and_grads(
        lambda parts: _model_text_path(backbone, parts.embeds(), ids), backbone, ids, group, shared))
    assert tower_calls[-1]["shared"] == shared and tower_calls[-1]["group"] is group and tower_calls[-1]["pack"]


def test_hf_clip_configs_from_before_the_eos_fix_pool_where_the_model_pools(hf_clip, monkeypatch):
    from vip_backbones.hf_clip import LEGACY_EOS_ID

    backbone = _copy_of(hf_clip)
    monkeypatch.setattr(backbone.model.text_model, "eos_token_id", LEGACY_EOS_ID)  # the model pools at the largest id
    ids = backbone.tokenize(TEXTS)
    with torch.no_grad():
        ours = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
    assert backbone._pooled_path_agrees
    torch.testing.assert_close(ours, model_text_features(backbone, ids), rtol=1e-5, atol=1e-6)


def test_hf_clip_falls_back_to_the_models_forward_when_the_fast_path_disagrees(hf_clip, monkeypatch, tower_calls):
    import vip_backbones.hf_clip as hf_clip_module

    exact = hf_clip_module._causal_layer

    def off(layer):  # a transformers whose CLIP layers compute something else than vip assumes
        piece = exact(layer)
        return hf_clip_module.CausalLayer(piece.norm, piece.qkv, piece.heads, lambda o: 1.5 * piece.out(o),
                                          piece.feed_forward, piece.scale)

    monkeypatch.setattr(hf_clip_module, "_causal_layer", off)
    backbone = _copy_of(hf_clip)
    ids = backbone.tokenize(TEXTS)
    for _ in range(2):
        with torch.no_grad():
            features = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
        torch.testing.assert_close(features, model_text_features(backbone, ids), rtol=1e-5, atol=1e-6)
    assert backbone._pooled_path_agrees is False and len(tower_calls) == 1  # checked once, then never taken


def test_hf_clip_leaves_layers_it_does_not_know_to_the_model(hf_clip, monkeypatch, tower_calls):
    from transformers.models.clip.modeling_clip import CLIPEncoderLayer

    class Adapted(CLIPEncoderLayer):  # e.g. a plugin's adapter: vip cannot know its arithmetic
        pass

    backbone = _copy_of(hf_clip)
    monkeypatch.setattr(backbone.model.text_model.encoder.layers[-1], "__class__", Adapted)
    ids = backbone.tokenize(TEXTS)
    with torch.no_grad():
        backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
    assert not backbone._pooled_path() and not tower_calls


def test_hf_clip_runs_the_models_own_forward_for_the_reference_mode(hf_clip, tower_calls):
    from vipcli.backbone import using_plain_text_tower

    backbone = _copy_of(hf_clip)
    ids = backbone.tokenize(TEXTS)
    with torch.no_grad(), using_plain_text_tower(backbone):
        plain = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids)
    assert not tower_calls and "plain_text_tower" not in backbone.__dict__  # the model's forward; unset after
    torch.testing.assert_close(plain, model_text_features(backbone, ids), rtol=0, atol=0)


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


def test_siglip_zero_shot_gives_siglip_models_own_class_probabilities(siglip_folder, tmp_path):
    """SigLIP's conventions (texts padded to max_length, the processor's pixels, logit scale and bias as trained
    ones have them): vip's zero-shot softmax over classes is SiglipModel's own logits_per_image's; the bias that
    vip leaves out is shared by the classes, so it changes no probability and no prediction."""
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, SiglipModel

    from vipcli.methods import MethodSetup, build_method

    model = SiglipModel.from_pretrained(siglip_folder).eval()
    with torch.no_grad():
        model.logit_scale.fill_(np.log(117.3))  # about what google/siglip-base-patch16-224 learned
        model.logit_bias.fill_(-12.9)
    folder = copied_folder(siglip_folder, tmp_path)
    model.save_pretrained(folder)
    classes = ["melanoma", "nevus", "pneumonia"]
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)) for _ in range(4)]
    tokens = AutoTokenizer.from_pretrained(folder)([f"a photo of a {name}." for name in classes],
                                                   padding="max_length", return_tensors="pt")
    pixels = AutoImageProcessor.from_pretrained(folder, use_fast=False)(images=pictures, return_tensors="pt")
    with torch.no_grad():
        theirs = model(input_ids=tokens["input_ids"], pixel_values=pixels["pixel_values"]).logits_per_image
    backbone = load_backbone("siglip", None, str(folder))
    method = build_method("zeroshot", MethodSetup(backbone, classes, {}))
    with torch.no_grad():
        ours = method(backbone.encode_image(torch.stack([backbone.image_transform(False)(p) for p in pictures])))
    torch.testing.assert_close(ours.softmax(-1), theirs.softmax(-1), rtol=1e-4, atol=1e-5)
    assert ours.argmax(-1).tolist() == theirs.argmax(-1).tolist()
    torch.testing.assert_close(ours - theirs, (ours - theirs)[:, :1].expand_as(ours), rtol=0, atol=1e-3)


def test_siglip_reads_its_preprocessor_config(siglip):
    assert siglip.preprocessing == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "resize": (32, 32),
                                    "squash": True, "interpolation": "bicubic", "rescale": True, "normalize": True,
                                    "rescale_factor": 1 / 255}


@pytest.mark.parametrize("rescale, normalize", [(True, True), (False, True), (True, False), (False, False)])
def test_the_folders_image_processor_gives_the_pixels_transformers_gives(hf_clip_folder, siglip_folder, tmp_path,
                                                                         rescale, normalize):
    """Short side 40, centre crop 32, bilinear, its own mean and std: not the model family's bicubic 32. A processor
    with do_rescale or do_normalize false (CLIP's or SigLIP's) was rescaled to 0-1 and normalised all the same."""
    import numpy as np
    from PIL import Image
    from transformers import AutoImageProcessor, CLIPImageProcessor, SiglipImageProcessor

    flags = {"do_rescale": rescale, "do_normalize": normalize}
    folder = copied_folder(hf_clip_folder, tmp_path, "clip")
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, resample=2,
                       image_mean=[0.1, 0.2, 0.3], image_std=[0.9, 0.8, 0.7], **flags).save_pretrained(folder)
    square = copied_folder(siglip_folder, tmp_path, "siglip")
    SiglipImageProcessor(size={"height": 32, "width": 32}, **flags).save_pretrained(square)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    for family, where in (("hf-clip", folder), ("siglip", square)):
        backbone = load_backbone(family, None, str(where))
        theirs = AutoImageProcessor.from_pretrained(where, use_fast=False)(images=picture, return_tensors="pt")
        torch.testing.assert_close(backbone.image_transform(False)(picture), theirs["pixel_values"][0].float())
        assert backbone.image_transform(True)(picture).shape == (3, 32, 32)


def test_a_run_trained_before_vip_followed_the_image_processor_is_warned_of_its_other_pixels(hf_clip_folder, tmp_path,
                                                                                           hf_clip, siglip):
    """A processor that resizes the short side to 40 and resamples bilinear was used as bicubic at 32 by an earlier
    vip: the same folder now gives other pixels, and a run trained then says so when predicting (its describe()
    lacks `image_processing`). Models whose processor agrees with the old pixels keep their identity."""
    from transformers import CLIPImageProcessor
    from vipcli.predict import backbone_warning

    folder = copied_folder(hf_clip_folder, tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, resample=2).save_pretrained(folder)
    now = load_backbone("hf-clip", None, str(folder)).describe()
    assert now["image_processing"] == {"resize": 40, "squash": False, "interpolation": "bilinear"}
    earlier = {key: value for key, value in now.items() if key != "image_processing"}
    assert "(image_processing: now {'resize': 40, 'squash': False, 'interpolation': 'bilinear'}, trained with None)" \
        in backbone_warning("hf-clip", "run", now, earlier)
    assert "image_processing" not in hf_clip.describe() and "image_processing" not in siglip.describe()
    unnormalised = copied_folder(hf_clip_folder, tmp_path, "unnormalised")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       do_normalize=False).save_pretrained(unnormalised)  # features cached normalised are not its
    assert load_backbone("hf-clip", None, str(unnormalised)).describe()["image_processing"] == {
        "resize": 32, "squash": False, "interpolation": "bicubic", "normalize": False}


def _weights_never_load(monkeypatch):
    """CLIPModel's weights fail to load, as a sign that a refusal came after them (seconds for a real model)."""
    import transformers

    def from_pretrained(*args, **kwargs):
        raise RuntimeError("the weights were loaded before the image processor was checked")

    monkeypatch.setattr(transformers.CLIPModel, "from_pretrained", from_pretrained)


def test_an_image_processor_for_another_image_size_than_the_model_is_refused(cli, hf_clip_folder, tmp_path,
                                                                             monkeypatch):
    """Refused from the config and the processor alone, before the weights load."""
    from transformers import CLIPImageProcessor

    folder = copied_folder(hf_clip_folder, tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 48}, crop_size={"height": 48, "width": 48}).save_pretrained(folder)
    _weights_never_load(monkeypatch)
    code, _, err = cli("backbones", "check", "hf-clip", "--pretrained", folder)
    assert code == 2 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith(
        f"error: the image processor {folder / 'preprocessor_config.json'} resizes the short side to 48 and crops "
        "48x48, but the model's vision tower takes 32x32 images (vision_config.image_size in its config.json)")


@pytest.mark.parametrize("name", ["preprocessor_config.json", "processor_config.json"])
def test_an_unreadable_image_processor_is_one_line_naming_it_not_the_defaults_in_silence(cli, hf_clip_folder,
                                                                                        tmp_path, name, monkeypatch):
    folder = copied_folder(hf_clip_folder, tmp_path)
    (folder / name).write_text('{"image_mean": [0.1, 0.1')  # cut short, as a failed copy leaves it
    _weights_never_load(monkeypatch)  # refused before them
    code, _, err = cli("backbones", "check", "hf-clip", "--pretrained", folder)
    assert code == 2 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith(f"error: cannot read the image processor {folder / name}: ")


@pytest.mark.parametrize("backbone_id, folder", [("hf-clip", "hf_clip_folder"), ("siglip", "siglip_folder")])
def test_random_weights_from_a_config_are_reproducible(backbone_id, folder, request):
    source = str(request.getfixturevalue(folder))
    first = load_backbone(backbone_id, source, "none", warn_random=False)
    second = load_backbone(backbone_id, source + "/config.json", "none", warn_random=False)
    ids = first.tokenize(TEXTS)
    torch.testing.assert_close(first.encode_text(ids), second.encode_text(ids))
    assert first.describe()["weights"] == "random (seed 0)" and first.fingerprint() == second.fingerprint()


def test_the_other_family_is_a_usage_error_naming_its_backbone(siglip_folder, hf_clip_folder):
    with pytest.raises(UsageError) as caught:
        load_backbone("hf-clip", None, str(siglip_folder))
    assert str(caught.value) == (f"{siglip_folder} holds a 'siglip' model (SiglipModel), which --backbone siglip takes "
                                 "(use --backbone siglip)")
    with pytest.raises(UsageError, match=r"holds a 'clip' model \(CLIPModel\), which --backbone hf-clip takes"):
        load_backbone("siglip", None, str(hf_clip_folder))


def _other_models(folder: Path) -> dict[str, Path]:
    """save_pretrained folders of tiny models vip does not take: a ViT with its image processor (no tokenizer), a
    BERT with its tokenizer, a SigLIP 2 and a GPT-2 (their configs: refused before anything else is read)."""
    import transformers
    from tiny_models import write_tiny_bert

    tiny = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    vit = folder / "vit"
    transformers.ViTModel(transformers.ViTConfig(**tiny, image_size=32, patch_size=16)).save_pretrained(vit)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    bert = write_tiny_bert(folder / "bert")
    transformers.BertModel(transformers.BertConfig(**tiny, vocab_size=200)).save_pretrained(bert)
    transformers.Siglip2Config(text_config=tiny, vision_config=tiny).save_pretrained(folder / "siglip2")
    transformers.GPT2Config(n_embd=32, n_layer=1, n_head=2).save_pretrained(folder / "gpt2")
    return {"vit": vit, "bert": bert, "siglip2": folder / "siglip2", "gpt2": folder / "gpt2"}


TWO_TOWERS = ("(vip needs a two-tower image-text model: a CLIPModel (--backbone hf-clip), a SiglipModel (--backbone "
              "siglip) or an open_clip model (--backbone clip)")


@pytest.mark.parametrize("backbone_id", ["hf-clip", "siglip"])
def test_a_vit_bert_or_other_model_folder_is_named_with_what_would_take_it(cli, backbone_id, tmp_path, monkeypatch):
    """One line naming what the folder holds, from its config.json alone: before the tokenizer a ViT folder lacks
    is looked for, and before any weight loads."""
    import transformers

    folders = _other_models(tmp_path)
    for model_class in ("CLIPModel", "SiglipModel"):
        monkeypatch.setattr(getattr(transformers, model_class), "from_pretrained",
                            lambda *args, **kwargs: pytest.fail("weights loaded before the model type was checked"))
    expected = {
        "vit": "holds a 'vit' model (ViTModel): an image encoder alone, without the text tower vip's prompts need "
               + TWO_TOWERS + ")",
        "bert": "holds a 'bert' model (BertModel): a text encoder alone, without the image tower vip needs "
                + TWO_TOWERS + "; a BERT-style encoder can be the text tower of one: --backbone biomedclip --arch a "
                "model-config JSON whose text_cfg.hf_model_name is this folder (README, Backbones))",
        "siglip2": "holds a 'siglip2' model (Siglip2Model), an image-text model vip has no backbone for (it takes "
                   "CLIPModel with --backbone hf-clip and SiglipModel with --backbone siglip) (a backbone plugin can "
                   "add it: subclass vip_backbones.hf_base.TransformersBackbone (README, Writing a backbone plugin))",
        "gpt2": "holds a 'gpt2' model (GPT2Model), not a two-tower image-text model " + TWO_TOWERS + ")",
    }
    for name, folder in folders.items():
        for options in (["--pretrained", folder], ["--pretrained", "none", "--arch", folder / "config.json"]):
            code, _, err = cli("backbones", "check", backbone_id, *options)
            assert code == 2 and error_lines(err) == [f"error: {options[-1]} {expected[name]}"], err


@pytest.mark.parametrize("backbone_id, folder, model_class, tower", [
    ("hf-clip", "hf_clip_folder", "CLIPModel", "vision"), ("hf-clip", "hf_clip_folder", "CLIPModel", "text"),
    ("siglip", "siglip_folder", "SiglipModel", "vision"), ("siglip", "siglip_folder", "SiglipModel", "text")])
def test_a_folder_of_one_tower_says_both_are_needed(backbone_id, folder, model_class, tower, request, tmp_path):
    import transformers

    model = getattr(transformers, model_class).from_pretrained(request.getfixturevalue(folder))
    one = tmp_path / tower
    getattr(model, f"{tower}_model").save_pretrained(one)  # CLIPVisionModel's layout: {family}_{tower}_model
    family = model_class.removesuffix("Model").lower()
    with pytest.raises(UsageError) as caught:
        load_backbone(backbone_id, str(one), "none", warn_random=False)
    assert str(caught.value) == (
        f"{one} holds only the {tower} tower of a {model_class} ('{family}_{tower}_model'): vip needs both towers and "
        f"their projections (pass the folder of the whole {model_class} ({model_class}.save_pretrained writes both "
        "towers))")


class Pickled:
    """A Python object in a weights file: torch's weights_only loader refuses to unpickle it."""


def test_a_folder_whose_bin_weights_hold_pickled_objects_is_refused_naming_the_file(cli, hf_clip_folder, tmp_path):
    from safetensors.torch import load_file

    folder = copied_folder(hf_clip_folder, tmp_path)
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save({**tensors, "extra": Pickled()}, folder / "pytorch_model.bin")  # as an old save_pretrained left it
    code, _, err = cli("backbones", "check", "hf-clip", "--pretrained", folder)
    assert code == 1 and error_lines(err) == [
        f"error: the weights file {folder / 'pytorch_model.bin'} holds pickled Python objects besides tensors; vip "
        "loads tensors only (unpickling them could run any code) (if you trust where this folder came from, save its "
        "tensors with safetensors.torch.save_file as model.safetensors in the folder (transformers loads that "
        "instead) and pass the folder again)"], err
    torch.save(tensors, folder / "pytorch_model.bin")  # tensors only: loaded
    code, _, err = cli("backbones", "check", "hf-clip", "--pretrained", folder)
    assert code == 0, err


def test_a_sharded_folder_loads_and_one_missing_shard_is_named_without_a_download_hint(cli, hf_clip_folder, tmp_path):
    from transformers import CLIPModel

    folder = copied_folder(hf_clip_folder, tmp_path)
    (folder / "model.safetensors").unlink()
    CLIPModel.from_pretrained(hf_clip_folder).save_pretrained(folder, max_shard_size="100KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    code, _, err = cli("backbones", "check", "hf-clip", "--pretrained", folder)
    assert code == 0, err
    shards[-1].unlink()
    code, _, err = cli("backbones", "check", "hf-clip", "--pretrained", folder)
    assert code == 1 and len(error_lines(err)) == 1, err
    assert shards[-1].name in err and "connected machine" not in err
    assert error_lines(err)[0].endswith("(pass --pretrained a whole save_pretrained folder (config.json, every weight "
                                        "file, the tokenizer files, as save_pretrained wrote them), or --pretrained "
                                        "none --arch SOURCE for random weights (for timing and plumbing only))")


@pytest.mark.parametrize("backbone_id, folder", [("hf-clip", "hf_clip_folder"), ("siglip", "siglip_folder")])
def test_a_model_folder_without_config_json_says_so_and_how_to_fix_it(backbone_id, folder, request, tmp_path, cli):
    model = copied_folder(request.getfixturevalue(folder), tmp_path)
    (model / "config.json").unlink()
    code, _, err = cli("backbones", "check", backbone_id, "--pretrained", model)
    assert code == 2 and error_lines(err) == [
        f"error: --pretrained {model} holds no config.json (the model's configuration, which save_pretrained writes "
        "beside the weights) (copy the model's config.json into the folder, or pass --arch a folder, config.json or "
        "hub id with this model's configuration)"], err
    code, _, err = cli("backbones", "check", backbone_id, "--pretrained", model, "--arch",
                       request.getfixturevalue(folder))
    assert code == 0, err  # the config from --arch, the weights from the folder


@pytest.mark.parametrize("backbone_id, folder", [("hf-clip", "hf_clip_folder"), ("siglip", "siglip_folder")])
@pytest.mark.parametrize("as_file", [True, False], ids=["config.json", "folder"])
def test_an_arch_without_tokenizer_files_fails_in_one_line_naming_the_folder(backbone_id, folder, as_file, request,
                                                                          tmp_path, cli):
    """A config.json alone: transformers builds an empty tokenizer (hf-clip) or lists every tokenizer class (siglip)."""
    bare = tmp_path / "config-only"
    bare.mkdir()
    (bare / "config.json").write_text((request.getfixturevalue(folder) / "config.json").read_text())
    arch = bare / "config.json" if as_file else bare
    code, _, err = cli("backbones", "check", backbone_id, "--arch", arch, "--pretrained", "none")
    assert code == 2 and len(error_lines(err)) == 1, err
    assert error_lines(err)[0].startswith(f"error: --arch {arch}") and f"{bare} holds no tokenizer" in err


def test_train_and_predict_with_hf_clip(cli, hf_clip_folder, isic_small, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", "--pretrained", hf_clip_folder,
                       "--shots", "4", "--epochs", "2", "--views", "2", "--out", run, "--workers", "0")
    assert code == 0, err
    code, out, err = cli("predict", isic_small / "test", "--model", run, "--json")
    assert code == 0, err


@pytest.mark.parametrize("backbone_id, folder", [("hf-clip", "hf_clip_folder"), ("siglip", "siglip_folder")])
def test_a_run_trained_with_an_arch_config_json_predicts_after_the_model_folder_is_gone(
        backbone_id, folder, request, cli, isic_small, tmp_path):
    """The run carries the config with its tokenizer and preprocessor files, under the folder's name."""
    import json
    import shutil

    model = tmp_path / "my-model"
    shutil.copytree(request.getfixturevalue(folder), model)
    (model / "model.safetensors").unlink()  # config, tokenizer and preprocessor only: random weights
    run = tmp_path / "run"
    code, _, err = cli("train", "--data", isic_small, "--backbone", backbone_id, "--arch", model / "config.json",
                       "--pretrained", "none", "--method", "zeroshot", "--out", run, "--workers", "0")
    assert code == 0, err
    shutil.rmtree(model)
    moved = tmp_path / "elsewhere" / "run"
    shutil.move(run, moved)
    code, out, err = cli("predict", isic_small / "test", "--model", moved, "--json", "--workers", "0")
    assert code == 0 and "warning: the weights" not in err, err
    labels = [p["label"] for p in json.loads(out)["predictions"]]
    metrics = json.loads((moved / "metrics.json").read_text())["test"]
    truth = [p.parent.name for p in sorted((isic_small / "test").rglob("*.jpg"))]
    assert 100 * sum(map(str.__eq__, labels, truth)) / len(truth) == pytest.approx(metrics["accuracy"], abs=0.01)


def test_predict_from_a_run_whose_model_folder_is_gone_names_the_run_and_the_folder(cli, hf_clip_folder,
                                                                                    isic_small, tmp_path):
    """Not '--pretrained X: no such file or folder (pass an existing ...)': predict has no --pretrained."""
    import shutil

    model, run = tmp_path / "my-model", tmp_path / "run"
    shutil.copytree(hf_clip_folder, model)
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", "--pretrained", model,
                       "--method", "zeroshot", "--out", run, "--workers", "0")
    assert code == 0, err
    shutil.rmtree(model)
    code, _, err = cli("predict", isic_small / "test", "--model", run)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {run} was trained with --pretrained {model}, which no longer exists (put it back")


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


def test_a_model_folder_given_only_as_arch_warns_that_its_weights_are_not_loaded(cli, isic_small, hf_clip_folder):
    """--arch gives the config and tokenizer: a save_pretrained folder there does not bring its weights."""
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", "--arch", hf_clip_folder,
                       "--device", "cpu")
    assert code == 1  # offline, the default weights the folder's config was given are not cached
    warning = next(line for line in err.splitlines() if line.startswith("warning: --arch"))
    assert warning.startswith(f"warning: --arch {hf_clip_folder} holds weights (model.safetensors) that --arch does "
                              "not load (it gives the config and tokenizer): the weights are "
                              "openai/clip-vit-base-patch16's; pass --pretrained")
    code, _, err = cli("backbones", "check", "hf-clip", "--arch", hf_clip_folder, "--pretrained", hf_clip_folder)
    assert code == 0 and "holds weights" not in err, err


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


@pytest.mark.parametrize("text", [
    "401 Client Error. Cannot access gated repo for url https://huggingface.co/google/medsiglip-448/resolve/main/"
    "config.json.\nAccess to model google/medsiglip-448 is restricted.",  # huggingface_hub before 1.0
    "Client error '401 Unauthorized' for url 'https://huggingface.co/google/medsiglip-448/resolve/main/config.json'",
    "Client error '403 Forbidden' for url 'https://huggingface.co/google/medsiglip-448/resolve/main/config.json'",
])
def test_a_gated_repository_says_how_to_get_access(text):
    """Whichever way huggingface_hub words a 401 or 403 (its 1.0 release uses httpx's wording)."""
    from vip_backbones.hub import missing_weights_error

    class HfHubHTTPError(Exception):
        pass

    message = str(missing_weights_error("google/medsiglip-448", "SiglipModel", None, HfHubHTTPError(text), "unused"))
    assert message.startswith("could not load weights 'google/medsiglip-448' for SiglipModel: the repository is gated")
    assert "hf auth login" in message and "\n" not in message


HUB_TOKEN = "hf_Zq8Xw3Lm5Rt7Yv2Nb4Kc6Hd9Jf1Gs0Pa"
MIRROR_PASSWORD = "Pw9hunter2Secret77x"


@pytest.mark.parametrize("variable", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_a_hub_error_shows_neither_the_token_nor_the_mirror_password(monkeypatch, variable):
    """huggingface_hub puts the request URL in its errors (HF_ENDPOINT's user:password@ with it), and a
    mirror may echo the Authorization header: the token and the password are masked as the LLM key is."""
    import base64

    from vip_backbones.hub import missing_weights_error, short_detail

    monkeypatch.setenv(variable, HUB_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", f"http://mirror:{MIRROR_PASSWORD}@127.0.0.1:8765")
    basic = base64.b64encode(f"mirror:{MIRROR_PASSWORD}".encode()).decode()
    error = OSError(f"Client error '401 Unauthorized' for url 'http://mirror:{MIRROR_PASSWORD}@127.0.0.1:8765/a/b/"
                    f"resolve/main/config.json' Invalid token Bearer {HUB_TOKEN} (Basic {basic})")
    for message in (str(missing_weights_error("a/b", "CLIPModel", None, error, "unused")), short_detail(error)):
        assert "[redacted]" in message and "127.0.0.1:8765/a/b" in message, message
        assert not any(secret[i:i + 6] in message for secret in (HUB_TOKEN[3:], MIRROR_PASSWORD, basic[8:-4])
                       for i in range(len(secret) - 5)), message


def _hub_failure() -> Exception:
    """A VipError raised from a library error whose URL holds HF_ENDPOINT's password and the echoed token."""
    from vipcli.errors import VipError

    try:
        try:
            raise OSError(f"401 for url 'http://mirror:{MIRROR_PASSWORD}@127.0.0.1:8765/a/b' token {HUB_TOKEN}")
        except OSError as error:
            raise VipError("could not load weights 'a/b'") from error
    except VipError as error:
        return error


def _shows_no_hub_secret(text: str) -> bool:
    return not any(secret[i:i + 6] in text for secret in (HUB_TOKEN[3:], MIRROR_PASSWORD)
                   for i in range(len(secret) - 5))


def test_a_vip_debug_traceback_shows_neither_the_token_nor_the_mirror_password(monkeypatch, capsys):
    """Under VIP_DEBUG=1 `vip` lets the traceback through: the library exceptions chained in it are
    printed with the hub's credentials masked."""
    from vipcli.cli import main as entry

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", f"http://mirror:{MIRROR_PASSWORD}@127.0.0.1:8765")
    monkeypatch.setattr(entry, "main", lambda: (_ for _ in ()).throw(_hub_failure()))
    with pytest.raises(SystemExit) as exited:
        entry.run()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "direct cause" in err and "127.0.0.1:8765/a/b' token [redacted]" in err, err
    assert _shows_no_hub_secret(err), err


def test_an_unexpected_error_line_shows_no_hub_secret(monkeypatch, capsys):
    from vipcli.cli import main as entry

    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)

    def fail(**_):
        raise RuntimeError(f"the mirror said: bad token {HUB_TOKEN}")

    monkeypatch.setattr(entry, "app", fail)
    assert entry.main([]) == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: the mirror said: bad token [redacted]" in err and _shows_no_hub_secret(err), err


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


@pytest.mark.parametrize("backbone_id, write", [("hf-clip", write_tiny_hf_clip), ("siglip", write_tiny_siglip)])
def test_a_model_saved_to_two_paths_is_one_backbone_and_shares_the_feature_cache(backbone_id, write, tmp_path):
    """A local folder is named by its content (config, weights, tokenizer), never by its path or name."""
    from vipcli.features import FeatureCache

    first = load_backbone(backbone_id, None, str(write(tmp_path / "a" / "model")))
    second = load_backbone(backbone_id, None, str(write(tmp_path / "b" / "another-name")))
    assert first.describe() == second.describe() and first.fingerprint() == second.fingerprint()
    assert first.describe()["tokenizer"]  # its files by name, size and sha256
    assert FeatureCache(tmp_path / "cache", first).folder == FeatureCache(tmp_path / "cache", second).folder
    other = load_backbone(backbone_id, None, str(write(tmp_path / "c" / "model", seed=1)))
    assert other.fingerprint() != first.fingerprint()  # other weights: another backbone


def test_a_changed_tokenizer_is_another_backbone_and_predict_names_its_file(cli, hf_clip_folder, isic_small,
                                                                           tmp_path):
    """A run's prompts are tokenized by the folder's tokenizer: a changed one must show."""
    import json
    import shutil

    model, run = tmp_path / "my-model", tmp_path / "run"
    shutil.copytree(hf_clip_folder, model)
    before = load_backbone("hf-clip", None, str(model)).fingerprint()
    code, _, err = cli("train", "--data", isic_small, "--backbone", "hf-clip", "--pretrained", model,
                       "--method", "zeroshot", "--out", run, "--workers", "0")
    assert code == 0, err
    config = json.loads((model / "tokenizer_config.json").read_text())
    (model / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 76}))
    assert load_backbone("hf-clip", None, str(model)).fingerprint() != before
    code, _, err = cli("predict", isic_small / "test", "--model", run, "--workers", "0")
    assert code == 0, err
    assert (f"warning: backbone 'hf-clip' differs from the one {run} was trained with (tokenizer: "
            "tokenizer_config.json differs from the run's)") in err.replace("\n", " ")


def test_a_run_that_named_its_model_folder_by_name_still_matches_it(hf_clip, hf_clip_folder):
    """Runs trained before a folder was named by its content recorded "NAME#<config digest>", the folder's
    name, and no tokenizer: they match the same config and weights, and nothing else."""
    from vipcli.weights_identity import same_backbone

    now = hf_clip.describe()
    digest = now["arch"].rpartition("#")[2]
    earlier = {key: value for key, value in now.items() if key not in ("tokenizer", "preprocessor")}
    earlier.update(arch=f"{hf_clip_folder.name}#{digest}", pretrained=hf_clip_folder.name)
    assert same_backbone("0123456789abcdef", earlier, hf_clip.fingerprint(), now)
    assert not same_backbone("0123456789abcdef", {**earlier, "arch": "model#0000000000000000"},
                             hf_clip.fingerprint(), now)
    other_weights = {**earlier, "weights": {"files": [{"file": "model.safetensors", "size": 1, "sha256": "0" * 64}]}}
    assert not same_backbone("0123456789abcdef", other_weights, hf_clip.fingerprint(), now)
