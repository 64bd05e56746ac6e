"""Comparing a backbone's own text path with the library's forward: features and gradients to rounding.

Shared by the `clip` (open_clip) and `hf-clip` (transformers) tests.
"""

from __future__ import annotations

import torch

from vipcli.backbone import PromptParts


def features_and_grads(path, backbone, ids):
    """(features, gradient w.r.t. the token embeddings) of `path(backbone, embeds, ids)`."""
    embeds = backbone.embed_tokens(ids).detach().requires_grad_(True)
    features = path(backbone, embeds, ids)
    (features * torch.linspace(-1, 1, features.shape[-1])).sum().backward()  # every feature counts differently
    return features.detach(), embeds.grad


def assert_equal_to_rounding(ours, theirs):
    """Each pair of tensors is equal up to float32 summation order (and not all zero)."""
    for got, expected in zip(ours, theirs):
        assert expected.abs().max() > 0
        assert float((got - expected).norm() / expected.norm()) < 1e-5


def parts_features_and_grads(encode, backbone, ids, group: torch.Tensor, shared: int):
    """(features, gradient w.r.t. the shared prefixes) of `encode(parts)` for prompts `ids` given as
    `PromptParts`: each group's start token and `shared - 1` seeded context vectors, then each row's words."""
    count = int(group.max()) + 1
    words = backbone.embed_tokens(ids).detach()  # [N, L, W]
    context = torch.randn(count, shared - 1, backbone.token_width, generator=torch.Generator().manual_seed(0))
    start = words[:1, :1].expand(count, -1, -1)  # [G, 1, W]
    prefixes = torch.cat([start, context], dim=1).requires_grad_(True)  # [G, K, W]
    features = encode(PromptParts(prefixes, group, words[:, shared:]))  # [N, D]
    (features * torch.linspace(-1, 1, features.shape[-1])).sum().backward()
    return features.detach(), prefixes.grad
