"""The backbone contract, checked: what `vip backbones check` prints and `load_backbone` enforces.

Each check calls a few members of a loaded backbone on small probes (three prompts of different
lengths, two prompts of equal length one word apart, the same two after as many filler words as fit,
one or two synthetic images) and records what came back. `load_backbone` runs them all (one image)
before any image of the data set is encoded: the cost is five full-length text passes over three
prompts (one with a backward pass to the embeddings), two over two, about log2(context_length)
tokenizations of two long prompts, one trimmed pass, one image through the tower three times (the last after
another image: features must not depend on earlier calls) and, for a backbone
that overrides `encode_text_parts`, two forward and backward passes over the three prompts, so a
broken plugin fails in seconds.
`vip backbones check` adds a second load to compare `describe()`.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass
from typing import Callable

import torch

from vipcli.errors import VipError
from vipcli.plugins import PluginError

PROBE_TEXTS = [
    "a photo.",
    "The spot has blurry, or jagged edges.",
    "Small, dark areas within the spot, with several colors like brown, black, blue, red or white.",
]
WORD_PAIRS = (  # prompts of equal token length one word apart; the first pair the tokenizer gives equal lengths
    ("a photo of a melanoma.", "a photo of a nevus."),
    ("a photo of a red spot.", "a photo of a blue spot."),
    ("a photo of a dark spot.", "a photo of a small spot."),
)
LONG_FILLER = ("the spot has blurry or jagged edges and small dark areas within it with several colors like brown "
               "black blue red or white").split()  # words put before a word pair to make a long prompt
LONG_WORDS = 1024  # the most filler words a long prompt gets (a context longer than this is probed this far)
CONTRACT_VERSION = 12  # bump when a check is added or changed: backbones that passed are checked again
LOGIT_SCALE_RANGE = (0.0, math.log(10000.0))  # logit_scale (a log): logits are cosines times 1 to 10,000
TRIM_TOLERANCE = 1e-3  # max relative L2 difference between trimmed and full-length text features
PLAIN_TOLERANCE = 1e-3  # max relative L2 difference between the plain text tower (--reference) and the usual path
SAME_FEATURE = 1e-6  # two probes whose features differ by less than this (relative L2) got the same feature
REPEAT_TOLERANCE = 1e-4  # max relative L2 difference between two encodings of the same input (eval mode)
BATCH_TOLERANCE = 1e-3  # ... and between an image encoded alone and in a batch (kernels differ by batch size)
PARTS_CONTEXT = 2  # context vectors in the probe of an `encode_text_parts` override
PARTS_GROUPS = (0, 1, 0)  # the probe prompts' groups: the first and last share their prefix
JSON_TYPES = (str, int, float, bool, type(None))


@dataclass
class Check:
    """One row of the contract table."""

    name: str  # what is checked, e.g. "encode_image"
    member: str  # the backbone member it exercises (named in errors)
    ok: bool | None  # None: skipped because an earlier check it needs failed
    detail: str  # shapes, dtypes, figures; or what is wrong and how to fix it


class _Failed(Exception):
    """A contract violation found by a check (its message is the row's detail).

    `member` names the member at fault when it is not the one the row exercises.
    """

    def __init__(self, message: str, member: str | None = None):
        super().__init__(message)
        self.member = member


def _shape(tensor) -> str:
    return "[" + ", ".join(str(n) for n in tensor.shape) + "]"


def _dtype(tensor) -> str:
    return str(tensor.dtype).replace("torch.", "")


def _tensor(value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise _Failed(f"gave a {type(value).__name__}, not a torch.Tensor")
    return value


def _float32(value: torch.Tensor, what: str) -> None:
    if value.dtype != torch.float32:
        raise _Failed(f"{what} are {_dtype(value)} {_shape(value)}; the contract needs float32 (return .float())")


def _fresh(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A copy of `images` on `device` for one encode_image call: vip hands every call a batch of its own, so a
    plugin that normalises the batch in place (harmless there) must not change the probe the next call reads."""
    return images.to(device, copy=True)


def _finite(value: torch.Tensor, what: str) -> None:
    if not torch.isfinite(value).all():
        bad = int((~torch.isfinite(value)).sum())
        raise _Failed(f"{what} hold {bad} NaN/inf values")
    if value.dim() == 2 and value.is_floating_point() and not torch.isfinite(value.float().norm(dim=-1)).all():
        largest = float(value.float().abs().max())
        raise _Failed(f"{what} hold values up to {largest:.3g}, so large that their norm overflows float32 and "
                      "normalising them gives NaN: return the tower's output as it is, without rescaling it")


def json_problem(value, path: str = "describe()") -> str | None:
    """Where `value` stops being plain JSON (dict with str keys, list, str, int, finite float, bool, None)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} is {value}, which JSON cannot hold"
    if isinstance(value, JSON_TYPES):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a {type(key).__name__} key {key!r} (JSON keys are strings)"
            problem = json_problem(item, f"{path}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = json_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, tuple):
        return f"{path} is a tuple (JSON has lists: use a list)"
    return f"{path} is a {type(value).__name__} (use str, int, float, bool, None, list or dict)"


def _relative(got: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """The relative L2 difference of each row of two feature tensors [N, D] -> [N]."""
    return (got - expected).norm(dim=-1) / expected.norm(dim=-1).clamp_min(1e-12)


def _same_again(member: str, inputs: str, again: torch.Tensor, first: torch.Tensor, randomness: str) -> str:
    """The row's detail when `member` gave the same `inputs` the features `first` and then `again` [N, D]
    (at most REPEAT_TOLERANCE apart, relative), else `_Failed` naming the randomness to remove."""
    difference = float(_relative(again, first).max())
    if not difference <= REPEAT_TOLERANCE:
        raise _Failed(f"{member} is not deterministic in eval: the same {inputs} give features {difference:.3g} "
                      f"apart (relative): remove randomness (F.dropout without training=False, {randomness}) from "
                      "the forward")
    return f"encoded twice: max relative difference {difference:.1e}"


def _same_rows(features: torch.Tensor) -> tuple[int, int] | None:
    """The first pair of rows of features [N, D] that are the same up to `SAME_FEATURE` (relative), else None."""
    scale = features.norm(dim=-1).max().clamp_min(1e-12)
    distances = torch.cdist(features, features) / scale  # [N, N]
    for i in range(len(features)):
        for j in range(i + 1, len(features)):
            if float(distances[i, j]) < SAME_FEATURE:
                return i, j
    return None


class _Probe:
    """Runs the checks in order, sharing what earlier ones produced."""

    def __init__(self, backbone, images: int):
        self.backbone, self.images = backbone, images
        self.checks: list[Check] = []
        self.ids = self.full = self.image_features = None
        self.word_pair = None  # the prompts one word apart, once their row has passed
        self.image_size = self.probe_images = None

    def run(self, name: str, member: str, step: Callable[[], str], needs: tuple = ()) -> None:
        """Run one check and append its row: passed with `step()`'s detail, failed with the reason it raised, or
        skipped when an attribute in `needs` (set by an earlier check) is still None."""
        missing = [n for n in needs if getattr(self, n) is None]
        if missing:
            self.checks.append(Check(name, member, None, "skipped: an earlier check it needs failed"))
            return
        try:
            self.checks.append(Check(name, member, True, step()))
        except _Failed as failure:
            self.checks.append(Check(name, failure.member or member, False, str(failure)))
        except PluginError as error:  # a guarded plugin member raised
            self.checks.append(Check(name, error.member, False, f"raised {error.reason}"))
        except VipError as error:  # the plugin reported a user-facing error
            self.checks.append(Check(name, member, False, error.message))
        except Exception as error:  # an unguarded backbone (tests, direct use)
            self.checks.append(Check(name, member, False, f"raised {type(error).__name__}: {error}"))

    # individual checks ------------------------------------------------------------------

    def attributes(self) -> str:
        """That the plain attributes (sizes, token ids, device, id) are set and every weight is on `device`; the
        detail row, or `_Failed` naming the attribute to fix."""
        b = self.backbone
        for name in ("embed_dim", "token_width", "context_length"):
            value = getattr(b, name, None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _Failed(f"{name} is {value!r}; set it to a positive int in __init__")
        for name in ("num_prefix_tokens", "pad_token_id"):
            value = getattr(b, name, None)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise _Failed(f"{name} is {value!r}; it must be an int >= 0")
        end = getattr(b, "end_token_id", None)
        if end is not None and (not isinstance(end, int) or isinstance(end, bool)):
            raise _Failed(f"end_token_id is {end!r}; an int or None")
        if not isinstance(getattr(b, "device", None), torch.device):
            raise _Failed(f"device is {getattr(b, 'device', None)!r}; set a torch.device")
        misplaced = [(name, tensor.device) for module in b.modules()
                     for name, tensor in [*module.named_parameters(), *module.named_buffers()]
                     if not same_device(tensor.device, b.device)]
        if misplaced:
            name, where = misplaced[0]
            raise _Failed(f"{len(misplaced)} weight(s) are on {where}, not on {b.device} where `device` says the "
                          f"towers are (e.g. {name}): move every module there in __init__ (.to(self.device))",
                          member="modules")
        if not isinstance(getattr(b, "id", None), str) or not b.id:
            raise _Failed("id is empty; the registry sets it (load the backbone through vipcli.registry.load_backbone)")
        return (f"id {b.id}, D {b.embed_dim}, W {b.token_width}, context {b.context_length}, "
                f"prefix {b.num_prefix_tokens}, pad {b.pad_token_id}, end {end}, device {b.device}")

    def logit_scale(self) -> str:
        """That `logit_scale` is a finite 0-d float tensor on the CPU or the backbone's device, within
        `LOGIT_SCALE_RANGE` (a multiplier stored where its log belongs gives cosines times 2.7e43: inf in float32);
        the detail row, or `_Failed`."""
        scale = _tensor(getattr(self.backbone, "logit_scale", None))
        if scale.dim() != 0:
            raise _Failed(f"logit_scale has shape {_shape(scale)}; make it 0-d (.reshape(()))")
        if not scale.is_floating_point():
            raise _Failed(f"logit_scale is {_dtype(scale)}; it must be a float tensor")
        if scale.device.type not in ("cpu", self.backbone.device.type):
            raise _Failed(f"logit_scale is on {scale.device}; put it on the CPU or on {self.backbone.device}")
        _finite(scale, "logit_scale")
        multiplier = float(scale.float().exp())
        if not LOGIT_SCALE_RANGE[0] <= float(scale) <= LOGIT_SCALE_RANGE[1]:
            raise _Failed(f"logit_scale is {float(scale):.4g}, so logits would be cosines times exp() = "
                          f"{multiplier:.4g}: logit_scale is the log of that multiplier (CLIP's is log(100) = 4.605), "
                          f"between {LOGIT_SCALE_RANGE[0]:g} and log(10000) = {LOGIT_SCALE_RANGE[1]:.4g}; store the "
                          "model's log scale as it is (model.logit_scale, not model.logit_scale.exp()), or "
                          "torch.log(multiplier) if you have the multiplier")
        return f"0-d {_dtype(scale)} on {scale.device}, exp() = {multiplier:.4g}"

    def tokenize(self) -> str:
        """That `tokenize` gives int64 ids [N, context_length] on the CPU with an end token; keeps them as `self.ids`
        for later checks. The detail row, or `_Failed`."""
        b = self.backbone
        ids = _tensor(b.tokenize(PROBE_TEXTS))
        if ids.dtype != torch.int64:
            raise _Failed(f"token ids are {_dtype(ids)}; return a LongTensor (int64)")
        if ids.shape != (len(PROBE_TEXTS), b.context_length):
            raise _Failed(f"token ids are {_shape(ids)}; expected [{len(PROBE_TEXTS)}, context_length={b.context_length}]")
        if ids.device.type != "cpu":
            raise _Failed(f"token ids are on {ids.device}; return them on the CPU")
        end = getattr(b, "end_token_id", None)
        if end is not None and not (ids == end).any(dim=1).all():
            raise _Failed(f"a tokenized probe has no end token (end_token_id={end})")
        self.ids = ids
        return f"{_dtype(ids)} {_shape(ids)} on cpu"

    def lengths(self) -> str:
        """That `sequence_lengths` gives one integer per prompt, within the context and never shorter than its
        content; the detail row, or `_Failed`."""
        b, ids = self.backbone, self.ids
        lengths = _tensor(b.sequence_lengths(ids))
        if lengths.shape != (ids.shape[0],) or lengths.is_floating_point():
            raise _Failed(f"returned {_dtype(lengths)} {_shape(lengths)}; expected integers [{ids.shape[0]}]")
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > ids.shape[1]:
            raise _Failed(f"returned lengths from {low} to {high}; each must be within 1..{ids.shape[1]}")
        content = b.content_lengths(ids)
        if (lengths < content).any():
            row = int((lengths < content).nonzero()[0])
            raise _Failed(f"row {row} is {int(lengths[row])} tokens but holds {int(content[row])} "
                          "(words and end token); trimming would cut the prompt")
        return f"longest {high} of {ids.shape[1]} tokens"

    def embed_tokens(self) -> str:
        """That `embed_tokens` gives float32 embeddings [N, L, W]; the detail row, or `_Failed`."""
        b, ids = self.backbone, self.ids
        embeds = _tensor(b.embed_tokens(ids))
        if tuple(embeds.shape) != (*ids.shape, b.token_width):
            raise _Failed(f"embeddings are {_shape(embeds)}; expected [{ids.shape[0]}, {ids.shape[1]}, W={b.token_width}]")
        _float32(embeds, "token embeddings")
        return f"{_dtype(embeds)} {_shape(embeds)}"

    def encode_text(self) -> str:
        """That `encode_text_embeds` gives finite float32 features [N, D], distinct per prompt, without changing
        `embeds` in place; keeps them as `self.full`. The detail row, or `_Failed`."""
        b, ids = self.backbone, self.ids
        from vipcli.methods.contract import tensor_version

        with torch.no_grad():
            embeds = b.embed_tokens(ids)
            version = tensor_version(embeds)
            full = _tensor(b.encode_text_embeds(embeds, ids.to(b.device)))
        if version is not None and tensor_version(embeds) != version:
            raise _Failed("encode_text_embeds changed the `embeds` it was given in place (e.g. embeds += positions): "
                          "they hold the learned context, a leaf of the training graph, and the prompts' cached "
                          "token embeddings; build the tower's input out of place (x = embeds + positions)")
        if tuple(full.shape) != (ids.shape[0], b.embed_dim):
            raise _Failed(f"text features are {_shape(full)}; expected [{ids.shape[0]}, D={b.embed_dim}]")
        if not same_device(full.device, b.device):
            raise _Failed(f"text features are on {full.device}, not on {b.device} where `device` says the towers are: "
                          "the prompt learner and the methods compute with them there; return them where the tower "
                          "computed them (no .cpu() or .to(...) at the end)")
        _float32(full, "text features")
        _finite(full, "text features")
        full = full.detach().float().cpu()
        pair = _same_rows(full)
        if pair is not None:
            raise _Failed(f"the prompts {PROBE_TEXTS[pair[0]]!r} and {PROBE_TEXTS[pair[1]]!r} get the same feature: "
                          "the tower reads a position every prompt shares (pool at each prompt's end token, "
                          "e.g. with self.pool_at_end(hidden, ids), or at its last real token)")
        self.full = full
        return f"{_dtype(full)} {_shape(full)}, finite, distinct"

    def _text_features(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """encode_text_embeds(embeds, ids) under no_grad, as float32 on the CPU."""
        b = self.backbone
        with torch.no_grad():
            return _tensor(b.encode_text_embeds(embeds, ids.to(b.device))).detach().float().cpu()

    def _word_pair(self) -> tuple[tuple[str, str], torch.Tensor]:
        """The first of `WORD_PAIRS` whose prompts get the same number of tokens and different ids, and its
        ids [2, L]. A domain vocabulary may lack a pair's words (both its unknown token): the next pair
        is tried, and only a tokenizer that loses the words of every pair gets equal ids."""
        b = self.backbone
        tokenized, same_length = [], []
        for pair in WORD_PAIRS:
            ids = _tensor(b.tokenize(list(pair)))
            lengths = b.content_lengths(ids)
            if int(lengths[0]) == int(lengths[1]):
                if not torch.equal(ids[0], ids[1]):
                    return pair, ids
                same_length.append((pair, ids))
            tokenized.append((pair, ids))
        return (same_length or tokenized)[0]  # every pair collides or differs in length: the first such

    def one_word(self) -> str:
        """That two prompts one word apart get different token ids and different features; the detail row, or
        `_Failed`."""
        pair, ids = self._word_pair()
        if torch.equal(ids[0], ids[1]):
            raise _Failed(f"{pair[0]!r} and {pair[1]!r} get the same token ids: the tokenizer loses words (maps them "
                          "to its unknown token?), so every class would get the same prompt; fix the tokenizer's "
                          "vocabulary", member="tokenize")
        features = self._text_features(self.backbone.embed_tokens(ids), ids)
        if _same_rows(features) is not None:
            raise _Failed(f"{pair[0]!r} and {pair[1]!r} (one word apart) get the same feature: the text tower does not "
                          "read every word of the prompt; build its input from every position of `embeds`")
        self.word_pair = pair
        return f"{pair[0]!r} / {pair[1]!r}: {int(self.backbone.content_lengths(ids).max())} tokens each, distinct"

    def _long_pair(self, words: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """The word pair's prompts after `words` filler words, their ids [2, L] and content lengths [2]."""
        filler = " ".join(LONG_FILLER[i % len(LONG_FILLER)] for i in range(words))
        texts = [f"{filler} {text}".strip() for text in self.word_pair]
        ids = _tensor(self.backbone.tokenize(texts))
        return texts, ids, self.backbone.content_lengths(ids)

    def _longest_fitting_pair(self) -> tuple[list[str], torch.Tensor, torch.Tensor] | None:
        """The longest of `_long_pair`'s prompts (up to `context_length` filler words, a token or more each) whose
        tokens both end two or more before `context_length`: a prompt cut short at `context_length`, by design,
        fills it, all but its end token where that is also the pad token (which `content_lengths` cannot tell
        from padding when `end_token_id` is not declared). None when even the pair alone does not fit. A
        tokenizer that cuts prompts short earlier gives the longest."""
        fits = self.backbone.context_length - 1  # content lengths below this fit
        low, high = 0, min(self.backbone.context_length, LONG_WORDS)
        longest = self._long_pair(high)
        if int(longest[2].max()) < fits:
            return longest
        shortest = self._long_pair(low)
        if int(shortest[2].max()) >= fits:
            return None
        while high - low > 1:  # the prompt of `low` words fits, that of `high` does not
            middle = (low + high) // 2
            tried = self._long_pair(middle)
            if int(tried[2].max()) < fits:
                low, shortest = middle, tried
            else:
                high = middle
        return shortest

    def long_prompts(self) -> str:
        """That two long prompts within `context_length`, differing only in their last word, get different token ids
        and different features (a tokenizer or tower that stops reading early loses long symptoms' tails); the
        detail row, or `_Failed`."""
        b = self.backbone
        found = self._longest_fitting_pair()
        if found is None:
            return f"not compared: the one word apart prompts alone nearly fill context_length={b.context_length}"
        texts, ids, lengths = found
        words, kept = len(texts[0].split()), int(lengths.max())
        last = [text.split()[-2:] for text in texts]
        ending = f"'... {' '.join(last[0])}' / '... {' '.join(last[1])}'"
        if torch.equal(ids[0], ids[1]):
            raise _Failed(f"two prompts of {words} words that differ only at their end ({ending}) get the same token "
                          f"ids, though the tokenizer kept only {kept} of context_length={b.context_length} tokens: it "
                          "cuts prompts short before context_length, so long symptoms lose their tails without a "
                          "word; truncate only at context_length", member="tokenize")
        if _same_rows(self._text_features(b.embed_tokens(ids), ids)) is not None:
            raise _Failed(f"two prompts of {words} words ({kept} of context_length={b.context_length} tokens) that "
                          f"differ only at their end ({ending}) get the same feature: the text tower stops reading "
                          "before context_length, so long symptoms lose their tails; read every position up to "
                          "context_length", member="encode_text_embeds")
        return f"{words} words ending {ending}: {kept} of {b.context_length} tokens, distinct"

    def follows_embeddings(self) -> str:
        """That the text features change when the embedding after the start token changes, and the gradient reaches it
        (where learned context goes); the detail row, or `_Failed`."""
        b, ids = self.backbone, self.ids
        position = b.num_prefix_tokens  # the first token after the start token: where learned context goes
        with torch.no_grad():
            embeds = b.embed_tokens(ids).float()  # [N, L, W]
        noise = torch.randn(embeds.shape[0], embeds.shape[-1], generator=torch.Generator().manual_seed(1))  # [N, W]
        scale = embeds[:, position].pow(2).mean().sqrt().clamp_min(1e-3)
        perturbed = embeds.clone()
        perturbed[:, position] += noise.to(embeds.device) * scale
        changed = _relative(self._text_features(perturbed, ids), self.full)  # [N]
        worst = int(changed.argmin())
        if not float(changed[worst]) > SAME_FEATURE:
            raise _Failed(f"changing the embedding at token {position} of {PROBE_TEXTS[worst]!r} leaves its feature "
                          "unchanged: build the tower's input from `embeds`, not from `ids`: the learned context "
                          "would be ignored")
        if torch.is_inference_mode_enabled():  # inference tensors: nothing can be differentiated
            return f"token {position} perturbed: features change by at least {float(changed[worst]):.1e} (relative)"
        self._gradient_reaches(embeds, position)
        return (f"token {position} perturbed: features change by at least {float(changed[worst]):.1e} (relative); "
                "the gradient reaches it")

    def _gradient_reaches(self, embeds: torch.Tensor, position: int) -> None:
        """Fail unless a gradient flows from the text features back to `embeds` at `position` of every prompt."""
        b, ids = self.backbone, self.ids
        with torch.enable_grad():
            leaf = embeds.detach().clone().requires_grad_(True)
            features = _tensor(b.encode_text_embeds(leaf, ids.to(b.device)))
            if not features.requires_grad:
                raise _Failed("no gradient reaches the embeddings it is given: build the tower's input from `embeds`, "
                              "not from `ids` (and do not detach them): the learned context would never train")
            weights = torch.linspace(-1, 1, features.numel(), device=features.device).reshape(features.shape)
            (grad,) = torch.autograd.grad((features.float() * weights).sum(), leaf, allow_unused=True)
        reached = grad is not None and bool((grad[:, position].abs().sum(dim=-1) > 0).all())
        if not reached:
            raise _Failed(f"no gradient reaches the embedding at token {position}: build the tower's input from "
                          "`embeds`, not from `ids`: the learned context would never train")

    def trimming(self) -> str:
        """That trimming the ids to `sequence_lengths` leaves the features within `TRIM_TOLERANCE`; the detail row, or
        `_Failed`."""
        b, ids = self.backbone, self.ids
        length = int(b.sequence_lengths(ids).max())
        if length == ids.shape[1]:
            return f"not trimmed: sequence_lengths keeps all {length} tokens"
        short = ids[:, :length]
        with torch.no_grad():
            trimmed = b.encode_text_embeds(b.embed_tokens(short), short.to(b.device)).detach().float().cpu()
        difference = ((trimmed - self.full).norm(dim=-1) / self.full.norm(dim=-1).clamp_min(1e-12))  # [N]
        worst = int(difference.argmax())
        if float(difference[worst]) > TRIM_TOLERANCE:
            raise _Failed(
                f"trimmed to {length} of {ids.shape[1]} tokens, the feature of {PROBE_TEXTS[worst]!r} changes by "
                f"{float(difference[worst]):.3g} (relative): trimming drops a token the tower uses; declare "
                "end_token_id if the tokenizer pads with the end token, or return the full length from "
                "sequence_lengths")
        return f"trimmed to {length} of {ids.shape[1]} tokens: max relative difference {float(difference.max()):.1e}"

    def plain_text_tower(self) -> str:
        """That the plain text tower (`--reference`), where settable, gives the usual path's features within
        `PLAIN_TOLERANCE`; the detail row, or `_Failed`."""
        from vipcli.backbone import using_plain_text_tower

        b, ids = self.backbone, self.ids
        with torch.no_grad(), using_plain_text_tower(b):
            if not getattr(b, "plain_text_tower", False):
                return "not settable (the backbone's attributes are fixed): the reference runs its one text path"
            plain = _tensor(b.encode_text_embeds(b.embed_tokens(ids), ids.to(b.device))).detach().float().cpu()
        if plain.shape != self.full.shape:
            raise _Failed(f"with plain_text_tower set, text features are {_shape(plain)}; otherwise {_shape(self.full)}")
        difference = ((plain - self.full).norm(dim=-1) / self.full.norm(dim=-1).clamp_min(1e-12))  # [N]
        worst = int(difference.argmax())
        if not float(difference[worst]) <= PLAIN_TOLERANCE:
            raise _Failed(
                f"with plain_text_tower set (the --reference mode), the feature of {PROBE_TEXTS[worst]!r} changes by "
                f"{float(difference[worst]):.3g} (relative): the plain path (the library's own forward) and the "
                "usual path must compute the same features; fix the shortcut or the plain path")
        return f"plain_text_tower set: max relative difference {float(difference.max()):.1e}"

    def prompt_parts(self) -> str:
        """That an `encode_text_parts` override matches `encode_text_embeds(parts.embeds(), ids)` in features and
        gradient (the default is not compared); the detail row, or `_Failed`."""
        from vipcli.backbone import Backbone

        b = self.backbone
        if getattr(type(b), "encode_text_parts", None) in (None, Backbone.encode_text_parts):
            return "the default (spells the prompts out for encode_text_embeds)"
        if torch.is_inference_mode_enabled():  # its weights are inference tensors: nothing can be differentiated
            with torch.no_grad():
                return self._compare_prompt_parts(gradient=False)
        with torch.enable_grad():  # the gradient is compared too, even for a caller under no_grad
            return self._compare_prompt_parts(gradient=True)

    def _compare_prompt_parts(self, gradient: bool) -> str:
        """`encode_text_parts` against `encode_text_embeds(parts.embeds(), ids)`: features (and gradient)."""
        from vipcli.backbone import PromptParts

        b, ids = self.backbone, self.ids
        length = int(b.sequence_lengths(ids).max())
        shared = b.num_prefix_tokens + PARTS_CONTEXT
        if shared >= length:
            return f"not compared: the probe prompts ({length} tokens) leave no room for {shared} shared ones"
        short = ids[:, :length].to(b.device)
        with torch.no_grad():
            words = b.embed_tokens(short).float()  # [N, L, W]
        generator = torch.Generator().manual_seed(0)
        context = torch.randn(2, PARTS_CONTEXT, b.token_width, generator=generator).to(words.device)  # [G, M, W]
        start = words[:1, :b.num_prefix_tokens].expand(2, -1, -1)  # [G, prefix, W]
        group = torch.tensor(PARTS_GROUPS, device=words.device)  # [N]: two groups, the first of two prompts
        results = []
        for encode in (b.encode_text_parts, lambda parts, ids: b.encode_text_embeds(parts.embeds(), ids)):
            prefixes = torch.cat([start, context], dim=1).requires_grad_(gradient)  # [G, K, W]
            features = _tensor(encode(PromptParts(prefixes, group, words[:, shared:]), short))  # [N, D]
            _float32(features, "text features")
            results.append([features.detach().cpu()])
            if not gradient:
                continue
            if not features.requires_grad:
                raise _Failed("its text features do not depend on parts.prefixes (no gradient reaches them): "
                              "the learned context would never train")
            weights = torch.linspace(-1, 1, features.numel(), device=features.device).reshape(features.shape)
            (grad,) = torch.autograd.grad((features * weights).sum(), prefixes)
            results[-1].append(grad.float().cpu())
        ours, spelled = results
        if ours[0].shape != spelled[0].shape:
            raise _Failed(f"text features are {_shape(ours[0])}; encode_text_embeds gives {_shape(spelled[0])}")
        differences = {}
        for name, got, expected in zip(("features", "gradient"), ours, spelled):
            differences[name] = float((got - expected).norm() / expected.norm().clamp_min(1e-12))
            if not differences[name] <= TRIM_TOLERANCE:
                raise _Failed(
                    f"{name} of {len(PARTS_GROUPS)} prompts in 2 groups sharing {shared} tokens differ from "
                    f"encode_text_embeds(parts.embeds(), ids) by {differences[name]:.3g} (relative): each prompt "
                    "must read its own group's prefix (parts.prefixes[parts.group]) and the gradient must reach "
                    "parts.prefixes; fix the override or remove it")
        compared = ", ".join(f"{value:.1e} ({name})" for name, value in differences.items())
        unchecked = "" if gradient else "; gradient not compared (loaded under inference_mode)"
        return f"{len(PARTS_GROUPS)} prompts, 2 groups, {shared} shared tokens: relative difference {compared}{unchecked}"

    def image_transform(self) -> str:
        """That the eval and train transforms turn the probe picture into float [3, H, W] of one size; keeps the size
        as `self.image_size`. The detail row, or `_Failed`."""
        b = self.backbone
        picture = probe_picture()
        shapes = []
        with _any_picture_size():
            for train in (False, True):
                out = _tensor(b.image_transform(train)(picture))
                if out.dim() != 3 or out.shape[0] != 3 or not out.is_floating_point():
                    raise _Failed(f"image_transform({train}) gives {_dtype(out)} {_shape(out)}; "
                                  "expected float [3, H, W]")
                shapes.append(tuple(out.shape))
        if shapes[0] != shapes[1]:
            raise _Failed(f"eval and train transforms give different sizes {shapes[0]} and {shapes[1]}")
        self.image_size = shapes[0]
        return f"float [3, {shapes[0][1]}, {shapes[0][2]}] (eval and train)"

    def encode_image(self) -> str:
        """That `encode_image` gives finite float32 features [B, D], distinct per image; keeps the images and features
        for later checks. The detail row, or `_Failed`."""
        b = self.backbone
        images = torch.rand(self.images, *self.image_size, generator=torch.Generator().manual_seed(0))
        self.probe_images = images
        with torch.no_grad():
            features = _tensor(b.encode_image(_fresh(images, b.device)))
        if tuple(features.shape) != (self.images, b.embed_dim):
            raise _Failed(f"image features are {_shape(features)}; expected [{self.images}, D={b.embed_dim}]")
        _float32(features, "image features")
        _finite(features, "image features")
        if self.images > 1 and _same_rows(features.detach().float().cpu()) is not None:
            raise _Failed(f"{self.images} different images get the same feature: encode_image must encode the "
                          "images it is given")
        self.image_features = features.detach().float().cpu()
        return f"{_dtype(features)} {_shape(features)}, finite{', distinct' if self.images > 1 else ''}"

    def text_repeats(self) -> str:
        """That the same prompts encoded again give the same features (`REPEAT_TOLERANCE`); the detail row, or
        `_Failed`."""
        b, ids = self.backbone, self.ids
        again = self._text_features(b.embed_tokens(ids), ids)  # [N, D]
        return _same_again("encode_text_embeds", "prompts", again, self.full, "torch.rand*")

    def image_repeats(self) -> str:
        """That the same images encoded again, and the first image alone, give the same features; the detail row, or
        `_Failed`."""
        b = self.backbone
        with torch.no_grad():
            again = _tensor(b.encode_image(_fresh(self.probe_images, b.device))).detach().float().cpu()  # [B, D]
        detail = _same_again("encode_image", "images", again, self.image_features, "torch.rand*, random crops")
        if len(self.probe_images) < 2:
            return detail
        with torch.no_grad():  # the first image on its own: vip encodes images in batches of any size
            alone = _tensor(b.encode_image(_fresh(self.probe_images[:1], b.device))).detach().float().cpu()  # [1, D]
        if tuple(alone.shape) != (1, b.embed_dim):  # [D] from a .squeeze() would broadcast in the comparison below
            raise _Failed(f"image features of a batch of 1 image are {_shape(alone)}; expected [1, D={b.embed_dim}]: "
                          "return one feature row per image whatever the batch size (no .squeeze())")
        difference = float(_relative(alone, self.image_features[:1]).max())
        if not difference <= BATCH_TOLERANCE:
            raise _Failed(f"encode_image gives an image a feature {difference:.3g} apart (relative) alone and in a "
                          "batch: a feature must not depend on the other images of its batch (batch statistics, "
                          "BatchNorm left in training mode: freeze() must put every module in eval())")
        return f"{detail}; alone and in a batch: {difference:.1e}"

    def image_state(self) -> str:
        """Batch A (the probe), then another batch B, then A again: A's features must not move (state kept
        between calls would make results depend on which images were encoded before, and on the cache)."""
        b = self.backbone
        other = torch.rand(len(self.probe_images), *self.image_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            _tensor(b.encode_image(_fresh(other, b.device)))  # [B, D], only for what it leaves behind
            again = _tensor(b.encode_image(_fresh(self.probe_images, b.device))).detach().float().cpu()  # [B, D]
        difference = float(_relative(again, self.image_features).max())
        if not difference <= BATCH_TOLERANCE:
            raise _Failed(f"encode_image gives the same images features {difference:.3g} apart (relative) before "
                          "and after encoding other images: a feature must not depend on earlier calls (state kept "
                          "between calls, e.g. a running mean or a memo updated in encode_image); compute each batch "
                          "from its images and the frozen weights alone")
        return f"A, B, then A again: max relative difference {difference:.1e}"

    def describe(self) -> str:
        """That `describe()` is strict JSON and the same every call, and `fingerprint()` a stable non-empty str; the
        detail row, or `_Failed`."""
        b = self.backbone
        described = b.describe()
        if not isinstance(described, dict):
            raise _Failed(f"describe() returned {type(described).__name__}; return a dict")
        problem = json_problem(described)
        if problem:
            raise _Failed(f"{problem}: describe() must be strict JSON")
        if b.describe() != described:
            raise _Failed("two calls to describe() differ; it must identify the weights, nothing that changes")
        fingerprint = b.fingerprint()
        if not isinstance(fingerprint, str) or not fingerprint or fingerprint != b.fingerprint():
            raise _Failed(f"fingerprint() returned {fingerprint!r}; a non-empty str, the same every call")
        return f"strict JSON, keys {', '.join(sorted(described))}; fingerprint {fingerprint}"

    def frozen(self) -> str:
        """That `modules()` holds weights and none of them requires grad; the detail row, or `_Failed`."""
        modules = self.backbone.modules()
        trainable = [name for m in modules for name, p in m.named_parameters() if p.requires_grad]
        if trainable:
            raise _Failed(f"{len(trainable)} weights still require grad (e.g. {trainable[0]}); freeze() must freeze "
                          "every module that modules() returns")
        count = sum(p.numel() for m in modules for p in m.parameters())
        if not count:
            raise _Failed(f"modules() returned {len(modules)} module(s) holding no weights: return the nn.Modules that "
                          "hold the towers' weights, so that freeze() and vip can reach them")
        return f"{len(modules)} module(s), {count / 1e6:.2f} M parameters, none trainable"


def probe_picture():
    """A small, fixed RGB picture (64 x 96, a colour ramp) to run a backbone's image pipeline on."""
    from PIL import Image

    return Image.fromarray((torch.linspace(0, 255, 96 * 64 * 3).reshape(64, 96, 3) % 256).to(torch.uint8).numpy(),
                           "RGB")


@contextlib.contextmanager
def _any_picture_size():
    """PIL's decompression-bomb limit lifted for the block: the probe picture, resized by a plugin's transform,
    is not a user's file."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def probe_features(backbone) -> torch.Tensor:
    """What two loads of the same weights must agree on: the text features of `PROBE_TEXTS` and the image feature
    of `probe_picture()` through the eval transform, [len(PROBE_TEXTS) + 1, D] float32 on the CPU."""
    with _any_picture_size():
        pixels = backbone.image_transform(False)(probe_picture())[None]  # [1, 3, H, W]
    with torch.no_grad():
        ids = backbone.tokenize(PROBE_TEXTS)
        text = backbone.encode_text_embeds(backbone.embed_tokens(ids), ids.to(backbone.device))  # [N, D]
        image = backbone.encode_image(pixels.to(backbone.device))  # [1, D]
    return torch.cat([text.detach().float().cpu(), image.detach().float().cpu()])  # [N + 1, D]


def other_weights(first: torch.Tensor, again: torch.Tensor) -> str | None:
    """How two loads' `probe_features` differ, in words, when they are not the same weights' (beyond
    `BATCH_TOLERANCE`, relative); None when they agree."""
    if first.shape != again.shape:
        return f"features of shape {_shape(first)} and {_shape(again)}"
    difference = float(_relative(again, first).max())
    return None if difference <= BATCH_TOLERANCE else f"features {difference:.3g} apart (relative)"


UNSEEDED_FIX = ("seed every random initialisation (torch.manual_seed inside torch.random.fork_rng()), and put what "
                "chooses the weights (a config, a seed, a weights file's digest) in describe()")


def same_device(found: torch.device, expected: torch.device) -> bool:
    """Whether `found` is the device `expected` names (`cuda` names any CUDA device; `cuda:1` only that one)."""
    found, expected = torch.device(found), torch.device(expected)
    return found.type == expected.type and (expected.index is None or found.index in (None, expected.index))


def run_checks(backbone, images: int = 1) -> list[Check]:
    """Run the contract on a loaded backbone; every row of the table, in order.

    Args:
        backbone: a `vipcli.backbone.Backbone`, normally from `vipcli.registry.load_backbone`.
        images: how many synthetic images to encode (0 skips `image_transform` and `encode_image`).
    """
    probe = _Probe(backbone, images)
    probe.run("attributes", "__init__", probe.attributes)
    probe.run("logit_scale", "logit_scale", probe.logit_scale)
    probe.run("tokenize", "tokenize", probe.tokenize)
    probe.run("sequence_lengths", "sequence_lengths", probe.lengths, needs=("ids",))
    probe.run("embed_tokens", "embed_tokens", probe.embed_tokens, needs=("ids",))
    probe.run("encode_text_embeds", "encode_text_embeds", probe.encode_text, needs=("ids",))
    probe.run("same prompts, same features", "encode_text_embeds", probe.text_repeats, needs=("ids", "full"))
    probe.run("one word apart", "encode_text_embeds", probe.one_word, needs=("ids", "full"))
    probe.run("long prompts, last word", "tokenize", probe.long_prompts, needs=("ids", "full", "word_pair"))
    probe.run("features follow embeds", "encode_text_embeds", probe.follows_embeddings, needs=("ids", "full"))
    probe.run("trimmed = full length", "sequence_lengths", probe.trimming, needs=("ids", "full"))
    probe.run("plain text tower = usual", "encode_text_embeds", probe.plain_text_tower, needs=("ids", "full"))
    probe.run("encode_text_parts", "encode_text_parts", probe.prompt_parts, needs=("ids", "full"))
    if images:
        probe.run("image_transform", "image_transform", probe.image_transform)
        probe.run("encode_image", "encode_image", probe.encode_image, needs=("image_size",))
        probe.run("same images, same features", "encode_image", probe.image_repeats, needs=("image_features",))
        probe.run("no state between calls", "encode_image", probe.image_state, needs=("image_features",))
    probe.run("describe / fingerprint", "describe", probe.describe)
    probe.run("frozen", "modules", probe.frozen)
    return probe.checks


def check_reload(first, load_again: Callable[[], object]) -> Check:
    """Load the backbone a second time: `describe()`, `fingerprint()` and the probes' features must come back equal."""
    try:
        second = load_again()
    except VipError as error:
        return Check("same describe() on reload", "describe", False, error.message)
    try:
        a, b = first.describe(), second.describe()
        if not (isinstance(a, dict) and isinstance(b, dict)):
            raise TypeError("describe() returned no dict")
    except Exception:  # noqa: BLE001 - the describe check's own row names what is wrong with it
        return Check("same describe() on reload", "describe", None, "skipped: an earlier check it needs failed")
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return Check("same describe() on reload", "describe", False,
                     f"describe() differs between two loads of the same weights in {', '.join(keys)}: "
                     "leave out anything that changes per load (times, memory addresses, random ids)")
    if first.fingerprint() != second.fingerprint():
        return Check("same describe() on reload", "fingerprint", False, "fingerprint() differs between two loads")
    try:
        apart = other_weights(probe_features(first), probe_features(second))
    except Exception:  # noqa: BLE001 - the text and image rows name what is wrong with the encoders
        return Check("same describe() on reload", "describe", True, "equal describe() and fingerprint(); features "
                                                                     "not compared (an encoder check failed)")
    if apart is not None:
        return Check("same describe() on reload", "describe", False,
                     f"two loads with equal describe() give the probe prompts and image {apart}: the weights are not "
                     f"what describe() says (an unseeded random init?), so cached features and runs would mix "
                     f"weights; {UNSEEDED_FIX}")
    return Check("same describe() on reload", "describe", True, "equal describe(), fingerprint() and features")


def check_cuda_graphs(backbone, maker: Callable | None = None) -> Check:
    """Whether a backbone that declares `cuda_graphs` really can replay its text tower from a graph.

    Captures the tower's forward and backward over a few prompts, as a training step does, and
    compares them with the eager tower (`vipcli.graphs.GraphedTextTower`). Needs a CUDA device
    (or a stand-in `maker`); elsewhere the row says so.
    """
    from vipcli import graphs
    from vipcli.devices import autocast
    from vipcli.prompts import build_prompt_bank

    name, member = "CUDA graphs", "cuda_graphs"
    if not getattr(backbone, "cuda_graphs", False):
        return Check(name, member, True, "not declared: training runs the text tower eagerly")
    maker = maker or graphs.graph_maker(backbone.device)
    if maker is None and backbone.device.type == "cuda":
        return Check(name, member, True, "declared; not captured here (VIP_CUDA_GRAPHS=0, or a capture failed "
                                         "earlier in this process)")
    if maker is None:
        return Check(name, member, True, "declared; captured and compared only on a CUDA device (--device cuda)")
    try:
        bank = build_prompt_bank(backbone, [["a photo of a round spot."] * 4], 0)  # trimmed, as training does
        embeds = bank.token_embeds.clone().requires_grad_(True)  # [4, L, W]
        tower = graphs.GraphedTextTower(backbone, maker, quiet=True)
        with autocast(backbone.device):
            tower(embeds, bank.ids)
    except Exception as error:  # the eager tower itself failed: the other rows say where
        return Check(name, member, False, f"raised {graphs.first_line(error)}")
    if tower.failed is not None:
        return Check(name, member, False, f"{tower.failed}; set cuda_graphs = False, or remove what the text tower "
                                          "reads back from the device")
    return Check(name, member, True, "captured; forward and gradients equal the eager tower's")


def first_failure(checks: list[Check]) -> Check | None:
    """The first failed row, or None when every check passed or was skipped."""
    return next((c for c in checks if c.ok is False), None)


def as_json(checks: list[Check]) -> str:
    """The table as one JSON document (for `vip backbones check --json`)."""
    rows = [{"check": c.name, "member": c.member, "ok": c.ok, "detail": c.detail} for c in checks]
    return json.dumps({"ok": all(c.ok is not False for c in checks), "checks": rows}, indent=2)
