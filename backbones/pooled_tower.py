"""A causal text tower computed only where its pooled token needs it.

CLIP-style text towers (open_clip's and transformers' `CLIPModel`) are pre-norm transformers under
a causal mask, read out at one token per prompt (the end token). The token at position p depends
on tokens 0..p alone, so most of the tower's work on a batch of prompts is not needed for the
pooled output. `pooled_causal_tower` skips it; each backbone describes its layers as
`CausalLayer`s (`vip_backbones.clip`, `vip_backbones.hf_clip`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class CausalLayer:
    """One pre-norm layer, `x + out(attention(qkv(norm(x)))) ` then `+ feed_forward(...)`, in pieces.

    Attributes:
        norm: the pre-attention norm, [T, W] -> [T, W].
        qkv: the query, key and value projections side by side, [T, W] -> [T, 3E].
        heads: attention heads (E divisible by it).
        out: the attention output projection (and any layer scale), [T, E] -> [T, W].
        feed_forward: the whole second branch, its own norm included, [T, W] -> [T, W].
        scale: the attention's query scale (None: 1 / sqrt(E / heads), as torch's default).
    """

    norm: Callable[[Tensor], Tensor]
    qkv: Callable[[Tensor], Tensor]
    heads: int
    out: Callable[[Tensor], Tensor]
    feed_forward: Callable[[Tensor], Tensor]
    scale: float | None = None


def pooled_rows(pool_at: Tensor, length: int, pack: bool, group: Tensor | None = None,
                shared: int = 0) -> tuple[Tensor | None, Tensor | None, Tensor, Tensor]:
    """Which rows of the flattened [N * L] tokens a pooled causal tower needs to compute.

    Returns (kept, spread, ends, pooled):
    - `kept` [T]: the tokens computed, as positions among the N * L (None: every token, T = N * L);
    - `spread` [N * L]: for every token, the computed row holding its value (None: `kept` is None);
    - `ends` [N]: where each row's pooled token sits among the computed ones;
    - `pooled` [N]: where it sits among all N * L.
    With `pack`, the tokens after each row's pooled one are left out, and, given `group` [N] and
    `shared` = K, the first K tokens of the rows of one group are computed once (for the group's
    first row): their values are the same, so under a causal mask so is every layer's output there.
    Tokens after a pooled one map to the first computed row in `spread`: no query whose output is
    kept reads them.
    Packing needs `pool_at` (and `group`) on the host, so it is for the CPU.
    """
    count = pool_at.shape[0]
    rows = torch.arange(count, device=pool_at.device)  # [N]
    pooled = rows * length + pool_at  # [N]
    if not pack:
        return None, None, pooled, pooled
    positions = torch.arange(length, device=pool_at.device)  # [L]
    source = rows[:, None].expand(count, length)  # [N, L] the row whose token holds each value
    if group is not None and shared > 0:
        first = torch.full((int(group.max()) + 1,), count, dtype=torch.long, device=rows.device).scatter_reduce(
            0, group, rows, "amin")  # [G'] first row of each group id (ids need not be contiguous)
        source = torch.where(positions[None] < shared, first[group][:, None], source)  # [N, L]
    own = source == rows[:, None]  # [N, L]
    needed = own & ((positions[None] <= pool_at[:, None]) | (positions[None] < shared))  # [N, L]
    kept = needed.flatten().nonzero().squeeze(1)  # [T]
    slot = torch.full((count * length,), -1, dtype=torch.long, device=rows.device)  # [N*L] computed row of each
    slot[kept] = torch.arange(kept.shape[0], device=rows.device)
    spread = slot[(source * length + positions).flatten()].clamp(min=0)  # [N*L]
    return kept, spread, spread[pooled], pooled


def pooled_causal_tower(layers: Sequence[CausalLayer], x: Tensor, mask: Tensor, pool_at: Tensor,
                        pack: bool = False, group: Tensor | None = None, shared: int = 0) -> Tensor:
    """The tower's output at one pooled position per row: [N, L, W] -> [N, W].

    What running every layer over all N x L tokens and reading row n at `pool_at[n]` gives, doing
    only the work that output needs. With a causal `mask`, the token at position p depends on
    tokens 0..p alone:
    - `pack=True` (the CPU, where the step is compute-bound) drops the tokens after each row's
      pooled one from every matrix product (prompts padded to the longest one: a third of the
      rows for vip's melanoma pack), spreading the rows back only around the attention itself;
    - `group` [N] and `shared` = K (with `pack`): rows of one group share their first K
      embeddings (the start token and a learned context, `vipcli.backbone.PromptParts`), so those
      tokens are computed once per group: a quarter of the remaining rows for vip's 8 prompts.
      Only the group's first row's `x` receives their gradient, so the caller must guarantee the
      rows' first K embeddings are one tensor broadcast (`PromptParts.embeds` is);
    - the last layer's output projection and feed-forward run on the pooled tokens only: about an
      eighth of a 6-layer tower's products. Its attention still runs for every query, with the
      same kernel as the other layers (torch's CPU attention for a single query sums in an order
      that depends on the thread count; this one does not).
    The caller checks that `mask` is causal and that the pooled position is the output it needs.

    Args:
        layers: the tower's layers, first to last (at least one).
        x: batch-first token embeddings, positions added [N, L, W].
        mask: the tower's additive causal mask [L, L].
        pool_at: [N] position of each row's pooled token.
        pack: leave out the tokens no pooled output needs (needs `pool_at` on the host: the CPU).
        group: [N] on the host, the group of each row (rows of a group share their first `shared`
            embeddings); None: no sharing.
        shared: K, how many leading embeddings the rows of a group share.
    """
    if not layers:
        raise ValueError("pooled_causal_tower needs at least one layer")
    N, L, W = x.shape
    kept, spread, ends, pooled = pooled_rows(pool_at, L, pack, group, shared)
    h = x.reshape(N * L, W)  # [N*L, W]
    if kept is not None:
        h = h.index_select(0, kept)  # [T, W]

    def attention(layer: CausalLayer) -> Tensor:  # [T, W] -> [N*L, E]: attention output before `out`
        qkv = layer.qkv(layer.norm(h))  # [T, 3E]
        if spread is not None:  # back to the padded layout; shared tokens repeated in every row
            qkv = qkv.index_select(0, spread)  # [N*L, 3E]
        q, k, v = (t.unflatten(-1, (layer.heads, -1)).transpose(1, 2)  # [N, H, L, E/H]
                   for t in qkv.view(N, L, -1).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=layer.scale)  # [N, H, L, E/H]
        return out.transpose(1, 2).reshape(N * L, -1)  # [N*L, E]

    *inner, last = layers
    for layer in inner:
        out = attention(layer)  # [N*L, E]
        h = h + layer.out(out if kept is None else out.index_select(0, kept))  # [T, W]
        h = h + layer.feed_forward(h)
    out = attention(last).index_select(0, pooled)  # [N, E]
    h = h.index_select(0, ends) + last.out(out)  # [N, W]
    return h + last.feed_forward(h)
