"""The contract between vip's prompt-learning core and a frozen vision-language model.

A backbone plugin subclasses `Backbone` and is registered under the entry-point group
`vip.backbones`. The core never imports a plugin by name: it asks the registry.
"""

from __future__ import annotations

import abc
import hashlib
import json
from typing import Callable, Sequence

import torch
from torch import nn


class Backbone(abc.ABC):
    """A frozen image encoder and text encoder sharing a joint embedding space.

    Subclasses set the attributes below in `__init__(arch, pretrained, device)` and
    implement the abstract methods. Every backbone weight must be frozen.

    Attributes:
        id: the registry id (entry-point name), e.g. "clip".
        embed_dim: D, size of the joint image/text space.
        token_width: W, width of the text tower's token embeddings.
        context_length: the longest token sequence the text tower accepts.
        num_prefix_tokens: tokens before the words (1 for a start token or [CLS]);
            learned context vectors are spliced in right after them.
        pad_token_id: the id the tokenizer pads with.
        logit_scale: the backbone's own frozen log temperature (a 0-d tensor).
        device: the torch.device the towers live on.
    """

    id: str = ""
    embed_dim: int
    token_width: int
    context_length: int
    num_prefix_tokens: int = 1
    pad_token_id: int = 0
    logit_scale: torch.Tensor
    device: torch.device

    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids, padded to `context_length`. Returns LongTensor [N, L] on CPU."""

    @abc.abstractmethod
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings only (no positions). [N, L] -> [N, L, W]."""

    @abc.abstractmethod
    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Run the frozen text tower from token embeddings; pool using `ids`.

        `embeds` may be shorter than `context_length` (the core trims padding that cannot
        influence the pooled feature). Returns the unnormalised text feature [N, D].
        """

    @abc.abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised image features. [B, 3, H, W] -> [B, D]."""

    @abc.abstractmethod
    def image_transform(self, train: bool) -> Callable:
        """PIL RGB image -> float tensor [3, H, W]; `train` adds augmentation."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Identity of the weights (arch, pretrained id, versions): JSON-serialisable."""

    def modules(self) -> list[nn.Module]:
        """The torch modules holding the weights (frozen by `freeze`)."""
        return []

    # Shared behaviour, rarely overridden -------------------------------------------------

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Plain text features, [N, L] -> [N, D], through the same path as prompts."""
        ids = ids.to(self.device)
        return self.encode_text_embeds(self.embed_tokens(ids), ids)

    def sequence_lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """Length of each token sequence up to its last non-pad token. [N, L] -> [N]."""
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)  # [L]
        return ((ids != self.pad_token_id) * positions).amax(dim=1)

    def fingerprint(self) -> str:
        """A short digest of `describe()`: changes whenever the weights could change."""
        blob = json.dumps(self.describe(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def freeze(self) -> None:
        """Turn off gradients for every backbone weight and put towers in eval mode."""
        for module in self.modules():
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)


def clip_style_transform(size: int, mean: Sequence[float], std: Sequence[float], train: bool,
                         crop_scale: tuple[float, float] = (0.08, 1.0)) -> Callable:
    """The CLIP/CoOp image pipeline: bicubic resize and center crop, or random resized crop + flip.

    Args:
        size: square input resolution of the image tower.
        mean, std: per-channel normalisation of the backbone.
        train: whether to augment (RandomResizedCrop, horizontal flip).
        crop_scale: area range of the random crop (CoOp's default 0.08-1).
    """
    from torchvision import transforms as T

    bicubic = T.InterpolationMode.BICUBIC
    if train:
        steps = [T.RandomResizedCrop(size, scale=crop_scale, interpolation=bicubic), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(size, interpolation=bicubic), T.CenterCrop(size)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
