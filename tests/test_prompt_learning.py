"""ViP's dual prompt: context splicing, the merge prompt, logits and what learns."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vipcli.methods import METHODS, MethodSetup, build_method
from vipcli.methods.prompting import MergePrompt, PromptMethod, pad_by_class
from vipcli.prompts import build_prompt_bank, encode_prompts
from vipcli.registry import load_backbone

SYMPTOMS = {
    "melanoma": ["The spot is asymmetric on both sides", "Small, dark areas within the spot", "x-ray markings"],
    "nevus": ["The spot is symmetric on both sides", "The spot has clear, well-defined edges"],
}


@pytest.fixture(scope="module")
def backbone(tiny_clip):
    return load_backbone("clip", str(tiny_clip), "none")


def build_classifier(method_id, backbone, class_names, symptoms, **options):
    """A fresh method on the tiny backbone, through the public registry."""
    return build_method(method_id, MethodSetup(backbone, class_names, symptoms), options)


def test_context_is_spliced_by_position_after_the_start_token(backbone):
    bank = build_prompt_bank(backbone, [SYMPTOMS["melanoma"]], n_ctx=4)
    plain = backbone.tokenize([t for t in bank.texts])
    # words shift right by exactly M positions; the start token stays first
    assert torch.equal(bank.ids[:, 0], plain[:, 0])
    assert torch.equal(bank.ids[:, 5:8], plain[:, 1:4])
    context = torch.randn(4, backbone.token_width)
    embeds = torch.cat([bank.token_embeds[:, :1], context.expand(3, -1, -1), bank.token_embeds[:, 5:]], dim=1)
    expected = backbone.encode_text_embeds(embeds, bank.ids)
    torch.testing.assert_close(encode_prompts(backbone, bank, context), expected)


@pytest.mark.parametrize("per_class", [False, True], ids=["shared context", "class-specific context"])
@pytest.mark.parametrize("runs", [1, 3])
@pytest.mark.parametrize("same_start", [True, False], ids=["one start token", "start tokens differ"])
def test_prompts_with_learned_context_equal_the_spelled_out_prompts_features_and_gradients(backbone, per_class, runs,
                                                                                            same_start):
    from dataclasses import replace

    from vipcli.methods.prompting import encode_stacked_prompts

    bank = build_prompt_bank(backbone, [SYMPTOMS["melanoma"], SYMPTOMS["nevus"]], n_ctx=4)
    assert bank.same_start
    if not same_start:  # as a tokenizer whose prompts begin differently: every other one its own start
        words = bank.token_embeds.clone()
        words[1::2, :1] += torch.randn(words[1::2, :1].shape, generator=torch.Generator().manual_seed(1))
        bank = replace(bank, token_embeds=words, same_start=False)
    shape = (2, 4, backbone.token_width) if per_class else (4, backbone.token_width)
    generator = torch.Generator().manual_seed(0)
    starts = [torch.randn(shape, generator=generator) for _ in range(runs)]

    def spelled_out(context):  # [P, D]: the context written into every prompt, through encode_text_embeds
        per_prompt = context[bank.class_index] if per_class else context.expand(len(bank.texts), -1, -1)
        embeds = torch.cat([bank.token_embeds[:, :1], per_prompt, bank.token_embeds[:, 5:]], dim=1)
        return backbone.encode_text_embeds(embeds, bank.ids)

    def runs_of(encode):  # features and context gradients of every run
        contexts = [start.clone().requires_grad_(True) for start in starts]
        features = encode(contexts)
        sum((f * torch.linspace(-1, 1, f.numel()).reshape(f.shape)).sum() * (r + 1)
            for r, f in enumerate(features)).backward()
        return [(f.detach(), c.grad) for f, c in zip(features, contexts)]

    class Run:  # what encode_stacked_prompts reads of a method
        def __init__(self, context):
            self.bank, self.backbone, self.context = bank, backbone, context

    expected = runs_of(lambda contexts: [spelled_out(c) for c in contexts])
    one_by_one = runs_of(lambda contexts: [encode_prompts(backbone, bank, c) for c in contexts])
    stacked = runs_of(lambda contexts: encode_stacked_prompts([Run(c) for c in contexts]))
    for got in (one_by_one, stacked):
        for (features, gradient), (features_expected, gradient_expected) in zip(got, expected):
            torch.testing.assert_close(features, features_expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(gradient, gradient_expected, rtol=1e-4, atol=1e-6)


def test_the_prompt_bank_notices_prompts_that_do_not_share_their_start_tokens(backbone, monkeypatch):
    texts = SYMPTOMS["melanoma"] + SYMPTOMS["nevus"]
    assert build_prompt_bank(backbone, [texts], n_ctx=4).same_start
    tokenize = backbone.tokenize

    def varied_starts(texts):  # [N, L]: the second prompt begins with another token
        ids = tokenize(texts).clone()
        if len(ids) > 1:
            ids[1, 0] = ids[1, 0] - 1
        return ids

    monkeypatch.setattr(backbone, "tokenize", varied_starts)
    bank = build_prompt_bank(backbone, [texts], n_ctx=4)
    assert not bank.same_start
    parts = bank.prompt_parts(torch.zeros(1, 4, backbone.token_width))
    assert parts.group.tolist() == list(range(len(texts)))  # nothing shared: each prompt its own group


def test_without_context_prompts_equal_plain_text_features(backbone):
    bank = build_prompt_bank(backbone, [SYMPTOMS["nevus"]], n_ctx=0)
    expected = backbone.model.encode_text(backbone.tokenize(bank.texts))
    torch.testing.assert_close(encode_prompts(backbone, bank, None), expected, rtol=1e-5, atol=1e-5)


def test_too_long_prompt_is_a_clear_error(backbone):
    from vipcli.errors import VipError

    with pytest.raises(VipError, match="too long"):
        build_prompt_bank(backbone, [["word " * 74]], n_ctx=4)


def test_a_context_longer_than_any_prompt_allows_names_n_ctx_and_what_fits(backbone):
    from vipcli.errors import VipError

    texts = [["a short symptom", "another short symptom"]]
    limit = int(backbone.tokenize(["x"]).shape[1])
    with pytest.raises(VipError) as error:
        build_prompt_bank(backbone, texts, n_ctx=1000)
    assert str(error.value).startswith(f"--n-ctx 1000 is too many context vectors for the text tower: it takes {limit}")
    most = int(str(error.value).split("pass --n-ctx ")[1].split()[0])
    build_prompt_bank(backbone, texts, n_ctx=most)  # the suggested value fits
    with pytest.raises(VipError):
        build_prompt_bank(backbone, texts, n_ctx=most + 1)
    # one prompt that fits alone but not beside the context: the fix may be either
    long = [["a short symptom", " ".join(["dark"] * (limit - 6))]]
    with pytest.raises(VipError) as error:
        build_prompt_bank(backbone, long, n_ctx=8)
    assert "prompt too long" in str(error.value) and "or pass --n-ctx " in str(error.value)
    lower = int(str(error.value).split("or pass --n-ctx ")[1].split()[0])
    build_prompt_bank(backbone, long, n_ctx=lower)


def test_merge_prompt_follows_the_formula_on_hand_set_tensors():
    torch.manual_seed(0)
    merge = MergePrompt(num_classes=2, dim=3)
    with torch.no_grad():
        merge.token.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        merge.w_q.copy_(torch.eye(3) * 2)
        merge.w_k.copy_(torch.eye(3))
    symptoms = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [1.0, 1.0, 0]])  # [P=4, D=3]
    padded, mask = pad_by_class(symptoms, torch.tensor([0, 0, 1, 1]), 2)
    merged, weights = merge(padded, mask)
    # class 0: q = [2,0,0]; scores = [2, 0] / sqrt(3)
    a0 = torch.softmax(torch.tensor([2.0, 0.0]) / math.sqrt(3), 0)
    torch.testing.assert_close(weights[0], a0)
    torch.testing.assert_close(merged[0], torch.tensor([1.0, 0, 0]) + a0[0] * symptoms[0] + a0[1] * symptoms[1])
    a1 = torch.softmax(torch.tensor([2.0, 2.0]) / math.sqrt(3), 0)
    torch.testing.assert_close(merged[1], torch.tensor([0, 1.0, 0]) + a1[0] * symptoms[2] + a1[1] * symptoms[3])


def test_ragged_classes_get_zero_weight_on_padding():
    merge = MergePrompt(2, 4)
    padded, mask = pad_by_class(torch.randn(3, 4), torch.tensor([0, 0, 1]), 2)
    _, weights = merge(padded, mask)
    assert weights[1, 1] == 0 and torch.allclose(weights.sum(1), torch.ones(2))


def test_logits_are_scaled_cosine_to_the_merged_class_embedding(backbone):
    classifier = build_classifier("vip", backbone, list(SYMPTOMS), SYMPTOMS)
    image = torch.randn(5, backbone.embed_dim)
    features = encode_prompts(backbone, classifier.bank, classifier.context)
    padded, mask = pad_by_class(features, classifier.bank.class_index, 2)
    merged, _ = classifier.merge(padded, mask)
    expected = backbone.logit_scale.exp() * F.cosine_similarity(image[:, None], merged[None], dim=-1)
    torch.testing.assert_close(classifier(image), expected, rtol=1e-4, atol=1e-4)


def test_symptom_zeroshot_is_the_mean_cosine_over_symptoms(backbone):
    classifier = build_classifier("symptom-zeroshot", backbone, list(SYMPTOMS), SYMPTOMS)
    image = torch.randn(3, backbone.embed_dim)
    text = backbone.model.encode_text(backbone.tokenize(classifier.bank.texts))
    cos = F.cosine_similarity(image[:, None], text[None], dim=-1)  # [3, P]
    expected = torch.stack([cos[:, :3].mean(1), cos[:, 3:].mean(1)], dim=1) * backbone.logit_scale.exp()
    torch.testing.assert_close(classifier(image), expected, rtol=1e-4, atol=1e-4)


def test_only_the_learnable_tensors_get_gradients(backbone):
    classifier = build_classifier("vip", backbone, list(SYMPTOMS), SYMPTOMS)
    names = {n for n, p in classifier.named_parameters() if p.requires_grad}
    assert names == {"context", "merge.token", "merge.w_q", "merge.w_k"}
    loss = F.cross_entropy(classifier(torch.randn(4, backbone.embed_dim)), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in classifier.parameters())
    assert all(p.grad is None for p in backbone.model.parameters())
    dim, width = backbone.embed_dim, backbone.token_width
    assert sum(p.numel() for p in classifier.parameters()) == 4 * width + 2 * dim + 2 * dim * dim


@pytest.mark.parametrize("method", ["vip", "vip-cop-only", "vip-mep-only", "coop", "zeroshot", "symptom-zeroshot",
                                    "biomedcoop"])
def test_every_prompt_method_builds_and_gives_probabilities(backbone, method):
    classifier = build_classifier(method, backbone, list(SYMPTOMS), SYMPTOMS)
    logits = classifier(torch.randn(2, backbone.embed_dim))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    learnable = {n for n, p in classifier.named_parameters()}
    assert isinstance(classifier, PromptMethod)
    assert ("context" in learnable) == classifier.learns_context
    assert ("merge.token" in learnable) == classifier.learned_merge


def test_every_builtin_method_is_registered_through_the_entry_point_group():
    assert {"vip", "vip-cop-only", "vip-mep-only", "coop", "zeroshot", "symptom-zeroshot", "linear-probe",
            "tip-adapter", "tip-adapter-f", "biomedcoop", "clap"} <= set(METHODS.ids())


def test_class_specific_context_has_one_context_per_class(backbone):
    classifier = build_classifier("vip", backbone, list(SYMPTOMS), SYMPTOMS, class_specific_context=True)
    assert classifier.context.shape == (2, 4, backbone.token_width)
    assert isinstance(classifier, PromptMethod)


def _fresh_warnings(monkeypatch):
    """Forget which same-prompt warnings this process already printed."""
    from vipcli.methods import prompting

    monkeypatch.setattr(prompting, "_same_prompts_warned", set())


def test_two_classes_with_the_same_symptoms_are_warned_about_once(backbone, capsys, monkeypatch):
    _fresh_warnings(monkeypatch)
    shared = {"melanoma": SYMPTOMS["melanoma"], "nevus": SYMPTOMS["melanoma"][::-1]}  # order does not matter
    for _ in range(2):  # a benchmark builds the method once per row: one warning in all
        build_classifier("vip-cop-only", backbone, ["melanoma", "nevus"], shared)
    lines = [line for line in capsys.readouterr().err.splitlines() if "cannot tell them apart" in line]
    assert lines == ["warning: classes 'melanoma' and 'nevus' have the same prompts: method 'vip-cop-only' cannot "
                     "tell them apart by text; give each class its own symptoms"]


def test_a_merge_prompt_tells_classes_with_the_same_symptoms_apart_and_is_not_warned_about(backbone, capsys,
                                                                                          monkeypatch):
    """vip and vip-mep-only add a learned token per class to its merged symptoms (s_c = g_c + a_c T_c): equal
    symptoms still give the classes different embeddings, so 'cannot tell them apart by text' is untrue."""
    _fresh_warnings(monkeypatch)
    shared = {"melanoma": SYMPTOMS["melanoma"], "nevus": SYMPTOMS["melanoma"]}
    for method in ("vip", "vip-mep-only"):
        classifier = build_classifier(method, backbone, ["melanoma", "nevus"], shared)
        with torch.no_grad():
            classifier.merge.token[1] += 1.0  # as training moves each class's own token
            embeddings = classifier.class_embeddings()[0]  # [C, D]
        assert not torch.allclose(embeddings[0], embeddings[1])
    assert "cannot tell them apart" not in capsys.readouterr().err


def test_classes_with_their_own_symptoms_or_their_own_context_are_not_warned_about(backbone, capsys, monkeypatch):
    _fresh_warnings(monkeypatch)
    build_classifier("vip", backbone, ["melanoma", "nevus"], SYMPTOMS)
    shared = {"melanoma": SYMPTOMS["nevus"], "nevus": SYMPTOMS["nevus"]}
    build_classifier("coop", backbone, ["melanoma", "nevus"], shared, class_specific_context=True)  # its own context
    assert "cannot tell them apart" not in capsys.readouterr().err


def test_class_names_that_differ_only_in_case_give_zero_shot_the_same_prompts(backbone, capsys, monkeypatch):
    _fresh_warnings(monkeypatch)
    build_classifier("zeroshot", backbone, ["Melanoma", "melanoma", "nevus"], {})
    err = capsys.readouterr().err
    assert ("classes 'Melanoma' and 'melanoma' have the same prompts: method 'zeroshot' cannot tell them apart by "
            "text; rename a class folder so the names differ in words, not only in case or separators") in err
    assert "nevus" not in err


def test_a_tokenizer_that_loses_the_words_is_named_as_the_cause(backbone, capsys, monkeypatch):
    _fresh_warnings(monkeypatch)
    tokenize = backbone.tokenize

    def every_word_unknown(texts):
        ids = tokenize(texts)  # [N, L]: start, words, end, padding
        lengths = backbone.content_lengths(ids)
        positions = torch.arange(ids.shape[1])
        words = (positions[None] >= 1) & (positions[None] < lengths[:, None] - 1)  # [N, L]
        return torch.where(words, torch.full_like(ids, 3), ids)

    names = ["normal", "pneumonia"]  # one BPE token each, so the unknown-word rows are equal
    monkeypatch.setattr(backbone, "tokenize", every_word_unknown)
    build_classifier("coop", backbone, names, {})
    assert ("classes 'normal' and 'pneumonia' have prompts that the backbone's tokenizer turns into the same tokens: "
            "method 'coop' cannot tell them apart by text; check the tokenizer with `vip backbones check`"
            in capsys.readouterr().err)


def test_under_torchrun_only_rank_0_warns_of_classes_with_the_same_prompts(backbone, capsys, monkeypatch):
    """Every rank builds the method (vip train, vip benchmark's prompt check): one warning, not one per rank."""
    _fresh_warnings(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    build_classifier("zeroshot", backbone, ["Melanoma", "melanoma"], {})
    assert "cannot tell them apart" not in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    build_classifier("zeroshot", backbone, ["Melanoma", "melanoma"], {})
    assert "cannot tell them apart" in capsys.readouterr().err
