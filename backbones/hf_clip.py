"""The `hf-clip` backbone: any Hugging Face transformers `CLIPModel` (PLIP, PubMedCLIP, fine-tunes).

Also the base for plugins of published transformers CLIP models: subclass `HFClipBackbone` and set
`default_pretrained` (e.g. "vinid/plip").
"""

from __future__ import annotations

from vip_backbones.hf_base import TransformersBackbone
from vipcli.backbone import CausalTextTower

LEGACY_EOS_ID = 2  # CLIP configs saved before transformers PR #24773 pool at the largest id instead


class HFClipBackbone(CausalTextTower, TransformersBackbone):
    """transformers `CLIPModel` with its own tokenizer (OpenAI CLIP ViT-B/16 by default).

    The text tower is causal and pooled at the first end token; CLIP tokenizers pad with that same
    token, so `end_token_id` is declared and trimming keeps every prompt through its end token.
    `--pretrained`: a hub id (e.g. vinid/plip) or a local `save_pretrained` folder, or `none`;
    `--arch`: where config and tokenizer come from if not beside the weights.
    """

    model_class = "CLIPModel"
    model_types = ("clip",)
    other_family_hint = "use --backbone siglip for SigLIP models, --backbone clip for open_clip models"
    default_pretrained = "openai/clip-vit-base-patch16"

    def _set_text_attributes(self) -> None:
        eos = self.model.config.text_config.eos_token_id
        self.end_token_id = int(self.tokenizer.eos_token_id if eos in (None, LEGACY_EOS_ID) else eos)
        super()._set_text_attributes()

    def projection_dim(self) -> int:
        return self.model.text_projection.out_features
