"""Tip-Adapter and Tip-Adapter-F (Zhang et al., ECCV 2022): a key-value cache of few-shot features.

    logits(f) = s * f W^T + alpha * exp(-beta * (1 - f K^T)) L

f the normalised image feature [B, D], W the zero-shot class text features [C, D] (normalised),
s the backbone's logit scale (100 for CLIP, as the paper), K the cache keys [N, D] (the normalised
mean of each training image's raw augmented-view features), L their one-hot labels [N, C]. alpha and beta are
searched on validation over the paper's grid. Tip-Adapter-F also fine-tunes K (AdamW, lr 1e-3,
eps 1e-4, cosine over 20 epochs, batch 256), keeping the best validation epoch, then searches
alpha and beta again. Both run on cached features: the image encoder never runs per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vipcli.errors import VipError
from vipcli.methods.base import Method, check_positive_training, check_setting
from vipcli.methods.prompting import ZERO_SHOT_TEMPLATE, readable_class_name
from vipcli.prompts import class_text_features


@dataclass
class TipAdapterSettings:
    """The search grid (the paper's: beta in [0.1, 7), 200 steps; alpha in [0.1, 3), 20 steps)."""

    init_alpha: float = 1.0  # residual ratio before the search
    init_beta: float = 1.0  # sharpness before the search
    beta_scale: float = 7.0
    beta_steps: int = 200
    alpha_scale: float = 3.0
    alpha_steps: int = 20

    def validate(self) -> None:
        """Refuse grids that cannot work."""
        for grid in ("beta", "alpha"):  # the search grid runs from 0.1 up to the scale
            check_setting(self, f"{grid}_steps", getattr(self, f"{grid}_steps") >= 1, "the search needs at least one step")
            check_setting(self, f"{grid}_scale", getattr(self, f"{grid}_scale") > 0.1,
                          "the search runs from 0.1 up to the scale, which must be above 0.1")


def search_grid(scale: float, steps: int) -> list[float]:
    """The paper's grid: i * (scale - 0.1) / steps + 0.1 for i < steps."""
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


def tip_logits(features: torch.Tensor, class_weights: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
               alpha: float, beta: float, scale: torch.Tensor) -> torch.Tensor:
    """The Tip-Adapter formula.

    Args:
        features: [B, D] image features (normalised here).
        class_weights: [C, D] normalised zero-shot text features.
        keys: [N, D] cache keys; values: [N, C] one-hot labels.
    Returns:
        [B, C] logits.
    """
    f = F.normalize(features, dim=-1)
    clip_logits = scale * f @ class_weights.T  # [B, C]
    affinity = f @ keys.T  # [B, N]
    cache_logits = torch.exp(-beta * (1 - affinity)) @ values  # [B, C]
    return clip_logits + alpha * cache_logits


class TipAdapter(Method):
    """Tip-Adapter: training-free; the few-shot cache plus zero-shot CLIP, alpha/beta searched on val."""

    summary = "Tip-Adapter: few-shot key-value cache + zero-shot, training-free"
    uses_symptoms = False  # its prompts are the class names alone
    trains = False
    Settings = TipAdapterSettings

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        stored = stored or {}
        self.prompts = stored.get("prompts") or [[ZERO_SHOT_TEMPLATE.format(readable_class_name(n))]
                                                 for n in setup.class_names]
        self.alpha = float(stored.get("alpha", self.settings.init_alpha))
        self.beta = float(stored.get("beta", self.settings.init_beta))
        d, c = setup.backbone.embed_dim, setup.num_classes
        self.register_buffer("cache_keys", torch.zeros(0, d))  # [N, D]
        self.register_buffer("cache_values", torch.zeros(0, c))  # [N, C]
        self.register_buffer("logit_scale", setup.backbone.logit_scale.detach().clone().float().cpu(),
                             persistent=False)
        self.register_buffer("class_weights", class_text_features(setup.backbone, self.prompts, setup.trim, unit=True),
                             persistent=False)  # [C, D] normalised zero-shot weights
        self.to(setup.device)

    def keys(self) -> torch.Tensor:
        """The cache keys [N, D] used in the forward pass."""
        return self.cache_keys

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """[B, D] -> [B, C] by the Tip-Adapter formula."""
        return tip_logits(image_features, self.class_weights, self.keys(), self.cache_values, self.alpha, self.beta,
                          self.logit_scale.exp())

    def build_cache(self, train) -> None:
        """Keys: per image the normalised mean of its augmented views' raw features, as the authors
        average the encoder's output over augmentation epochs before normalising; values: one-hot labels."""
        views = train.views.float()  # [N, V, D] raw image features
        device = self.setup.device
        self.cache_keys = F.normalize(views.mean(dim=1), dim=-1).to(device)  # [N, D]
        self.cache_values = F.one_hot(train.y, self.setup.num_classes).float().to(device)  # [N, C]

    @torch.no_grad()
    def search(self, val) -> float:
        """Set alpha and beta to the grid point with the best validation accuracy; return it."""
        if not len(val.y):
            raise VipError("tip-adapter searches alpha and beta on validation images, and there are none",
                           "add images to val/ or let vip split train")
        device = self.setup.device
        f = F.normalize(val.x.float().to(device), dim=-1)  # [M, D]
        clip_logits = self.logit_scale.exp() * f @ self.class_weights.T  # [M, C]
        affinity = f @ self.keys().T  # [M, N]
        labels = val.y.to(device)
        alphas = torch.tensor(search_grid(self.settings.alpha_scale, self.settings.alpha_steps))  # [A], float32
        betas = search_grid(self.settings.beta_scale, self.settings.beta_steps)
        on_device = alphas.to(device)
        scores = []  # per beta, the accuracy of every alpha [A], left on the device
        for beta in betas:
            cache_logits = torch.exp(-beta * (1 - affinity)) @ self.cache_values  # [M, C]
            logits = clip_logits[None] + on_device[:, None, None] * cache_logits[None]  # [A, M, C]
            scores.append((logits.argmax(-1) == labels).float().mean(-1))  # [A]
        # read once (a read per beta made a GPU wait 2 x 200 times per fit); the first best in grid order, beta
        # then alpha, as a scan keeping only a strictly better point chooses
        table = torch.stack(scores).cpu()  # [B, A]
        best = int(table.flatten().argmax())  # argmax returns the first of equal maxima
        row, column = divmod(best, len(alphas))
        self.alpha, self.beta = float(alphas[column]), betas[row]
        return float(table[row, column])

    def fit(self, data, context) -> dict:
        """Build the cache from the few-shot views, then search alpha and beta on validation."""
        self.build_cache(data.train)
        score = self.search(data.val)
        return {"best_epoch": None, "best_val_accuracy": round(100 * score, 2), "alpha": self.alpha,
                "beta": self.beta, "history": []}

    def record(self) -> dict:
        """The zero-shot prompts and the searched alpha and beta."""
        return {"prompts": self.prompts, "alpha": self.alpha, "beta": self.beta}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The cache: keys [N, D] and one-hot values [N, C]."""
        return {"cache_keys": self.keys().detach(), "cache_values": self.cache_values.detach()}

    def load_state_tensors(self, tensors, where: str) -> None:
        """Load a stored cache of any size, checking its shapes against the backbone and classes."""
        keys, values = tensors.get("cache_keys"), tensors.get("cache_values")
        d, c = self.setup.backbone.embed_dim, self.setup.num_classes
        if keys is None or values is None or keys.dim() != 2 or keys.shape[1] != d or tuple(values.shape) != (
                keys.shape[0], c) or set(tensors) != {"cache_keys", "cache_values"}:
            found = {name: tuple(t.shape) for name, t in tensors.items()}
            raise VipError(f"{where}: saved tensors {found} are not a Tip-Adapter cache for {c} classes of "
                           f"dimension {d}", "predict with the backbone and arch the run was trained with")
        self.cache_keys = keys.float().to(self.setup.device)
        self.cache_values = values.float().to(self.setup.device)


@dataclass
class TipAdapterFSettings(TipAdapterSettings):
    """Tip-Adapter-F adds the fine-tuning of the keys (the paper's: 20 epochs, lr 1e-3, batch 256)."""

    epochs: int = 20
    lr: float = 0.001
    batch_size: int = 256

    def validate(self) -> None:
        """Refuse settings that cannot work."""
        super().validate()
        check_positive_training(self)


class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: the cache keys fine-tuned with cross-entropy, then alpha/beta searched on val."""

    summary = "Tip-Adapter-F: the cache keys fine-tuned, then alpha/beta searched"
    trains = True
    Settings = TipAdapterFSettings

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        self.adapter = None  # nn.Parameter [N, D] once the cache is built

    def keys(self) -> torch.Tensor:
        """The fine-tuned keys while training and after; the built cache before."""
        return self.adapter if self.adapter is not None else self.cache_keys

    def fit(self, data, context) -> dict:
        """Fine-tune the keys (AdamW, cosine) on random cached views; keep the best val epoch; search."""
        from vipcli import console
        from vipcli.fitting import accuracy, mean_loss, random_view_batches

        self.build_cache(data.train)
        self.adapter = nn.Parameter(self.cache_keys.clone())  # [N, D]
        s = self.settings
        optimizer = torch.optim.AdamW([self.adapter], lr=s.lr, eps=1e-4)
        steps = s.epochs * -(-len(data.train.y) // s.batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        generator = torch.Generator().manual_seed(context.seed)
        device = self.setup.device
        train = data.train.to(device)  # moved once for the whole fit
        best, best_keys, history = -1.0, self.adapter.detach().clone(), []
        with console.task(context.progress, "fine-tuning the cache", s.epochs) as advance:
            for epoch in range(s.epochs):
                self.train()
                losses = []
                for features, labels in random_view_batches(train, s.batch_size, generator):
                    loss = F.cross_entropy(self(features.to(device)).float(), labels.to(device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    losses.append(loss.detach())  # read once per epoch
                score = accuracy(self, data.val, device)
                history.append({"epoch": epoch, "loss": mean_loss(losses),
                                "val_accuracy": round(100 * score, 2)})
                if score > best:
                    best, best_keys = score, self.adapter.detach().clone()
                advance()
        best_epoch = max(range(len(history)), key=lambda e: (history[e]["val_accuracy"], -e))
        self.adapter = None
        self.cache_keys = best_keys
        score = self.search(data.val)
        return {"best_epoch": best_epoch, "best_val_accuracy": round(100 * score, 2), "alpha": self.alpha,
                "beta": self.beta, "history": history}
