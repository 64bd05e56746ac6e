"""Optimisation schedules: the paper's (full data) and the few-shot literature's."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vipcli.errors import UsageError

WARMUP_LR = 1e-5  # constant learning rate of the first (warm-up) epoch


@dataclass(frozen=True)
class Schedule:
    """SGD (momentum 0.9, weight decay 5e-4), one warm-up epoch, then cosine decay."""

    name: str  # "paper" or "fewshot"
    epochs: int  # total epochs, warm-up included
    batch_size: int  # images per step
    lr: float  # peak learning rate after warm-up

    def lr_at(self, epoch: int) -> float:
        """Learning rate of `epoch` (0-based): 1e-5 for epoch 0, then cosine from `lr`."""
        if epoch == 0 and self.epochs > 1:
            return WARMUP_LR
        return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / self.epochs))


PRESETS = {
    # docs/METHOD.md section 3: ViT-B/16, batch 32, lr 0.002, 50 epochs (full training data)
    "paper": Schedule("paper", epochs=50, batch_size=32, lr=0.002),
    # BiomedCoOp's few-shot protocol for medical images: batch 4, 100 epochs
    "fewshot": Schedule("fewshot", epochs=100, batch_size=4, lr=0.002),
}


def resolve_schedule(name: str, shots: int | None, epochs=None, batch_size=None, lr=None) -> Schedule:
    """Pick the preset (`auto`: few-shot when `shots` is set, else the paper's) and apply overrides."""
    if name == "auto":
        name = "fewshot" if shots else "paper"
    if name not in PRESETS:
        raise UsageError(f"unknown schedule '{name}'", "choose auto, fewshot or paper")
    base = PRESETS[name]
    for option, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--lr", lr)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{option} must be a positive number, got {value}")
    return Schedule(name, epochs or base.epochs, batch_size or base.batch_size, lr or base.lr)


def schedule_words(name: str, shots, epochs=None, batch_size=None, lr=None) -> str:
    """The schedule each shot count of a sweep trains with, in words a reader of a report follows, e.g.
    'auto: few-shot at 1, 2 shots (100 epochs, 4 images a step, learning rate 0.002)'.

    Args:
        name: auto, fewshot or paper, as given to --schedule.
        shots: the sweep's shot counts (ints, or "all"/None for every training image).
    """
    by_preset: dict[Schedule, list] = {}
    for k in shots:
        try:
            chosen = resolve_schedule(name, None if k in (None, "all") else int(k), epochs, batch_size, lr)
        except (UsageError, ValueError):
            return str(name)  # a name or value of another vip: shown as recorded
        by_preset.setdefault(chosen, []).append(k)
    label = {"fewshot": "few-shot", "paper": "the paper's"}
    parts = []
    for chosen, counts in by_preset.items():
        numbers = [str(k) for k in counts if k not in (None, "all")]
        where = [f"at {', '.join(numbers)} shot{'s' if numbers != ['1'] else ''}"] if numbers else []
        where += ["with all images"] if len(numbers) < len(counts) else []
        parts.append(f"{label.get(chosen.name, chosen.name)} {' and '.join(where)} ({chosen.epochs} epochs, "
                     f"{chosen.batch_size} images a step, learning rate {chosen.lr:g})")
    return f"{name}: " + "; ".join(parts) if parts else str(name)
