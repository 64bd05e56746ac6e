"""BiomedCoOp (Koleilat et al., CVPR 2025): CoOp regularised by an LLM prompt ensemble.

The learned prompt is CoOp's `[ctx] <class>.` with the context initialised from the words
"a photo of a". Each class also has a frozen ensemble of descriptive prompts (the paper: 50 LLM
descriptions per class; here: a few templates plus one prompt per symptom of the class's pack).
Training minimises

    CE(logits) + lambda_sccm * MSE(t_c, mean ensemble feature of c)
               + lambda_kdsp * KL(softmax(zero-shot logits of the pruned ensemble) || softmax(logits))

where the pruned ensemble drops outlier prompts: a prompt's score is its mean logit on the batch,
scores are turned into signed robust z-scores ((score - median) / median absolute deviation) and
prompts whose standardised z-score exceeds tau (1.5) are left out. Inference uses the learned prompts only.
What differs from the paper is written in docs/METHODS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vipcli.methods.base import check_setting
from vipcli.methods.prompting import ContextSettings, PromptMethod, readable_class_name

ENSEMBLE_TEMPLATES = ("a photo of a {}.", "a medical image showing {}.", "an image of {}, a type of finding.")
CONTEXT_INIT = "a photo of a"


@dataclass
class BiomedCoopSettings(ContextSettings):
    """The paper's defaults: lambda_sccm = lambda_kdsp = 1, tau = 1.5, context from 'a photo of a'."""

    sccm_lambda: float = 1.0
    kdsp_lambda: float = 1.0
    tau: float = 1.5
    init_context_from_words: bool = True

    def validate(self) -> None:
        """Refuse settings that cannot work: a negative loss weight, or a tau that prunes every prompt."""
        super().validate()
        for name in ("sccm_lambda", "kdsp_lambda"):
            check_setting(self, name, getattr(self, name) >= 0, "a loss weight must be 0 or more (0 drops the term)")
        check_setting(self, "tau", self.tau > 0, "must be above 0: the prompts more than tau standard deviations "
                      "from the mean are pruned, so 0 or less prunes them all")


def ensemble_prompts(class_name: str, symptoms: list[str]) -> list[str]:
    """The frozen knowledge prompts of one class: templates, then '<a photo of a class>, <symptom>'."""
    name = readable_class_name(class_name)
    prompts = [t.format(name) for t in ENSEMBLE_TEMPLATES]
    for symptom in symptoms:
        text = symptom.strip().rstrip(".")
        prompts.append(f"a photo of a {name}: {text[:1].lower() + text[1:]}.")
    return prompts


def prune_outliers(scores: torch.Tensor, tau: float) -> torch.Tensor:
    """Keep-mask of prompts whose robust z-score is within tau standard deviations of the mean.

    The robust z-score is signed, (s - median) / MAD, as in the authors' code: a prompt is
    an outlier for being far above or below the others, never for sitting at the median.

    Computed on the scores' device without reading anything back (a training step runs it).
    Args:
        scores: [K] one score per prompt of a class.
    Returns:
        [K] bool, all True when there are too few prompts (<3) or no spread to judge by.
    """
    if scores.numel() < 3:
        return torch.ones_like(scores, dtype=torch.bool)
    median = scores.median()
    mad = (scores - median).abs().median()
    z = (scores - median) / mad  # [K] signed robust z-scores; inf or nan where mad == 0, and then all are kept
    spread = z.std()
    no_spread = (mad == 0) | (spread == 0)  # 0-d
    return (((z - z.mean()) / spread).abs() <= tau) | no_spread


class BiomedCoop(PromptMethod):
    """BiomedCoOp: learned context + class name, kept close to a pruned LLM/symptom prompt ensemble."""

    summary = "BiomedCoOp: CoOp + consistency to a pruned symptom/LLM prompt ensemble"
    learns_context = True
    Settings = BiomedCoopSettings

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self._ensemble_block: tuple | None = None  # see ensemble_block()
        if stored is None:  # training: encode the ensemble now, so a prompt too long fails before any work
            self.ensemble_block()

    def make_prompts(self, setup):
        """One prompt per class: its readable name after the context."""
        return [[readable_class_name(name)] for name in setup.class_names]

    def initial_context(self, shape):
        """The word embeddings of 'a photo of a' when the context is 4 shared vectors (as the paper)."""
        words = CONTEXT_INIT.split()
        if not self.settings.init_context_from_words or shape != (len(words), self.backbone.token_width):
            return super().initial_context(shape)
        ids = self.backbone.tokenize([CONTEXT_INIT])  # [1, L]
        start = self.backbone.num_prefix_tokens
        length = int(self.backbone.sequence_lengths(ids)[0])
        with torch.no_grad():
            embeds = self.backbone.embed_tokens(ids)[0].float().cpu()  # [L, W]
        if length - start - 1 < len(words):  # tokenizer split the words differently: random init
            return super().initial_context(shape)
        return embeds[start:start + len(words)].clone()

    def ensemble_block(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
        """The frozen ensemble's text features (normalised) grouped by class, made once: padded
        [C, K, D], mask [C, K], class means [C, D], and per class how many prompts it has (they fill
        the first slots of its row)."""
        if self._ensemble_block is None:
            from vipcli.prompts import build_prompt_bank, encode_prompts

            texts = [ensemble_prompts(name, self.setup.symptoms.get(name, [])) for name in self.setup.class_names]
            bank = build_prompt_bank(self.backbone, texts, 0, trim=self.setup.trim)
            with torch.no_grad():
                features = F.normalize(encode_prompts(self.backbone, bank, None), dim=-1)  # [E, D]
            padded, mask = bank.layout.pad(features)  # [C, K, D], [C, K]
            mean = F.normalize((padded * mask[..., None]).sum(1), dim=-1)  # [C, D]
            self._ensemble_block = (padded, mask, mean, bank.layout.counts)
        return self._ensemble_block

    def batched_loss(self, image_features: torch.Tensor, labels: torch.Tensor,
                     prompt_features: torch.Tensor) -> torch.Tensor:
        """CE + SCCM + KDSP on image features [B, D] and labels [B], from the learned prompts' features [P, D].

        The one formula of the loss: `training_loss` calls it with the prompts it encodes, and
        `fit_sgd_many` with those it encoded for several runs at once.
        """
        scale = self.logit_scale.exp()
        text = self.class_embeddings(prompt_features)[0]  # [C, D] normalised learned prompts
        f = F.normalize(image_features.float(), dim=-1)  # [B, D]
        logits = scale * f @ text.T  # [B, C]
        padded, mask, mean, counts = self.ensemble_block()  # [C, K, D], [C, K], [C, D], C ints
        with torch.no_grad():
            scores = scale * torch.einsum("bd,ckd->bck", f, padded).mean(0)  # [C, K] mean logit per prompt
            keep = torch.zeros_like(mask)
            for c, count in enumerate(counts):
                keep[c, :count] = prune_outliers(scores[c, :count], self.settings.tau)
            selected = F.normalize((padded * keep[..., None]).sum(1), dim=-1)  # [C, D]
            zero_shot = scale * f @ selected.T  # [B, C]
        ce = F.cross_entropy(logits, labels)
        sccm = F.mse_loss(text, mean) * self.settings.sccm_lambda
        kdsp = F.kl_div(F.log_softmax(logits, 1), F.log_softmax(zero_shot, 1), reduction="sum",
                        log_target=True) / logits.numel() * self.settings.kdsp_lambda
        return ce + sccm + kdsp

    def training_loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CE + SCCM + KDSP on a batch of image features [B, D] (`batched_loss` of the current prompts)."""
        return self.batched_loss(features, labels, self.prompt_features())
