"""The `siglip` backbone: Hugging Face transformers `SiglipModel` (MedSigLIP, SigLIP).

SigLIP's text tower has no causal mask, is trained on prompts padded to a fixed length (64 tokens
for MedSigLIP) without an attention mask, and pools the *last* position through its head. So every
prompt is padded to `context_length` and never trimmed, and the features equal the model's own
`get_text_features(input_ids)`. Its `logit_bias` is left out: a bias shared by every class does not
change which class wins or the softmax over classes.
"""

from __future__ import annotations

import torch

from vip_backbones.hf_base import TransformersBackbone
from vip_backbones.hf_weights import SIGLIP_CLASS, SIGLIP_DEFAULT, SIGLIP_TYPES


class SiglipBackbone(TransformersBackbone):
    """transformers `SiglipModel` with its own tokenizer (MedSigLIP-448 by default).

    `--pretrained`: a hub id (default google/medsiglip-448, gated: accept its licence and log in) or
    a local `save_pretrained` folder, or `none`; `--arch`: where config and tokenizer come from if
    not beside the weights.
    """

    model_class = SIGLIP_CLASS
    model_types = SIGLIP_TYPES
    default_pretrained = SIGLIP_DEFAULT
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)
    squash = True  # SigLIP's processor resizes the whole image to size x size, no crop

    def projection_dim(self) -> int:
        """D: the output size of SigLIP's text head."""
        return self.model.text_model.head.out_features

    def sequence_lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """[N, L] ids -> [N] all L: SigLIP pools the last position and attends to every one."""
        # pooled at the last position with every position attended: nothing may be trimmed
        return torch.full((ids.shape[0],), ids.shape[1], dtype=torch.long)
