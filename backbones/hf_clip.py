"""The `hf-clip` backbone: any Hugging Face transformers `CLIPModel` (PLIP, PubMedCLIP, fine-tunes).

Also the base for plugins of published transformers CLIP models: subclass `HFClipBackbone` and set
`default_pretrained` (e.g. "vinid/plip").
"""

from __future__ import annotations

import torch

from vip_backbones.hf_base import TransformersBackbone
from vip_backbones.hf_weights import HF_CLIP_CLASS, HF_CLIP_DEFAULT, HF_CLIP_TYPES
from vip_backbones.pooled_tower import CausalLayer, pooled_causal_tower
from vipcli.backbone import Backbone, CausalTextTower, PromptParts, causal_mask

LEGACY_EOS_ID = 2  # CLIP configs saved before transformers PR #24773 pool at the largest id instead
SELF_CHECK_TOLERANCE = 1e-4  # relative difference from the model's own forward, far above float32 rounding


def _plain_layer(layer) -> bool:
    """True for a transformers `CLIPEncoderLayer` whose arithmetic `pooled_causal_tower` may compute.

    The layer, its attention (eager or SDPA: the same arithmetic) and its MLP must be the classes
    of transformers' CLIP module itself, with no attention dropout while training; anything else
    (a subclass, a patched or adapted layer) leaves the text tower to the model's own forward.
    """
    from transformers.models.clip import modeling_clip

    attn = getattr(layer, "self_attn", None)
    return (type(layer) is modeling_clip.CLIPEncoderLayer and isinstance(attn, modeling_clip.CLIPAttention)
            and type(attn).__module__ == modeling_clip.__name__ and type(layer.mlp) is modeling_clip.CLIPMLP
            and (not attn.training or not attn.dropout))


def _causal_layer(layer) -> CausalLayer:
    """A plain `CLIPEncoderLayer` as the pieces `pooled_causal_tower` computes."""
    attn = layer.self_attn
    return CausalLayer(
        norm=layer.layer_norm1,
        qkv=lambda x: torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], dim=-1),  # [T, 3E]
        heads=attn.num_heads,
        out=attn.out_proj,  # [T, E] -> [T, W]
        feed_forward=lambda x: layer.mlp(layer.layer_norm2(x)),  # [T, W]
        scale=float(attn.scale),
    )


class HFClipBackbone(CausalTextTower, TransformersBackbone):
    """transformers `CLIPModel` with its own tokenizer (OpenAI CLIP ViT-B/16 by default).

    The text tower is causal and pooled at the first end token; CLIP tokenizers pad with that same
    token, so `end_token_id` is declared and trimming keeps every prompt through its end token.
    `--pretrained`: a hub id (e.g. vinid/plip) or a local `save_pretrained` folder, or `none`;
    `--arch`: where config and tokenizer come from if not beside the weights.

    On the CPU the text tower computes only what the pooled end token needs
    (`vip_backbones.pooled_tower`), as the `clip` backbone does; the first such call is compared
    with the model's own forward, which is used instead should the two ever differ. On other
    devices, and in the reference mode (`plain_text_tower`), the model's own forward runs.
    """

    model_class = HF_CLIP_CLASS
    model_types = HF_CLIP_TYPES
    default_pretrained = HF_CLIP_DEFAULT

    def _set_text_attributes(self) -> None:
        eos = self.model.config.text_config.eos_token_id
        self.end_token_id = int(self.tokenizer.eos_token_id if eos in (None, LEGACY_EOS_ID) else eos)
        super()._set_text_attributes()

    def projection_dim(self) -> int:
        """D: the output size of CLIP's text projection."""
        return self.model.text_projection.out_features

    # the text tower on the CPU -----------------------------------------------------------

    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] -> [N, D]; on the CPU through the pooled path (the end token alone is projected)."""
        if not self._pooled_path():
            return super().encode_text_embeds(embeds, ids)
        return self._pooled(embeds, ids)

    def encode_text_parts(self, parts: PromptParts, ids: torch.Tensor) -> torch.Tensor:
        """As `encode_text_embeds(parts.embeds(), ids)`; on the CPU each group's shared tokens are computed once.

        A subclass that overrides `encode_text_embeds` gets the spelled-out default, so its own text
        path serves training, validation and predict alike.
        """
        if type(self).encode_text_embeds is not HFClipBackbone.encode_text_embeds or not self._pooled_path():
            return Backbone.encode_text_parts(self, parts, ids)
        return self._pooled(parts.embeds(), ids, parts.group, parts.shared)

    def _pooled_path(self) -> bool:
        """Whether the text tower runs through `pooled_causal_tower`: on the CPU, over plain CLIP layers,
        except in the reference mode (`plain_text_tower`), which runs the model's own forward."""
        layers = self.model.text_model.encoder.layers
        return (self.device.type == "cpu" and not self.plain_text_tower
                and self.__dict__.get("_pooled_path_agrees", True) and len(layers) > 0
                and all(_plain_layer(layer) for layer in layers))

    def _pooled(self, embeds: torch.Tensor, ids: torch.Tensor, group: torch.Tensor | None = None,
                shared: int = 0) -> torch.Tensor:
        """The text features [N, D] of embeddings [N, L, W], computing only what each end token needs."""
        if "_pooled_path_agrees" not in self.__dict__:  # once per backbone: the same features as the model's own
            with torch.no_grad():
                own = TransformersBackbone.encode_text_embeds(self, embeds.detach(), ids)  # [N, D]
                fast = self._pooled_features(embeds.detach(), ids)  # [N, D]
            self._pooled_path_agrees = bool(
                (fast - own).norm() <= SELF_CHECK_TOLERANCE * own.norm().clamp(min=torch.finfo(own.dtype).tiny))
            if not self._pooled_path_agrees:
                return TransformersBackbone.encode_text_embeds(self, embeds, ids)
        return self._pooled_features(embeds, ids, group, shared)

    def _pooled_features(self, embeds: torch.Tensor, ids: torch.Tensor, group: torch.Tensor | None = None,
                         shared: int = 0) -> torch.Tensor:
        text = self.model.text_model
        length = ids.shape[1]
        positions = text.embeddings.position_embedding.weight[:length]  # [L, W]
        x = embeds.to(self.device, positions.dtype) + positions  # [N, L, W]
        ids = ids.to(self.device)
        if text.eos_token_id == LEGACY_EOS_ID:  # as the model pools: the largest id
            pool_at = ids.argmax(dim=-1)  # [N]
        else:
            pool_at = (ids == text.eos_token_id).int().argmax(dim=-1)  # [N] the first end token
        layers = [_causal_layer(layer) for layer in text.encoder.layers]
        hidden = pooled_causal_tower(layers, x, causal_mask(length, self.device), pool_at, pack=True,
                                     group=group, shared=shared)  # [N, W]
        return self.model.text_projection(text.final_layer_norm(hidden)).float()  # [N, D]
