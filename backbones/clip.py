"""The `clip` backbone: any open_clip model with a causal CLIP text transformer.

Also the base for plugins of published open_clip CLIP models (QuiltNet, UniMed-CLIP, ...): subclass
`ClipBackbone` and change `default_arch` / `default_pretrained`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vip_backbones.openclip_base import OpenClipBackbone
from vip_backbones.pooled_tower import CausalLayer, pooled_causal_tower
from vipcli.backbone import PromptParts
from vipcli.errors import UsageError


def _plain_block(block) -> bool:
    """True for an open_clip `ResidualAttentionBlock` whose self-attention `run_text_blocks` may compute.

    Anything else (a subclass, open_clip's custom attention, key/value biases, dropout while
    training) runs through the block's own forward.
    """
    from open_clip.transformer import ResidualAttentionBlock

    attn = getattr(block, "attn", None)
    return (type(block) is ResidualAttentionBlock and type(attn) is torch.nn.MultiheadAttention
            and attn._qkv_same_embed_dim and attn.bias_k is None and attn.bias_v is None
            and not attn.add_zero_attn and (attn.dropout == 0.0 or not attn.training))


def _self_attention(attn: torch.nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """What `attn(x, x, x, attn_mask=mask)` computes, on a batch-first [N, L, E] `x`, as one matrix product per projection.

    `nn.MultiheadAttention` turns a batch-first input into a strided [L, N, E] view, which torch
    multiplies by the projection as N batched products over a broadcast weight: on the CPU the
    text step's input projections took twice the time of one matrix product.
    """
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)  # [N, L, 3E]
    q, k, v = (t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2) for t in qkv.chunk(3, dim=-1))  # [N, H, L, E/H]
    mask = mask.to(q.dtype) if mask is not None else None  # additive, as open_clip passes it
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [N, H, L, E/H]
    return attn.out_proj(out.transpose(1, 2).flatten(2))  # [N, L, E]


def run_text_blocks(transformer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """open_clip's text `Transformer` over batch-first embeddings [N, L, W] -> [N, L, W].

    The same arithmetic as `transformer(x, attn_mask=mask)`, with the self-attention of plain
    blocks computed by `_self_attention` (features and gradients equal to float rounding; checked
    in the tests); other blocks run as open_clip defines them.
    """
    batch_first = getattr(transformer, "batch_first", True)
    for block in transformer.resblocks:
        if _plain_block(block):
            x = x + block.ls_1(_self_attention(block.attn, block.ln_1(x), mask))  # [N, L, W]
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        elif batch_first:
            x = block(x, attn_mask=mask)
        else:  # a block that expects [L, N, W]
            x = block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    return x


def _causal_layer(block) -> CausalLayer:
    """A plain open_clip `ResidualAttentionBlock` as the pieces `pooled_causal_tower` computes."""
    attn = block.attn
    return CausalLayer(
        norm=block.ln_1,
        qkv=lambda x: F.linear(x, attn.in_proj_weight, attn.in_proj_bias),  # [T, 3E]
        heads=attn.num_heads,
        out=lambda o: block.ls_1(attn.out_proj(o)),  # [T, W]
        feed_forward=lambda x: block.ls_2(block.mlp(block.ln_2(x))),  # [T, W]
    )


def pooled_text_blocks(transformer, x: torch.Tensor, mask: torch.Tensor, pool_at: torch.Tensor,
                       pack: bool = False, group: torch.Tensor | None = None, shared: int = 0) -> torch.Tensor:
    """open_clip's causal text tower at one pooled position per row: [N, L, W] -> [N, W].

    What `run_text_blocks(transformer, x, mask)[arange(N), pool_at]` gives, doing only the work
    that output needs (`vip_backbones.pooled_tower.pooled_causal_tower`, which says what is left
    out and what `pack`, `group` and `shared` mean). Features and gradients equal open_clip's own
    tower to float rounding (checked in the tests). The caller checks that `mask` is causal and
    that the pooled position is the output it needs (`ClipBackbone._pool_positions`); every block
    must be `_plain_block` (else ValueError).
    """
    if not all(_plain_block(block) for block in transformer.resblocks) or not len(transformer.resblocks):
        raise ValueError("pooled_text_blocks needs plain open_clip ResidualAttentionBlocks; use run_text_blocks")
    layers = [_causal_layer(block) for block in transformer.resblocks]
    return pooled_causal_tower(layers, x, mask, pool_at, pack=pack, group=group, shared=shared)


class ClipBackbone(OpenClipBackbone):
    """CLIP (OpenAI ViT-B/16 by default) through open_clip.

    `--arch` takes an open_clip model name or a model-config JSON; `--pretrained` an open_clip
    tag (default `openai`), a local weights file, an `hf-hub:`/`local-dir:` id, or `none`.
    """

    cuda_graphs = True  # the causal text tower reads nothing back from the device

    def __init__(self, arch: str | None = None, pretrained: str | None = None, device=None):
        super().__init__(arch, pretrained, device)
        self.text = self.model if hasattr(self.model, "token_embedding") else getattr(self.model, "text", None)
        if self.text is None or not hasattr(self.text, "token_embedding"):
            raise UsageError(
                f"{self.arch} has no CLIP-style text transformer",
                "use --backbone biomedclip for models with a Hugging Face (BERT-style) text tower",
            )
        if getattr(self.text, "cls_emb", None) is not None:
            raise UsageError(f"{self.arch} appends a CLS token to its text (CoCa); not supported by the clip backbone")
        self.token_width = int(self.text.token_embedding.weight.shape[1])
        self.context_length = int(self.text.positional_embedding.shape[0])
        self.pool_type = getattr(self.text, "text_pool_type", None) or getattr(self.text, "pool_type", "argmax")
        self.eos_id = getattr(self.text, "text_eos_id", None) or getattr(self.text, "eos_id", None)
        self.pad_token_id = int(getattr(self.tokenizer, "pad_id", None) or 0)
        if self.pool_type in ("argmax", "eos"):  # pooled at the end token (argmax: CLIP's has the largest id)
            end = self.eos_id if self.pool_type == "eos" else getattr(self.tokenizer, "eot_token_id", None)
            self.end_token_id = None if end is None else int(end)

    def tokenize(self, texts) -> torch.Tensor:
        """Texts -> [N, context_length] ids with open_clip's tokenizer for this architecture."""
        return self.tokenizer(list(texts)).long()  # [N, context_length]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, L, W] token embeddings of the text tower."""
        return self.text.token_embedding(ids.to(self.device))  # [N, L, W]

    def sequence_lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N] positions that matter: up to the end token under a causal mask, else all."""
        if self.end_token_id is not None and self.text.attn_mask is not None:
            return super().sequence_lengths(ids)  # causal: nothing after the end token matters
        return torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)  # every position may matter

    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] token embeddings -> [N, D] text features (the tower's own pooling)."""
        return self._encode(embeds, ids)

    def encode_text_parts(self, parts: PromptParts, ids: torch.Tensor) -> torch.Tensor:
        """As `encode_text_embeds(parts.embeds(), ids)`; on the CPU each group's shared tokens are computed once.

        A subclass that overrides `encode_text_embeds` gets the spelled-out default, so its own text
        path serves training, validation and predict alike.
        """
        if type(self).encode_text_embeds is not ClipBackbone.encode_text_embeds:
            return super().encode_text_parts(parts, ids)
        return self._encode(parts.embeds(), ids, parts.group, parts.shared)

    def _encode(self, embeds: torch.Tensor, ids: torch.Tensor, group: torch.Tensor | None = None,
                shared: int = 0) -> torch.Tensor:
        """The text tower over [N, L, W] embeddings -> [N, D]; rows of one `group` share their first `shared`."""
        from open_clip.transformer import text_global_pool

        length = ids.shape[1]
        cast_dtype = self.text.transformer.get_cast_dtype()
        x = embeds.to(cast_dtype) + self.text.positional_embedding[:length].to(cast_dtype)  # [N, L, W]
        mask = self.text.attn_mask
        mask = mask[:length, :length] if mask is not None else None
        ids = ids.to(self.device)
        pool_at = None if self.plain_text_tower else self._pool_positions(ids)
        if pool_at is not None:  # causal, pooled at one token: only the work that token needs
            pack = x.device.type == "cpu"
            pooled = self.text.ln_final(pooled_text_blocks(
                self.text.transformer, x, mask, pool_at, pack=pack, group=group if pack else None,
                shared=shared if pack else 0))  # [N, W]
        else:  # every position; the reference mode (plain_text_tower) through open_clip's own forward
            blocks = self.text.transformer(x, attn_mask=mask) if self.plain_text_tower else run_text_blocks(
                self.text.transformer, x, mask)  # [N, L, W]
            x = self.text.ln_final(blocks)
            pooled = text_global_pool(x, ids, self.pool_type, eos_token_id=self.eos_id)  # [N, W]
        projection = self.text.text_projection
        if projection is None:
            return pooled
        return projection(pooled) if isinstance(projection, torch.nn.Module) else pooled @ projection  # [N, D]

    def _pool_positions(self, ids: torch.Tensor) -> torch.Tensor | None:
        """[N] the token each row is pooled at, when `pooled_text_blocks` may compute the tower (else None)."""
        mask = self.text.attn_mask
        blocks = self.text.transformer.resblocks
        if self.pool_type not in ("argmax", "eos") or mask is None or not blocks or not all(
                _plain_block(block) for block in blocks):
            return None
        if self.pool_type == "argmax":
            return ids.argmax(dim=-1)  # as open_clip's text_global_pool
        return (ids == self.eos_id).int().argmax(dim=-1)
