"""The contract between vip's prompt-learning core and a frozen vision-language model.

A backbone plugin subclasses `Backbone` and is registered under the entry-point group
`vip.backbones`. The core never imports a plugin by name: it asks the registry
(`vipcli.registry.load_backbone`), which checks the contract (`vipcli.backbone_contract`) before
any image is encoded and turns a plugin's own exceptions into a `PluginError` naming it.

A plugin reports a failure its user can fix (missing weights, a bad `--arch`) by raising `VipError`
(or `UsageError` for a bad option value), both importable from here: the message is shown as is,
in one line. Any other exception is reported as a fault of the plugin, naming it and the member
that raised it.
"""

from __future__ import annotations

import abc
import copy
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from vipcli.digests import text_digest
from vipcli.errors import UsageError, VipError
from vipcli.plugins import PluginError
from vipcli.processor_steps import DEFAULT_RESCALE, ProcessorCenterCrop, ScaledPixels

__all__ = ["Backbone", "CausalTextTower", "PluginError", "PromptParts", "UsageError", "VipError", "causal_mask",
           "clip_style_transform", "set_plain_text_tower", "using_plain_text_tower"]


@dataclass(frozen=True, eq=False)
class PromptParts:
    """N prompt embeddings whose first K tokens are shared within groups of prompts.

    Prompt n reads `prefixes[group[n]]` ([K, W]: its start token and learned context, K =
    `num_prefix_tokens` + n_ctx) and then `rest[n]` ([L-K, W]: its words, end token and padding).
    ViP's prompts all share one context, so one group holds them all; class-specific contexts give
    a group per class; a batched benchmark sweep a group per run. The prompts of a group need not be
    adjacent, nor the group ids contiguous. A causal tower may compute each group's K tokens once.
    """

    prefixes: torch.Tensor  # [G, K, W]
    group: torch.Tensor  # [N] int64 in 0..G-1, on the device of `prefixes`
    rest: torch.Tensor  # [N, L-K, W]

    def __post_init__(self):
        if self.group.dim() != 1 or self.rest.dim() != 3 or self.prefixes.dim() != 3 or \
                len(self.group) != len(self.rest) or self.prefixes.shape[-1] != self.rest.shape[-1]:
            raise ValueError(f"PromptParts needs prefixes [G, K, W], group [N] and rest [N, L-K, W]; got "
                             f"{list(self.prefixes.shape)}, {list(self.group.shape)} and {list(self.rest.shape)}")

    @property
    def shared(self) -> int:
        """K, the number of leading embeddings the prompts of a group share."""
        return self.prefixes.shape[1]

    def embeds(self) -> torch.Tensor:
        """Every prompt's embeddings spelled out: [N, L, W] (differentiable w.r.t. `prefixes`)."""
        return torch.cat([self.prefixes[self.group], self.rest.to(self.prefixes.dtype)], dim=1)


_UNSET = object()


def set_plain_text_tower(backbone, plain: bool = True) -> bool:
    """Set `backbone.plain_text_tower` (see `Backbone`) on the instance.

    Returns False for a backbone whose attributes cannot be set (`__slots__`), which is left as it
    is: such a plugin has no switch, so its one text path is what the reference runs.
    """
    try:
        backbone.plain_text_tower = plain
    except AttributeError:
        return False
    return True


@contextmanager
def using_plain_text_tower(backbone, plain: bool = True):
    """While the block runs, `backbone.plain_text_tower` is `plain`; the instance is as before after it."""
    before = getattr(backbone, "__dict__", {}).get("plain_text_tower", _UNSET)
    was_set = set_plain_text_tower(backbone, plain)
    try:
        yield
    finally:
        if was_set and before is _UNSET:
            del backbone.plain_text_tower
        elif was_set:
            backbone.plain_text_tower = before


class Backbone(abc.ABC):
    """A frozen image encoder and text encoder sharing a joint embedding space.

    Subclasses set the attributes below in `__init__(arch, pretrained, device)` and
    implement the abstract methods. Every backbone weight must be frozen.

    Attributes:
        id: the registry id (entry-point name), e.g. "clip"; set by the registry after `__init__`.
        embed_dim: D, size of the joint image/text space.
        token_width: W, width of the text tower's token embeddings.
        context_length: the longest token sequence the text tower accepts.
        num_prefix_tokens: tokens before the words (1 for a start token or [CLS], 0 for none);
            learned context vectors are spliced in right after them.
        pad_token_id: the id the tokenizer pads with (it may equal `end_token_id`).
        end_token_id: the token whose output becomes the text feature, for towers that pool at
            an end token (CLIP); None otherwise. Declare it whenever the tokenizer pads with that
            same id, or trimming cannot tell the end token from padding.
        logit_scale: the backbone's own frozen log temperature: a 0-d float tensor on the CPU or
            on `device` (vip copies it into the classifier, which lives on `device`).
        device: the torch.device the towers live on.
        cuda_graphs: `encode_text_embeds` may be captured in a CUDA graph for training steps
            (`vipcli.graphs`): it reads nothing back from the device (no `.item()`, `nonzero`,
            or Python `if` on tensor values) and its kernels depend only on the input shapes.
            False (the default) always runs it eagerly.
        plain_text_tower: set to True by vip on the instance of a run that trains the way the
            authors' code does (`vip train --reference`, the reference run of `vip benchmark
            --speed`). `encode_text_embeds` should then run the library's own forward over every
            position it is given, without the shortcuts a plugin may take (packing, pooled-token-
            only layers), so that the reference times what the authors' code computes. vip then
            hands it spelled-out prompts (never `encode_text_parts`) and uses no CUDA graph. A
            backbone without shortcuts ignores it.
        image_domain: the only kind of image the weights know, where they know a narrow one (the toy
            backbone: "the generated lesion world of `vip demo`"); "" (the default) for a general
            backbone. `vip train` names it when the test images do not show that a run tells its classes apart
            better than chance.
    """

    id: str = ""
    embed_dim: int
    token_width: int
    context_length: int
    num_prefix_tokens: int = 1
    pad_token_id: int = 0
    end_token_id: int | None = None
    logit_scale: torch.Tensor
    device: torch.device
    cuda_graphs: bool = False
    plain_text_tower: bool = False
    image_domain: str = ""

    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids, padded to `context_length`. Returns LongTensor [N, L] on CPU."""

    @abc.abstractmethod
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings only (no positions). [N, L] -> float32 [N, L, W]."""

    @abc.abstractmethod
    def encode_text_embeds(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Run the frozen text tower from token embeddings; pool using `ids`.

        `embeds` may be shorter than `context_length`: the core trims every prompt to
        `max(sequence_lengths(ids))`. Returns the unnormalised float32 text feature [N, D].
        """

    @abc.abstractmethod
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unnormalised float32 image features. [B, 3, H, W] -> [B, D]."""

    @abc.abstractmethod
    def image_transform(self, train: bool) -> Callable:
        """PIL RGB image -> float tensor [3, H, W]; `train` adds augmentation."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """Identity of the weights (arch, pretrained id, versions): plain JSON types only, and the
        same for every load of the same weights (it keys the feature cache and checkpoints)."""

    def modules(self) -> list[nn.Module]:
        """The torch modules holding the weights (frozen by `freeze`)."""
        return []

    # Shared behaviour, rarely overridden -------------------------------------------------

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Plain text features, [N, L] -> [N, D], through the same path as prompts."""
        ids = ids.to(self.device)
        return self.encode_text_embeds(self.embed_tokens(ids), ids)

    def encode_text_parts(self, parts: PromptParts, ids: torch.Tensor) -> torch.Tensor:
        """Text features of prompts given as shared prefixes and own rests: float32 [N, D].

        The same features, and the same gradient to `parts.prefixes`, as
        `encode_text_embeds(parts.embeds(), ids)`, which is what this default does. vip calls it
        for prompts with learned context: in training steps (on CUDA with graphs, the graph runs
        `encode_text_embeds` on the spelled-out prompts instead), and under `no_grad` for
        validation and predict. A causal tower may override it to compute each group's shared
        tokens once (the `clip` and `hf-clip` backbones do on the CPU); like `encode_text_embeds`, an override
        must not read tensors back from the device (`parts.group` lives there).
        `vip backbones check` compares an override with the default.
        """
        return self.encode_text_embeds(parts.embeds(), ids)

    def content_lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """Tokens each row occupies: through its last non-pad token and its end token. [N, L] -> [N].

        Used to check that a prompt still fits when learned context is inserted.
        """
        positions = torch.arange(1, ids.shape[1] + 1, device=ids.device)  # [L]
        lengths = ((ids != self.pad_token_id) * positions).amax(dim=1)  # [N]
        if self.end_token_id is not None:
            is_end = ids == self.end_token_id  # [N, L]
            first_end = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1) + 1, 0)  # [N]
            lengths = torch.maximum(lengths, first_end)
        return lengths

    def sequence_lengths(self, ids: torch.Tensor) -> torch.Tensor:
        """How many leading tokens decide each row's feature. [N, L] -> [N].

        The core runs the tower on `ids[:, :max(lengths)]`. The default, `content_lengths`, is exact
        for a causal tower pooled at its end token and for a tower that masks padding. Return the
        full length when every position matters (e.g. pooling at the last position with no mask).
        """
        return self.content_lengths(ids)

    def fingerprint(self) -> str:
        """A short digest of `describe()`: changes whenever the weights could change."""
        return text_digest(json.dumps(self.describe(), sort_keys=True, default=str))

    def freeze(self) -> None:
        """Turn off gradients for every backbone weight and put towers in eval mode."""
        for module in self.modules():
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)


class CausalTextTower:
    """Helpers for a text tower under a causal mask, pooled at the first end token (CLIP's layout).

    Mix it into a `Backbone` (`class Mine(CausalTextTower, Backbone)`) and set `end_token_id`.
    Then trimming keeps each prompt through its end token whatever the pad id (nothing after the
    end token can reach it under the causal mask), and `pool_at_end` reads the feature there.
    """

    end_token_id: int | None = None

    def end_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Position of the first end token in each row. [N, L] -> [N]; a row without one is an error.

        The answer is kept for as long as `ids` lives: a training step passes the same prompt ids
        every time, checking them reads from the device, and a CUDA graph of the step keeps
        reading the positions tensor it was captured with.
        """
        memo = self.__dict__.setdefault("_end_positions_memo", WeakIdKeyDictionary())  # ids -> (version, [N])
        remembered = memo.get(ids)
        if remembered is not None and remembered[0] == ids._version:
            return remembered[1]
        is_end = ids == self.end_token_id  # [N, L]
        missing = (~is_end.any(dim=1)).nonzero().flatten().tolist()
        if missing:
            raise ValueError(f"token row {missing[0]} has no end token (id {self.end_token_id}) to pool from; "
                             "tokenize() must end every sequence with it")
        positions = is_end.int().argmax(dim=1)  # [N]
        memo[ids] = (ids._version, positions)
        return positions

    def pool_at_end(self, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The hidden state at each row's end token. [N, L, W], [N, L] -> [N, W]."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)  # [N]
        return hidden[rows, self.end_positions(ids.to(hidden.device))]  # [N, W]

    def causal_mask(self, length: int) -> torch.Tensor:
        """Additive causal attention mask for `length` tokens on this backbone's device. [L, L]."""
        return causal_mask(length, getattr(self, "device", None))


def identity_taken_once(backbone, identify: Callable[[], dict]) -> dict:
    """A copy of `identify()`, computed at the first call and kept on `backbone`.

    For `describe()` of backbones whose identity reads files (weights, configs): taken once, at
    load, so later edits to the files do not change what a loaded backbone says it is.
    """
    if not hasattr(backbone, "_identity"):
        backbone._identity = identify()
    return copy.deepcopy(backbone._identity)


def causal_mask(length: int, device=None) -> torch.Tensor:
    """Additive mask letting position i attend to positions <= i: 0 on and below the diagonal,
    -inf above. [L, L] float32."""
    return torch.triu(torch.full((length, length), float("-inf"), device=device), diagonal=1)  # [L, L]


class UnscaledPixels:
    """A PIL image as a float tensor [3, H, W] of its 0-255 values (ToTensor's without its division by 255), for
    an image processor with `do_rescale: false`; a class, not a lambda, so DataLoader workers can pickle it."""

    def __call__(self, image) -> torch.Tensor:
        """The image's pixels, [C, H, W] float32 in 0-255."""
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(image).float()


def clip_style_transform(size: int, mean: Sequence[float], std: Sequence[float], train: bool,
                         crop_scale: tuple[float, float] = (0.08, 1.0), squash: bool = False,
                         resize: int | tuple[int, int] | Callable | None = None, interpolation: str = "bicubic",
                         rescale: bool = True, normalize: bool = True, rescale_factor: float | None = None,
                         processor_crop: bool = False) -> Callable:
    """The CLIP/CoOp image pipeline: bicubic resize and center crop, or random resized crop + flip.

    Args:
        size: square input resolution of the image tower.
        mean, std: per-channel normalisation of the backbone.
        train: whether to augment (RandomResizedCrop, horizontal flip).
        crop_scale: area range of the random crop (CoOp's default 0.08-1).
        squash: resize the whole image to size x size without cropping (SigLIP's evaluation
            preprocessing) instead of resizing the short side and center-cropping (CLIP's).
        resize: the short side (with squash: the side, or (height, width)) resized to before the centre
            crop to `size`, when not `size` itself (a processor that resizes to 256 and crops 224); or a step
            that resizes a PIL image as it decides (`vipcli.processor_steps.ProcessorResize`: an image
            processor's `longest_edge` cap, `max_height` box, or no resize), before the centre crop.
        interpolation: the resampling filter's name (torchvision's InterpolationMode, lower case).
        rescale: scale the pixels to 0-1 (False: keep 0-255, an image processor's `do_rescale: false`).
        normalize: subtract `mean` and divide by `std` (False: an image processor's `do_normalize: false`).
        rescale_factor: what `rescale` multiplies the pixels by (an image processor's `rescale_factor`);
            None or 1/255: ToTensor's division, which lets workers send 8-bit views.
        processor_crop: crop the centre where a transformers image processor does (`ProcessorCenterCrop`: offsets
            rounded down) instead of where torchvision's `CenterCrop` does (rounded half to even: a pixel further
            when the difference is 3 modulo 4).
    """
    from torchvision import transforms as T

    mode = T.InterpolationMode(interpolation)
    resize = size if resize is None else resize
    crop = ProcessorCenterCrop(size) if processor_crop else T.CenterCrop(size)
    if train:
        steps = [T.RandomResizedCrop(size, scale=crop_scale, interpolation=mode), T.RandomHorizontalFlip()]
    elif squash:
        square = resize if isinstance(resize, tuple) else (resize, resize)
        steps = [T.Resize(square, interpolation=mode)] + ([crop] if square != (size, size) else [])
    else:
        steps = [resize if callable(resize) else T.Resize(resize, interpolation=mode), crop]
    if not rescale:
        scaled = [UnscaledPixels()]
    elif rescale_factor is None or rescale_factor == DEFAULT_RESCALE:
        scaled = [T.ToTensor()]
    else:
        scaled = [ScaledPixels(rescale_factor)]
    return T.Compose([*steps, *scaled, *([T.Normalize(mean, std)] if normalize else [])])
