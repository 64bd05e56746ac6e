"""CUDA graphs for the text tower's training step.

A prompt-learning step pushes a few short prompts through a frozen 12-layer text tower, forward
and backward: several hundred small kernels whose launch costs more host time than the GPU
needs to run them. Replaying the tower's forward and backward from CUDA graphs
(`torch.cuda.make_graphed_callables`) launches each as one graph instead.

Only backbones that declare `cuda_graphs = True` (their text tower reads nothing back from the
device) are captured: vip's CLIP, transformers CLIP and SigLIP backbones; BiomedCLIP's BERT tower
checks its padding mask on the host, so it runs eagerly. One graph pair per (prompt ids, input
shape): a single run uses one; a batched benchmark loop uses one per number of stacked runs. A graph is trusted only after its first forward and
backward match the eager ones on the same input; an error while capturing (a backbone that
reads from the device inside its text tower, say) or a mismatch turns graphs off for that
backbone with one warning, and training goes on eagerly. `VIP_CUDA_GRAPHS=0` never tries.
"""

from __future__ import annotations

import os
import weakref
from typing import Callable

import torch

TOLERANCE = 1e-2  # graphed vs eager: max |difference| <= TOLERANCE * max |eager| (bf16 carries ~3 digits)


def graph_maker(device) -> Callable | None:
    """The function that makes graphed callables on `device` (None: run eagerly).

    CUDA only, and not when the environment variable VIP_CUDA_GRAPHS is 0.
    """
    if device.type != "cuda" or os.environ.get("VIP_CUDA_GRAPHS", "1").strip() == "0":
        return None
    return torch.cuda.make_graphed_callables


class GraphedTextTower:
    """`backbone.encode_text_embeds(embeds, ids)` for training steps, from CUDA graphs once checked."""

    def __init__(self, backbone, maker: Callable, quiet: bool = False):
        """maker: `torch.cuda.make_graphed_callables` or a stand-in; quiet: no warning on failure."""
        self.backbone = backbone
        self.maker = maker
        self.quiet = quiet
        self.graphs: dict[tuple, tuple] = {}  # key -> (ids kept alive, graphed callable)
        self.failed: str | None = None  # why graphs were turned off

    def __call__(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] embeddings (requiring grad), [N, L] ids -> [N, D] features, as the eager tower."""
        if self.failed is not None:
            return self.backbone.encode_text_embeds(embeds, ids)
        key = (id(ids), tuple(embeds.shape), embeds.dtype, torch.is_autocast_enabled("cuda"))
        entry = self.graphs.get(key)
        if entry is None or entry[0] is not ids:
            graphed = self._capture(embeds, ids)
            if graphed is None:
                return self.backbone.encode_text_embeds(embeds, ids)
            self.graphs[key] = entry = (ids, graphed)
        return entry[1](embeds)

    def _capture(self, embeds: torch.Tensor, ids: torch.Tensor):
        """Make the graphed tower for this input and check it against the eager one; None if it fails."""

        def tower(x: torch.Tensor) -> torch.Tensor:  # [N, L, W] -> [N, D]
            return self.backbone.encode_text_embeds(x, ids)

        try:
            sample = embeds.detach().clone().requires_grad_(True)  # becomes the graph's static input
            graphed = self.maker(tower, (sample,))
            mismatch = self._compare(tower, graphed, embeds.detach())
        except Exception as error:  # a capture can fail in many ways; the eager tower still works
            return self._turn_off(f"capturing the text tower failed ({type(error).__name__}: {error})")
        if mismatch:
            return self._turn_off(mismatch)
        return graphed

    @staticmethod
    def _compare(tower, graphed, value: torch.Tensor) -> str | None:
        """Run eager and graphed forward and backward on `value`; describe any difference."""
        results = []
        for fn in (tower, graphed):
            x = value.clone().requires_grad_(True)
            out = fn(x)  # [N, D]
            weights = torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape).to(out.dtype)
            (grad,) = torch.autograd.grad((out * weights).sum(), x)
            results.append((out.detach().float().clone(), grad.float().clone()))
        for name, eager, replayed in zip(("features", "gradients"), results[0], results[1]):
            scale = float(eager.abs().max()) or 1.0
            difference = float((eager - replayed).abs().max())
            if not difference <= TOLERANCE * scale:
                return f"the graphed text tower's {name} differ from the eager ones by {difference:.3g} (scale {scale:.3g})"
        return None

    def _turn_off(self, reason: str) -> None:
        from vipcli import console

        self.failed = reason
        self.graphs.clear()
        if not self.quiet:
            console.warn(f"CUDA graphs are off for backbone '{getattr(self.backbone, 'id', '?')}': {reason}; "
                         "training goes on without them (VIP_CUDA_GRAPHS=0 skips trying)")
        return None


_towers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backbone -> GraphedTextTower


def run_text_tower(backbone, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The text tower over prompt embeddings: graphed for training steps on CUDA, eager otherwise.

    Args:
        embeds: [N, L, W] token embeddings with learned context spliced in.
        ids: [N, L] their token ids; pass the same tensor every step (e.g. `PromptBank.ids`).
    Returns:
        [N, D] text features (unnormalised).
    """
    if not (embeds.requires_grad and torch.is_grad_enabled() and getattr(backbone, "cuda_graphs", False)):
        return backbone.encode_text_embeds(embeds, ids)
    tower = _towers.get(backbone)
    if tower is None:
        maker = graph_maker(embeds.device)
        if maker is None:
            return backbone.encode_text_embeds(embeds, ids)
        tower = _towers[backbone] = GraphedTextTower(backbone, maker)
    return tower(embeds, ids)
