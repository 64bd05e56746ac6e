"""The `biomedclip` backbone: open_clip models with a Hugging Face BERT-style text tower."""

from __future__ import annotations

import torch

from vip_backbones.openclip_base import OpenClipBackbone
from vip_backbones import openclip_weights
from vipcli.errors import UsageError

BIOMEDCLIP_ID = openclip_weights.BIOMEDCLIP_ID  # the default --arch, named here as before


class BiomedClipBackbone(OpenClipBackbone):
    """BiomedCLIP (PubMedBERT text, ViT-B/16 image) by default; any open_clip HF-text model.

    `--arch` takes an `hf-hub:`/`local-dir:` id or a model-config JSON with an `hf_model_name`
    text tower; `--pretrained` a local weights file or `none` (the hub id carries its weights).
    """

    default_arch, default_pretrained = openclip_weights.BIOMEDCLIP_DEFAULTS  # the hub id, which carries its own weights

    def __init__(self, arch: str | None = None, pretrained: str | None = None, device=None):
        super().__init__(arch, pretrained, device)
        text = getattr(self.model, "text", None)
        if text is None or not hasattr(text, "transformer") or not hasattr(text, "pooler"):
            raise UsageError(
                f"{self.arch} has no Hugging Face text tower",
                "use --backbone clip for models with a CLIP text transformer",
            )
        self.text = text
        self.context_length = int(self.tokenizer.context_length)
        self.pad_token_id = int(text.config.pad_token_id or 0)
        self.token_width = int(text.transformer.embeddings.word_embeddings.weight.shape[1])

    def describe(self) -> dict:
        """The open_clip identity; a hub model's id stands for its weights when no file is given."""
        # the hub id is the weights when no explicit file is given
        described = super().describe()
        if not self.random_weights and self.pretrained is None and self.model_name.startswith("hf-hub:"):
            described["pretrained"] = described["weights"] = self.model_name
        return described

    def tokenize(self, texts) -> torch.Tensor:
        """Texts -> [N, context_length] ids with the model's BERT tokenizer ([CLS] ... [SEP], padded)."""
        return self.tokenizer(list(texts)).long()  # [N, context_length]

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N, L, W] BERT word embeddings (no positions: the tower adds them)."""
        return self.text.transformer.embeddings.word_embeddings(ids.to(self.device))  # [N, L, W]

    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] word embeddings -> [N, D]: BERT with padding masked out, pooled, projected."""
        mask = (ids != self.pad_token_id).long().to(self.device)  # [N, L]; padding is masked out
        out = self.text.transformer(inputs_embeds=embeds, attention_mask=mask)
        pooled = self.text.pooler(out, mask)  # [N, W]
        return self.text.proj(pooled)  # [N, D]
