"""The prompt-learning core shared by every method whose classes are text prompts.

ViP and its ablations, CoOp, BiomedCoOp and the zero-shot baselines all encode per-class prompts
with the frozen text tower, optionally with learned context vectors spliced in after the start
token (CoP) and a learned merge over a class's prompts (MeP). `PromptMethod` holds that machinery;
each method module only says which prompts it encodes and what learns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vipcli.errors import UsageError
from vipcli.methods.base import Method, MethodSetup, NoSettings
from vipcli.graphs import run_text_tower
from vipcli.prompts import PaddingLayout, build_prompt_bank, encode_prompts

ZERO_SHOT_TEMPLATE = "a photo of a {}."


def readable_class_name(name: str) -> str:
    """A class folder name as words: 'basal_cell-carcinoma' -> 'basal cell carcinoma'."""
    return name.replace("_", " ").replace("-", " ").lower()


def pad_by_class(features: torch.Tensor, class_index: torch.Tensor, num_classes: int):
    """Group prompt features by class into a padded block.

    Args:
        features: [P, D] one row per prompt.
        class_index: [P] the class of each row.
    Returns:
        (padded [C, K, D], mask [C, K] True where a real prompt sits), K the most prompts of a class.
    """
    return PaddingLayout(class_index.cpu(), num_classes, features.device).pad(features)


_same_prompts_warned: set[tuple] = set()


def warn_same_prompts(method) -> None:
    """Warn (once per process, method and pair) when two classes' prompts tokenise to the same tokens.

    Under one shared context their text features are then equal and the method predicts them with
    tied logits forever: the same symptoms given to both, class names that differ only in case, or a
    tokenizer that loses the words that tell them apart. Called for a method just built (not loaded
    from a run), once the registry has given it its id; anything but a `PromptMethod` is left alone,
    and so is one that learns something of each class's own: a context per class, or a merge prompt
    (its token g_c is added to class c's merged symptoms, so equal symptoms still give two classes
    their own embeddings).
    """
    from rich.markup import escape

    from vipcli import console, distributed

    if not isinstance(method, PromptMethod) or getattr(method.settings, "class_specific_context", False):
        return
    if not distributed.world_from_env().main:  # under torchrun every rank builds the method: rank 0 tells
        return
    if method.merge is not None:  # MeP: s_c = g_c + a_c T_c, with g_c learned per class
        return
    bank, names = method.bank, method.setup.class_names
    classes = [c for c, count in enumerate(bank.layout.counts) for _ in range(count)]  # [P], prompts in class order
    for a, b in bank.same_prompts:
        key = (method.id, names[a], names[b], tuple(bank.texts))
        if key in _same_prompts_warned:
            continue
        _same_prompts_warned.add(key)
        texts_a, texts_b = (sorted(t for t, c in zip(bank.texts, classes) if c == k) for k in (a, b))
        if texts_a == texts_b:
            why = "have the same prompts"
            fix = ("give each class its own symptoms" if method.prompts_are_symptoms else
                   "rename a class folder so the names differ in words, not only in case or separators")
        else:
            why = "have prompts that the backbone's tokenizer turns into the same tokens"
            fix = "check the tokenizer with `vip backbones check`"
        console.warn(escape(f"classes '{names[a]}' and '{names[b]}' {why}: method '{method.id}' "
                            f"cannot tell them apart by text; {fix}"))


class MergePrompt(nn.Module):
    """MeP: a learned token per class attends over that class's symptom features.

    q_c = W_q g_c;  K_c = T_c W_k^T;  a_c = softmax(q_c K_c^T / sqrt(D));  s_c = g_c + a_c T_c
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.randn(num_classes, dim) * 0.02)  # [C, D] g_c
        self.w_q = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, dim)))  # [D, D] (y = x @ w.T)
        self.w_k = nn.Parameter(nn.init.xavier_normal_(torch.empty(dim, dim)))  # [D, D]

    def forward(self, symptoms: torch.Tensor, mask: torch.Tensor):
        """Merge padded symptom features [C, K, D] (mask [C, K]) into class embeddings.

        Returns:
            (s [C, D], a [C, K] attention weights, zero on padding)
        """
        query = self.token @ self.w_q.T  # [C, D]
        keys = symptoms @ self.w_k.T  # [C, K, D]
        scores = torch.einsum("cd,ckd->ck", query, keys) / math.sqrt(symptoms.shape[-1])  # [C, K]
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # [C, K]
        merged = self.token + torch.einsum("ck,ckd->cd", weights, symptoms)  # [C, D]
        return merged, weights


@dataclass
class ContextSettings:
    """Settings of the methods that learn context vectors."""

    n_ctx: int = 4  # M, learned context vectors spliced in after the start token
    class_specific_context: bool = False  # one context per class instead of one shared by all

    def validate(self) -> None:
        """Refuse settings that cannot work."""
        if self.n_ctx < 1:
            raise UsageError(f"--n-ctx must be at least 1 for a method that learns context, got {self.n_ctx}")


class PromptMethod(Method):
    """Classes as text prompts: logit_c(x) = exp(logit_scale) * cos(f(x), e_c).

    e_c is the learned merge of class c's prompt features (with a merge prompt) or the mean of
    their unit vectors (without one). Subclasses set `learns_context` / `learned_merge` and
    implement `make_prompts`.
    """

    uses_schedule = True
    Settings = ContextSettings  # by default: ContextSettings when the class learns context, else NoSettings
    _settings_by_default = True  # Settings not set by the class or a base below PromptMethod
    learns_context: bool = False
    learned_merge: bool = False
    prompts_are_symptoms: bool = False  # explanations name symptoms (else the prompt texts)

    def __init_subclass__(cls, **kwargs):
        """A subclass that sets no `Settings` gets `ContextSettings` (n_ctx, class_specific_context) if it
        learns context and `NoSettings` if not, so a method never offers options that do nothing."""
        super().__init_subclass__(**kwargs)
        if "Settings" in cls.__dict__:
            cls._settings_by_default = False
        elif cls._settings_by_default:
            cls.Settings = ContextSettings if cls.learns_context else NoSettings

    def __init__(self, setup: MethodSetup, settings=None, stored: dict | None = None):
        super().__init__(setup, settings, stored)
        backbone = setup.backbone
        if stored and stored.get("prompts"):
            self.prompts = [list(p) for p in stored["prompts"]]
        else:
            from vipcli.methods.contract import check_prompts

            made = self.make_prompts(setup)
            check_prompts(made, setup.class_names)  # list[list[str]]: a flat list of str would be spelled out
            self.prompts = [list(p) for p in made]
        n_ctx = self.settings.n_ctx if self.learns_context else 0
        self.bank = build_prompt_bank(backbone, self.prompts, n_ctx, trim=setup.trim)
        class_specific = bool(getattr(self.settings, "class_specific_context", False))
        width, num_classes = backbone.token_width, setup.num_classes
        shape = (num_classes, n_ctx, width) if class_specific else (n_ctx, width)
        self.context = nn.Parameter(self.initial_context(shape)) if n_ctx > 0 else None  # [M, W] | [C, M, W]
        self.merge = MergePrompt(num_classes, backbone.embed_dim) if self.learned_merge else None
        self.register_buffer("logit_scale", backbone.logit_scale.detach().clone().float(), persistent=False)
        self._frozen_text: torch.Tensor | None = None  # prompt features when nothing text-side learns
        self._inference: tuple | None = None  # (E [C, D], prompt features [P, D], weights [C, K]) once prepared
        self.to(setup.device)

    # --- what subclasses say -------------------------------------------------------------------

    def make_prompts(self, setup: MethodSetup) -> list[list[str]]:
        """Per class (in `setup.class_names` order), the list of phrases this method encodes.

        Checked when the method is built: anything but one non-empty list of str per class is refused.
        """
        raise NotImplementedError

    def initial_context(self, shape: tuple) -> torch.Tensor:
        """Initial context vectors (CoOp/ViP: N(0, 0.02))."""
        return torch.randn(*shape) * 0.02

    # --- the forward pass ----------------------------------------------------------------------

    def prompt_features(self) -> torch.Tensor:
        """[P, D] text features of every prompt under the current context."""
        if self.context is None:
            if self._frozen_text is None:
                with torch.no_grad():
                    self._frozen_text = encode_prompts(self.backbone, self.bank, None)
            return self._frozen_text
        return encode_prompts(self.backbone, self.bank, self.context)

    def class_embeddings(self, features: torch.Tensor | None = None):
        """Class embeddings E [C, D] (so logits = scale * normalize(f) @ E.T) and details.

        Args:
            features: [P, D] prompt features already encoded under this method's context (by
                `encode_stacked_prompts` for several methods at once); None encodes them here.
        Returns:
            (E [C, D], prompt features [P, D], weights [C, K], mask [C, K])
        """
        features = self.prompt_features() if features is None else features  # [P, D]
        padded, mask = self.bank.layout.pad(features)  # [C, K, D], [C, K]
        if self.merge is not None:
            merged, weights = self.merge(padded, mask)  # [C, D], [C, K]
            return F.normalize(merged, dim=-1), features, weights, mask
        unit = F.normalize(padded, dim=-1) * mask[..., None]  # [C, K, D]
        weights = mask / mask.sum(dim=1, keepdim=True)  # [C, K] uniform
        return (unit * weights[..., None]).sum(dim=1), features, weights, mask  # mean of cosines

    def logits_from(self, image_features: torch.Tensor, class_embeddings: torch.Tensor) -> torch.Tensor:
        """[B, D] image features, [C, D] class embeddings -> [B, C] logits."""
        return self.logit_scale.exp() * F.normalize(image_features, dim=-1) @ class_embeddings.T

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """[B, D] -> [B, C]; uses the embeddings cached by `prepare` in eval mode."""
        if self._inference is not None and not self.training:
            return self.logits_from(image_features, self._inference[0])
        return self.logits_from(image_features, self.class_embeddings()[0])

    def train(self, mode: bool = True):
        """Switch mode; any embeddings cached for inference are dropped."""
        self._inference = None
        return super().train(mode)

    def prepare(self, features: torch.Tensor | None = None) -> None:
        """Compute the class embeddings once for inference (from `features` [P, D] if given)."""
        self.eval()
        with torch.no_grad():
            embeddings, features, weights, _ = self.class_embeddings(features)
        self._inference = (embeddings, features, weights)

    # --- fitting several runs of one method together --------------------------------------------

    @classmethod
    def fits_in_batches(cls) -> bool:
        """Several runs of this class can train as one batched text forward (`fit_sgd_many`).

        True for methods that learn context with the shared SGD loop and whose loss `batched_loss`
        computes from prompt features: the plain cross-entropy of `forward` (no `training_loss`), or
        a `training_loss` that the same class also writes as `batched_loss` (BiomedCoOp). A subclass
        with its own `fit`, `forward`, or a `training_loss` without a matching `batched_loss`, is left alone.
        """
        loss_owner, batched_owner = (next((k for k in cls.__mro__ if name in vars(k)), None)
                                     for name in ("training_loss", "batched_loss"))
        own_loss_batches = batched_owner is PromptMethod if loss_owner is None else batched_owner is loss_owner
        return (cls.learns_context and cls.fit is PromptMethod.fit and cls.forward is PromptMethod.forward
                and cls.class_embeddings is PromptMethod.class_embeddings
                and cls.prompt_features is PromptMethod.prompt_features and own_loss_batches)

    def batched_loss(self, image_features: torch.Tensor, labels: torch.Tensor,
                     prompt_features: torch.Tensor) -> torch.Tensor:
        """The training loss ([B, D] features, [B] labels) from prompt features [P, D]: cross-entropy
        on the logits of `forward`. A subclass with its own `training_loss` that overrides this too, with
        the same loss, can train batched (`fits_in_batches`)."""
        logits = self.logits_from(image_features, self.class_embeddings(prompt_features)[0])  # [B, C]
        return F.cross_entropy(logits.float(), labels)

    def fit(self, data, context):
        """SGD over whatever learns (context, merge prompt); nothing to do for hand prompts."""
        from vipcli.fitting import fit_sgd, no_training

        if not any(p.requires_grad for p in self.parameters()):
            return no_training(self, data)
        return fit_sgd(self, data, context)

    def merge_weights(self) -> torch.Tensor:
        """[C, K] the weight of each prompt in its class embedding (uniform without a merge prompt)."""
        if self._inference is None:
            self.prepare()
        return self._inference[2]

    # --- saving and explaining -----------------------------------------------------------------

    def record(self) -> dict:
        """The prompts as encoded (predict re-encodes exactly these)."""
        return {"prompts": self.prompts}

    @torch.no_grad()
    def explain(self, image_feature: torch.Tensor) -> list[dict]:
        """Per class: each prompt's cosine similarity to the image, merge weight and logit contribution.

        The class logit is s * <f, e_c> with e_c = (g_c + sum_k a_ck t_k) / |g_c + sum_k a_ck t_k|
        (merge prompt) or sum_k a_ck t_k / |t_k| (mean of unit vectors), f the unit image feature and
        s the backbone's logit scale. A prompt's contribution is its term of that sum,
        s * a_ck * <f, t_k> / |...|: a class's contributions add up to its logit (before temperature),
        less the merge token's own small term s * <f, g_c> / |...|. Weight x similarity alone would
        ignore that the prompts' features differ in length.
        """
        if self._inference is None:
            self.prepare()
        _, features, weights = self._inference
        image = F.normalize(image_feature.to(features.device).float(), dim=-1)  # [D]
        similarities = F.normalize(features, dim=-1) @ image  # [P]
        padded, mask = self.bank.layout.pad(features)  # [C, K, D], [C, K]
        if self.merge is not None:
            merged = self.merge.token + torch.einsum("ck,ckd->cd", weights, padded)  # [C, D]
            along = (padded @ image) / merged.norm(dim=-1, keepdim=True)  # [C, K] <f, t_k> / |merged|
        else:
            along = F.normalize(padded, dim=-1) @ image  # [C, K] <f, t_k / |t_k|>
        contributions = self.logit_scale.exp() * weights * along  # [C, K]
        result = []
        for c, name in enumerate(self.setup.class_names):
            rows = (self.bank.class_index == c).nonzero().flatten().tolist()
            phrases = self.prompts[c] if self.prompts_are_symptoms else [self.bank.texts[r] for r in rows]
            entries = [{"symptom": phrases[k], "similarity": float(similarities[r]), "weight": float(weights[c, k]),
                        "contribution": float(contributions[c, k])} for k, r in enumerate(rows)]
            result.append({"class": name, "symptoms": entries})
        return result


def symptom_prompts(setup: MethodSetup, method_id: str) -> list[list[str]]:
    """Per class, its symptoms; a class without any is one clear error."""
    from vipcli.errors import VipError

    missing = [name for name in setup.class_names if not setup.symptoms.get(name)]
    if missing:
        raise VipError(f"method '{method_id}' needs symptoms, and class {', '.join(map(repr, missing))} has none",
                       "pass --symptoms PACK or a {class: [symptoms]} file")
    return [list(setup.symptoms[name]) for name in setup.class_names]


def fits_together(methods: list, batchable: bool | None = None) -> bool:
    """True when `methods` are runs of one batchable method over the same prompts and backbone.

    `batchable`: the class's `fits_in_batches()` answer where the caller has asked it already (a sweep asks each
    method once); None asks it here."""
    from vipcli.methods.contract import trains_batched

    lead = methods[0]
    if not isinstance(lead, PromptMethod) or lead.context is None:
        return False
    if not (trains_batched(type(lead), lead.id) if batchable is None else batchable):
        return False
    return all(type(m) is type(lead) and m.backbone is lead.backbone and m.context is not None
               and m.context.shape == lead.context.shape and m.bank.texts == lead.bank.texts
               and torch.equal(m.bank.ids, lead.bank.ids) and m.bank.n_ctx == lead.bank.n_ctx for m in methods)


def encode_stacked_prompts(methods: list) -> list[torch.Tensor]:
    """Prompt features of S runs of one method in one pass of the text tower.

    Every method must satisfy `fits_together` (same prompt bank, own context). The S contexts
    [S, M, W] (or [S, C, M, W]) are spliced into S copies of the bank, so the tower runs once
    over S x P prompts instead of S times over P; each run's prompts share their start token and
    context (`PromptBank.prompt_parts`), which a backbone may compute once per run.
    Returns:
        S tensors [P, D], each differentiable w.r.t. its own method's context only.
    """
    lead = methods[0]
    bank = lead.bank
    contexts = torch.stack([m.context for m in methods])  # [S, M, W] | [S, C, M, W]
    count, prompts = contexts.shape[0], bank.ids.shape[0]
    ids = bank.repeated_ids(count)  # [S*P, L], the same tensor every step
    features = run_text_tower(lead.backbone, bank.prompt_parts(contexts), ids)  # [S*P, D]
    return list(features.float().reshape(count, prompts, -1).unbind(0))  # S x [P, D]
