"""Tokenised prompts with room for learned context, and the frozen text tower over them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vipcli.backbone import PromptParts
from vipcli.errors import VipError
from vipcli.graphs import run_text_tower


class PaddingLayout:
    """Where each prompt sits in its class's row of a padded [C, K] block, worked out once.

    The layout depends only on the class of each prompt, so a prompt method builds it once and
    every training step pads its prompt features with index writes alone: no counting, no
    `nonzero`, nothing read back from the device.
    """

    def __init__(self, class_index: torch.Tensor, num_classes: int, device=None):
        """class_index: [P] the class of each prompt, on the CPU; the layout is kept on `device`."""
        counts = torch.bincount(class_index, minlength=num_classes)  # [C]
        width = int(counts.max()) if len(class_index) else 0
        slot = torch.zeros_like(class_index)  # [P] position of each prompt within its class
        for c in range(num_classes):
            members = (class_index == c).nonzero().flatten()
            slot[members] = torch.arange(len(members))
        mask = torch.zeros(num_classes, width, dtype=torch.bool)  # [C, K]
        mask[class_index, slot] = True
        self.class_index, self.slot, self.mask = class_index.to(device), slot.to(device), mask.to(device)
        self.num_classes, self.width = num_classes, width
        self.counts = counts.tolist()  # prompts per class

    def pad(self, features: torch.Tensor):
        """[P, D] prompt features -> (padded [C, K, D], mask [C, K] True where a real prompt sits)."""
        padded = features.new_zeros(self.num_classes, self.width, features.shape[1])  # [C, K, D]
        padded[self.class_index, self.slot] = features
        return padded, self.mask


@dataclass
class PromptBank:
    """All prompts of all classes, tokenised once, with `n_ctx` placeholder positions.

    Each prompt reads `[start] ctx_1..ctx_M <words>. [end] [pad...]`; the M placeholder
    positions right after the start token are overwritten by learned vectors (by position,
    never by searching for a token id).

    All tensors live on the backbone's device, so a training step moves nothing between host
    and device.
    """

    ids: torch.Tensor  # [P, L] token ids, trimmed to the longest prompt (or full length)
    token_embeds: torch.Tensor  # [P, L, W] frozen word embeddings of `ids`
    texts: list[str]  # the P prompt texts, without the context placeholders
    n_ctx: int  # M, number of learned context positions
    prefix: int  # tokens before the context (start token / [CLS])
    layout: PaddingLayout  # where each prompt sits in its class's row of a padded [C, K] block
    same_start: bool = False  # every prompt begins with the same `prefix` tokens (build_prompt_bank checks)
    same_prompts: tuple = ()  # (a, b) pairs of classes whose prompts tokenise alike (`classes_with_same_prompts`)
    _repeated: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # copies -> [copies*P, L]
    # (copies, per class) -> (group [S*P], rest [S*P, L-K, W]); one per stack size a batched fit uses
    _layouts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def class_index(self) -> torch.Tensor:
        """[P] the class of each prompt (on the device)."""
        return self.layout.class_index

    @property
    def num_classes(self) -> int:
        """C, the number of classes (rows of the padded block)."""
        return self.layout.num_classes

    def repeated_ids(self, copies: int) -> torch.Tensor:
        """`ids` stacked `copies` times ([copies*P, L]), made once per count and kept.

        The same tensor object every step lets a backbone remember what it derives from the ids
        (e.g. end-token positions) instead of reading them back from the device each step.
        """
        if copies not in self._repeated:
            self._repeated[copies] = self.ids.repeat(copies, 1)
        return self._repeated[copies]

    def prompt_parts(self, contexts: torch.Tensor) -> PromptParts:
        """The prompts of S runs with their contexts spliced in, as shared prefixes and own rests.

        Args:
            contexts: [S, M, W] one context per run, or [S, C, M, W] one per class per run.
        Returns:
            S*P prompts (run by run, as `repeated_ids(S)`): the prompts of one run share their start
            token and context (one group per run), or, class-specific, per class (one group per
            class and run). Should the start tokens differ, every prompt is its own group.
        """
        copies, per_class = contexts.shape[0], contexts.dim() == 4
        key = (copies, per_class)
        if key not in self._layouts:
            self._layouts[key] = self._group_layout(copies, per_class)
        group, rest = self._layouts[key]
        start = self.prefix
        contexts = contexts.to(self.token_embeds.dtype)
        if self.same_start:
            learned = contexts.flatten(0, 1) if per_class else contexts  # [G, M, W]
            starts = self.token_embeds[:1, :start].expand(learned.shape[0], -1, -1)  # [G, prefix, W]
        else:  # every prompt its own group
            learned = (contexts[:, self.class_index] if per_class else
                       contexts[:, None].expand(-1, len(self.texts), -1, -1)).flatten(0, 1)  # [S*P, M, W]
            starts = self.token_embeds[:, :start].repeat(copies, 1, 1)  # [S*P, prefix, W]
        return PromptParts(torch.cat([starts, learned], dim=1), group, rest)  # prefixes [G, prefix + M, W]

    def _group_layout(self, copies: int, per_class: bool):
        """(group [S*P], rest [S*P, L-K, W]) for `prompt_parts`, made on the device once."""
        prompts = len(self.texts)
        runs = torch.arange(copies, device=self.ids.device).repeat_interleave(prompts)  # [S*P]
        if not self.same_start:
            group = torch.arange(copies * prompts, device=self.ids.device)
        elif per_class:
            group = runs * self.num_classes + self.class_index.repeat(copies)
        else:
            group = runs
        rest = self.token_embeds[:, self.prefix + self.n_ctx:].repeat(copies, 1, 1)  # [S*P, L-K, W]
        return group, rest


def as_sentence(text: str) -> str:
    """A symptom or class phrase as a sentence ending in a full stop."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def check_prompt_lengths(backbone, ids: torch.Tensor, n_ctx: int, texts: list[str]) -> None:
    """Refuse (never cut) a prompt that does not fit the text tower with `n_ctx` context tokens.

    One rule for every method: a tokenised prompt that fills the whole context may have been cut
    by the tokenizer, so it must be shorter than the context, and leave room for the context vectors.
    """
    limit = ids.shape[1]
    lengths = backbone.content_lengths(ids)  # [P] words, start and end tokens (padding excluded)
    shortest = int(lengths.min()) if len(lengths) else 0
    if n_ctx and shortest < limit and shortest + n_ctx > limit:  # not even the shortest prompt fits the context
        most = max(0, limit - int(lengths.max()))
        raise VipError(f"--n-ctx {n_ctx} is too many context vectors for the text tower: it takes {limit} tokens "
                       f"and the shortest prompt already has {shortest}",
                       f"pass --n-ctx {most} or less, or shorter symptoms" if most else
                       "pass a smaller --n-ctx, or shorter symptoms")
    # the --n-ctx that fits every prompt (0: none, as a prompt fills the tower alone)
    fits_all = limit - int(lengths.max()) if n_ctx and len(lengths) and int(lengths.max()) < limit else 0
    for text, n in zip(texts, lengths.tolist()):
        if n >= limit or n + n_ctx > limit:
            size = f"more than {limit - 1}" if n >= limit else str(n)
            room = f", {n_ctx} of them kept for learned context" if n_ctx else ""
            shown = text if len(text) <= 120 else text[:117] + "..."
            fits = limit - max(n_ctx, 1)  # tokens a prompt may have, start and end tokens included (the rule above)
            lower = f", or pass --n-ctx {fits_all} or less" if fits_all else ""
            raise VipError(
                f"prompt too long for the text tower: {shown!r} is {size} tokens; the tower takes {limit}{room}",
                f"shorten it to at most {fits} tokens (about {max(1, fits * 3 // 4)} words){lower}",
            )


def _insert_placeholders(backbone, ids: torch.Tensor, n_ctx: int, texts: list[str]) -> torch.Tensor:
    """Shift the words right by `n_ctx` positions after the prefix; fail if a prompt won't fit."""
    check_prompt_lengths(backbone, ids, n_ctx, texts)
    if n_ctx == 0:
        return ids
    placeholder = backbone.tokenize(["x"])[0, backbone.num_prefix_tokens]
    prefix = backbone.num_prefix_tokens
    filler = torch.full((ids.shape[0], n_ctx), int(placeholder), dtype=ids.dtype)  # [P, n_ctx]
    return torch.cat([ids[:, :prefix], filler, ids[:, prefix:-n_ctx]], dim=1)  # [P, L]


def build_prompt_bank(backbone, prompts: list[list[str]], n_ctx: int, trim: bool = True) -> PromptBank:
    """Tokenise every class's prompts once and embed their words with the frozen tower.

    Args:
        backbone: a vipcli.backbone.Backbone.
        prompts: per class, its prompt phrases (symptoms, or a class-name template).
        n_ctx: number of learned context vectors to leave room for (0 for hand prompts).
        trim: run the tower only as long as the longest prompt (exact under a causal mask or
            a padding mask); False keeps the full context length (the reference mode).
    """
    texts = [as_sentence(p) for class_prompts in prompts for p in class_prompts]
    class_index = torch.tensor([c for c, class_prompts in enumerate(prompts) for _ in class_prompts])
    ids = _insert_placeholders(backbone, backbone.tokenize(texts), n_ctx, texts)  # [P, context_length]
    if trim:
        ids = ids[:, : int(backbone.sequence_lengths(ids).max())]  # [P, L]
    with torch.no_grad():
        token_embeds = backbone.embed_tokens(ids).detach()  # [P, L, W]
    device = token_embeds.device
    layout = PaddingLayout(class_index, len(prompts), device)
    prefix = backbone.num_prefix_tokens
    same_start = bool((ids[:, :prefix] == ids[:1, :prefix]).all())  # on the host, before the move
    same_prompts = classes_with_same_prompts(ids, class_index, len(prompts))
    return PromptBank(ids.to(device), token_embeds, texts, n_ctx, prefix, layout, same_start, same_prompts)


def classes_with_same_prompts(ids: torch.Tensor, class_index: torch.Tensor, num_classes: int) -> tuple:
    """Pairs (a, b), a < b, of classes whose prompts tokenise to the same token rows.

    Under one shared context such classes get the same text features, so a text-side method can
    never tell them apart: the same symptoms given to two classes, or a tokenizer that maps their
    different words to the same tokens (every word to an unknown token). The order of prompts
    within a class does not matter; only the first class of each group is paired with the others.

    Args:
        ids: [P, L] token ids on the host; class_index: [P] the class of each prompt.
    """
    first_with: dict[tuple, int] = {}
    pairs = []
    for c in range(num_classes):
        rows = ids[class_index == c].tolist()
        if not rows:
            continue
        key = tuple(sorted(map(tuple, rows)))
        if key in first_with:
            pairs.append((first_with[key], c))
        else:
            first_with[key] = c
    return tuple(pairs)


def encode_prompts(backbone, bank: PromptBank, context: torch.Tensor | None) -> torch.Tensor:
    """Text features of every prompt with `context` spliced in after the prefix.

    Args:
        context: [M, W] shared, [C, M, W] class-specific, or None (hand prompts).
    Returns:
        [P, D] unnormalised text features (differentiable w.r.t. `context`).
    """
    if context is None:
        return run_text_tower(backbone, bank.token_embeds, bank.ids).float()  # [P, D]
    return run_text_tower(backbone, bank.prompt_parts(context[None]), bank.ids).float()  # [P, D]


@torch.no_grad()
def class_text_features(backbone, prompts: list[list[str]], trim: bool = True, unit: bool = False) -> torch.Tensor:
    """Per class, the mean text feature of its hand prompts (no learned context), on the CPU.

    Args:
        prompts: per class, its prompt phrases.
        unit: normalise each prompt's feature before the mean and the mean after it (zero-shot
            weights, as Tip-Adapter uses them); otherwise the plain mean of raw features (CLAP's init).
    Returns:
        [C, D]
    """
    import torch.nn.functional as F

    bank = build_prompt_bank(backbone, prompts, 0, trim=trim)
    text = encode_prompts(backbone, bank, None)  # [P, D]
    if unit:
        text = F.normalize(text, dim=-1)
    index = bank.class_index.to(text.device)
    total = torch.zeros(len(prompts), text.shape[1], device=text.device).index_add_(0, index, text)  # [C, D]
    if unit:
        return F.normalize(total, dim=-1).cpu()
    # prompts per class, counted on the host as the bank was built (bincount has no kernel on torch's meta device,
    # where vip's device probe builds a plugin that uses this: it could not judge one, CLAP's pattern)
    counts = torch.tensor(bank.layout.counts, dtype=total.dtype, device=total.device).clamp(min=1)  # [C]
    return (total / counts[:, None]).cpu()
