"""CLAP (Silva-Rodriguez et al., CVPR 2024): a class-adaptive constrained linear probe.

Class prototypes W [C, D] start at the zero-shot text features T and are trained with

    CE(s * norm(f) norm(W)^T) + mean_c lambda_c * ||w_c - t_c||^2

where lambda_c, the class-adaptive penalty, is the zero-shot model's mean probability of the true
class over the support images of class c (a class zero-shot already gets right stays close to its
text prototype). No validation search: the final epoch is kept (the method's point). Training
follows the authors' public configuration (SGD_lr1e-1_B256_ep300): SGD, momentum 0.9, lr 0.1,
300 epochs, batch 256, cosine decay, on the cached augmented views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vipcli.methods.base import Method, check_positive_training
from vipcli.methods.prompting import ZERO_SHOT_TEMPLATE, readable_class_name
from vipcli.prompts import class_text_features


@dataclass
class ClapSettings:
    """CLAP's training settings: the authors' configuration SGD_lr1e-1_B256_ep300."""

    epochs: int = 300
    lr: float = 0.1
    batch_size: int = 256

    def validate(self) -> None:
        """Refuse settings that cannot work."""
        check_positive_training(self)


def class_adaptive_penalty(zero_shot_logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """lambda_c: mean zero-shot probability of the true class over the support images of class c.

    Args:
        zero_shot_logits: [N, C]; labels: [N].
    Returns:
        [C] (0 for a class without support images).
    """
    probabilities = zero_shot_logits.softmax(-1)  # [N, C]
    one_hot = F.one_hot(labels, num_classes).float()  # [N, C]
    return (probabilities * one_hot).sum(0) / one_hot.sum(0).clamp(min=1)


class Clap(Method):
    """CLAP: zero-shot-initialised prototypes, a class-adaptive L2 pull towards the text features."""

    summary = "CLAP: class-adaptive constrained linear probe from zero-shot weights"
    uses_symptoms = False  # its prompts are the class names alone
    Settings = ClapSettings

    def __init__(self, setup, settings=None, stored=None):
        super().__init__(setup, settings, stored)
        stored = stored or {}
        self.prompts = stored.get("prompts") or [[ZERO_SHOT_TEMPLATE.format(readable_class_name(n))]
                                                 for n in setup.class_names]
        self.penalty = stored.get("penalty")
        self.register_buffer("logit_scale", setup.backbone.logit_scale.detach().clone().float().cpu(),
                             persistent=False)
        base = class_text_features(setup.backbone, self.prompts, setup.trim)  # [C, D] mean raw features
        self.register_buffer("base_text_features", base, persistent=False)  # [C, D]
        self.prototypes = nn.Parameter(base.clone())  # [C, D]
        self.to(setup.device)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """[B, D] -> [B, C]: scaled cosine to the prototypes."""
        return self.logit_scale.exp() * F.normalize(image_features, dim=-1) @ F.normalize(self.prototypes, dim=-1).T

    def constraint(self, penalty: torch.Tensor) -> torch.Tensor:
        """mean_c lambda_c * ||w_c - t_c||^2."""
        return (penalty * (self.prototypes - self.base_text_features).pow(2).sum(-1)).mean()

    def fit(self, data, context) -> dict:
        """Set the class-adaptive penalty from zero-shot, then SGD on random cached views."""
        from vipcli import console
        from vipcli.fitting import accuracy, mean_loss, random_view_batches

        device, s = self.setup.device, self.settings
        train = data.train.to(device)  # moved once for the whole fit
        views = data.train.views  # [N, V, D]
        with torch.no_grad():
            flat = views.reshape(-1, views.shape[-1]).float().to(device)  # [N*V, D]
            penalty = class_adaptive_penalty(self(flat), data.train.y.repeat_interleave(views.shape[1]).to(device),
                                             self.setup.num_classes)  # [C]
        self.penalty = [round(float(p), 6) for p in penalty]
        optimizer = torch.optim.SGD([self.prototypes], lr=s.lr, momentum=0.9)
        steps = s.epochs * -(-len(data.train.y) // s.batch_size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        generator = torch.Generator().manual_seed(context.seed)
        history = []
        with console.task(context.progress, "training CLAP", s.epochs) as advance:
            for epoch in range(s.epochs):
                self.train()
                losses = []
                for features, labels in random_view_batches(train, s.batch_size, generator):
                    logits = self(features.to(device).float())
                    loss = F.cross_entropy(logits, labels.to(device)) + self.constraint(penalty)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    losses.append(loss.detach())  # read once per epoch
                history.append({"epoch": epoch, "loss": mean_loss(losses)})
                advance()
        self.eval()
        return {"best_epoch": s.epochs - 1, "best_val_accuracy": round(100 * accuracy(self, data.val, device), 2),
                "penalty": self.penalty, "history": history}

    def record(self) -> dict:
        """The zero-shot prompts and the class-adaptive penalty."""
        return {"prompts": self.prompts, "penalty": self.penalty}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The trained prototypes [C, D]."""
        return {"prototypes": self.prototypes.detach()}
