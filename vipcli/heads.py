"""The learnable parts of ViP and its baselines, on top of frozen image and text features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vipcli.prompts import PromptBank, encode_prompts


def pad_by_class(features: torch.Tensor, class_index: torch.Tensor, num_classes: int):
    """Group prompt features by class into a padded block.

    Args:
        features: [P, D] one row per prompt.
        class_index: [P] the class of each row.
    Returns:
        (padded [C, K, D], mask [C, K] True where a real prompt sits), K the most prompts of a class.
    """
    counts = torch.bincount(class_index, minlength=num_classes)  # [C]
    width = int(counts.max())
    slot = torch.zeros_like(class_index)
    for c in range(num_classes):
        members = (class_index == c).nonzero().flatten()
        slot[members] = torch.arange(len(members), device=class_index.device)
    padded = features.new_zeros(num_classes, width, features.shape[1])  # [C, K, D]
    padded[class_index, slot] = features
    mask = torch.zeros(num_classes, width, dtype=torch.bool, device=features.device)
    mask[class_index, slot] = True
    return padded, mask


class MergePrompt(nn.Module):
    """MeP: a learned token per class attends over that class's symptom features.

    q_c = W_q g_c;  K_c = T_c W_k^T;  a_c = softmax(q_c K_c^T / sqrt(D));  s_c = g_c + a_c T_c
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.randn(num_classes, dim) * 0.02)  # [C, D] g_c
        self.w_q = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, dim)))  # [D, D] (y = x @ w.T)
        self.w_k = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, dim)))  # [D, D]

    def forward(self, symptoms: torch.Tensor, mask: torch.Tensor):
        """Merge padded symptom features [C, K, D] (mask [C, K]) into class embeddings.

        Returns:
            (s [C, D], a [C, K] attention weights, zero on padding)
        """
        query = self.token @ self.w_q.T  # [C, D]
        keys = symptoms @ self.w_k.T  # [C, K, D]
        scores = torch.einsum("cd,ckd->ck", query, keys) / math.sqrt(symptoms.shape[-1])  # [C, K]
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # [C, K]
        merged = self.token + torch.einsum("ck,ckd->cd", weights, symptoms)  # [C, D]
        return merged, weights


class PromptClassifier(nn.Module):
    """Classes as text prompts: ViP, its ablations, CoOp and the zero-shot baselines.

    logit_c(x) = exp(logit_scale) * cos(f(x), s_c) with a learned merge, or
    exp(logit_scale) * mean_j cos(f(x), t_cj) without one.
    """

    def __init__(self, backbone, bank: PromptBank, n_ctx: int, class_specific: bool, learned_merge: bool):
        super().__init__()
        self._backbone = [backbone]  # a list keeps the frozen towers out of this module's parameters
        self.bank = bank
        width, num_classes = backbone.token_width, bank.num_classes
        shape = (num_classes, n_ctx, width) if class_specific else (n_ctx, width)
        self.context = nn.Parameter(torch.randn(*shape) * 0.02) if n_ctx > 0 else None  # [M, W] | [C, M, W]
        self.merge = MergePrompt(num_classes, backbone.embed_dim) if learned_merge else None
        self.register_buffer("logit_scale", backbone.logit_scale.detach().clone().float())
        self._frozen_text: torch.Tensor | None = None  # prompt features when nothing text-side learns

    @property
    def backbone(self):
        return self._backbone[0]

    def prompt_features(self) -> torch.Tensor:
        """[P, D] text features of every prompt under the current context."""
        if self.context is None:
            if self._frozen_text is None:
                with torch.no_grad():
                    self._frozen_text = encode_prompts(self.backbone, self.bank, None)
            return self._frozen_text
        return encode_prompts(self.backbone, self.bank, self.context)

    def class_embeddings(self):
        """Class embeddings E [C, D] (so logits = scale * normalize(f) @ E.T) and details.

        Returns:
            (E [C, D], prompt features [P, D], weights [C, K], mask [C, K])
        """
        features = self.prompt_features()  # [P, D]
        padded, mask = pad_by_class(features, self.bank.class_index.to(features.device), self.bank.num_classes)
        if self.merge is not None:
            merged, weights = self.merge(padded, mask)  # [C, D], [C, K]
            return F.normalize(merged, dim=-1), features, weights, mask
        unit = F.normalize(padded, dim=-1) * mask[..., None]  # [C, K, D]
        weights = mask / mask.sum(dim=1, keepdim=True)  # [C, K] uniform
        return (unit * weights[..., None]).sum(dim=1), features, weights, mask  # mean of cosines

    def logits_from(self, image_features: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """[B, D] image features, [C, D] class embeddings -> [B, C] logits."""
        return self.logit_scale.exp() * F.normalize(image_features, dim=-1) @ class_embeddings.T

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.logits_from(image_features, self.class_embeddings()[0])  # [B, C]


class LinearProbe(nn.Module):
    """Logistic regression on L2-normalised frozen image features."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)  # weight [C, D], bias [C]

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear(F.normalize(image_features, dim=-1))  # [B, C]
