"""CUDA graphs for the text tower's training step.

A prompt-learning step pushes a few short prompts through a frozen 12-layer text tower, forward
and backward: several hundred small kernels whose launch costs more host time than the GPU
needs to run them. Replaying the tower's forward and backward from CUDA graphs
(`torch.cuda.make_graphed_callables`) launches each as one graph instead.

Only backbones that declare `cuda_graphs = True` (their text tower reads nothing back from the
device) are captured: vip's CLIP, transformers CLIP and SigLIP backbones; BiomedCLIP's BERT tower
checks its padding mask on the host, so it runs eagerly. One graph pair per (values of the prompt
ids, input shape), the last `MAX_GRAPHS` kept: the runs of a method over the same prompts share
one; a batched benchmark loop uses one per number of stacked runs.

Before anything is captured, one eager pass runs with CUDA's sync debug mode set to "error", so a
tower that reads from the device fails there, harmlessly, instead of in the middle of a capture
(which leaves the CUDA caching allocator unable to capture again in this process). A graph is then
trusted only after its forward and backward match the eager tower's on an input other than the
one it was captured with. A tower that reads from the device, or a mismatch, turns graphs off for
that backbone with one warning; a capture that fails anyway turns them off for the whole process.
`VIP_CUDA_GRAPHS=0` never tries.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.weak import WeakIdKeyDictionary

from vipcli.backbone import PromptParts

TOLERANCE = 1e-2  # graphed vs eager: max |difference| <= TOLERANCE * max |eager| (bf16 carries ~3 digits)
MAX_GRAPHS = 8  # graphs kept per backbone (each holds its own memory pool); the oldest is dropped
_process_failure: str | None = None  # a capture failed: graphs stay off for the rest of the process


def graph_maker(device) -> Callable | None:
    """The function that makes graphed callables on `device` (None: run eagerly).

    CUDA only, not when the environment variable VIP_CUDA_GRAPHS is off (0, false, no or off:
    `vipcli.env_flags`), and not after a capture failed in this process.
    """
    from vipcli.env_flags import env_flag

    if device.type != "cuda" or not env_flag("VIP_CUDA_GRAPHS") or _process_failure:
        return None
    return torch.cuda.make_graphed_callables


@contextlib.contextmanager
def _on_device(device, sync_debug: str | None = None):
    """On CUDA: make `device` current, keep the current stream, and optionally set the sync debug mode.

    Everything is restored on exit, whatever happened inside. A no-op on other devices (and for the
    CPU stand-ins the tests use).
    """
    if device.type != "cuda":
        yield
        return
    with torch.cuda.device(device):
        stream = torch.cuda.current_stream(device)
        previous = torch.cuda.get_sync_debug_mode()
        try:
            if sync_debug is not None:
                torch.cuda.set_sync_debug_mode(sync_debug)
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)
            torch.cuda.set_stream(stream)


def first_line(error: BaseException) -> str:
    """`Type: message`, first line only (CUDA errors add lines of advice)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


@dataclass
class _Graph:
    """One captured tower: the ids it read at capture (kept alive), the graphed callable, and
    whether a forward replay still awaits its backward (the graph's activations are in use)."""

    ids: torch.Tensor
    graphed: Callable
    in_flight: bool = False


class GraphedTextTower:
    """`backbone.encode_text_embeds(embeds, ids)` for training steps, from CUDA graphs once checked.

    Graphs are keyed by the content of the prompt ids (not the tensor), the input shape and the
    autocast state, so every run of one method over the same prompts, and every batched stack of
    the same size, replays the same graph. A graph replays only when its last forward has had its
    backward: a second call before that (a method that encodes prompts twice in one loss) runs
    eagerly, since a replay would overwrite the activations the pending backward needs.
    """

    def __init__(self, backbone, maker: Callable, quiet: bool = False):
        """maker: `torch.cuda.make_graphed_callables` or a stand-in; quiet: no warning on failure."""
        self._backbone = weakref.ref(backbone)  # the tower never keeps its backbone alive
        self.name = getattr(backbone, "id", "?")
        self.maker = maker
        self.quiet = quiet
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()  # oldest first
        self.failed: str | None = None  # why graphs were turned off
        self._contents = WeakIdKeyDictionary()  # ids tensor -> digest of its shape and values

    @property
    def backbone(self):
        """The backbone whose text tower is graphed (None once it has been freed)."""
        return self._backbone()

    def __call__(self, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """[N, L, W] embeddings (requiring grad), [N, L] ids -> [N, D] features, as the eager tower."""
        if self.failed is not None:
            return self.backbone.encode_text_embeds(embeds, ids)
        key = (self._content(ids), tuple(embeds.shape), embeds.dtype, torch.is_autocast_enabled())
        entry = self.graphs.get(key)
        if entry is None:
            graphed = self._capture(embeds, ids)
            if graphed is None:
                return self.backbone.encode_text_embeds(embeds, ids)
            entry = self.graphs[key] = _Graph(ids, graphed)  # ids kept alive: the graph reads its memory
            while len(self.graphs) > MAX_GRAPHS:
                self.graphs.popitem(last=False)
        if entry.in_flight:  # its activations still await a backward: this call must not overwrite them
            return self.backbone.encode_text_embeds(embeds, ids)
        self.graphs.move_to_end(key)
        features = entry.graphed(embeds)  # [N, D], the graph's output buffer
        entry.in_flight = True
        features.register_hook(lambda grad: setattr(entry, "in_flight", False))  # backward reached it
        return features.clone()  # the buffer is overwritten by the next replay

    def _content(self, ids: torch.Tensor) -> str:
        """A digest of the ids' shape and values, read from the device once per ids tensor."""
        digest = self._contents.get(ids)
        if digest is None:
            values = ids.detach().cpu().contiguous()
            digest = hashlib.sha256(str(tuple(values.shape)).encode() + values.numpy().tobytes()).hexdigest()
            self._contents[ids] = digest
        return digest

    def _capture(self, embeds: torch.Tensor, ids: torch.Tensor):
        """Make the graphed tower for this input and check it against the eager one; None if it fails."""
        global _process_failure
        backbone_ref = self._backbone

        def tower(x: torch.Tensor) -> torch.Tensor:  # [N, L, W] -> [N, D]
            return backbone_ref().encode_text_embeds(x, ids)

        device = embeds.device
        sample = embeds.detach().clone().requires_grad_(True)  # becomes the graph's static input
        try:
            with torch.no_grad():  # a plain pass first: lazy set-ups and per-ids memos read what they need
                tower(sample)
            with _on_device(device, sync_debug="error"):  # then a host read raises here, outside any capture
                (tower(sample).float().sum()).backward()
            sample.grad = None
        except Exception as error:
            return self._turn_off(f"its text tower reads from the device ({first_line(error)})")
        try:
            with _on_device(device):
                graphed = self.maker(tower, (sample,))
        except Exception as error:  # nothing should fail after the check above; if it does, stop trying
            _process_failure = f"capturing the text tower failed ({first_line(error)})"
            return self._turn_off(_process_failure + "; graphs stay off in this process (restart it, or set "
                                  "VIP_CUDA_GRAPHS=0)")
        try:
            mismatch = self._compare(tower, graphed, embeds.detach() * 0.9 + 0.01)  # not the captured values
        except Exception as error:  # e.g. out of memory in the extra passes
            mismatch = f"checking the graphed text tower failed ({first_line(error)})"
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
        from rich.markup import escape

        from vipcli import console

        self.failed = reason
        self.graphs.clear()
        if not self.quiet:
            console.warn(escape(f"CUDA graphs are off for backbone '{self.name}': {reason}; training goes on without "
                                "them (VIP_CUDA_GRAPHS=0 skips trying)"))  # the reason quotes the plugin's errors
        return None


_towers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backbone -> GraphedTextTower


def run_text_tower(backbone, prompts, ids: torch.Tensor) -> torch.Tensor:
    """The text tower over prompt embeddings: graphed for training steps on CUDA, eager otherwise.

    Args:
        prompts: [N, L, W] token embeddings with learned context spliced in, or the same as
            `vipcli.backbone.PromptParts` (leading tokens shared within groups), which the eager
            path hands to `backbone.encode_text_parts` and a CUDA graph reads spelled out.
        ids: [N, L] their token ids; pass the same tensor every step (e.g. `PromptBank.ids`).
    Returns:
        [N, D] text features (unnormalised).
    """
    parts = prompts if isinstance(prompts, PromptParts) else None
    if getattr(backbone, "plain_text_tower", False):  # the authors' way (--reference): spelled out, eager
        return backbone.encode_text_embeds(parts.embeds() if parts is not None else prompts, ids)
    leaf = parts.prefixes if parts is not None else prompts
    tower = None
    if leaf.requires_grad and torch.is_grad_enabled() and getattr(backbone, "cuda_graphs", False):
        tower = _towers.get(backbone)
        if tower is None:
            maker = graph_maker(leaf.device)
            if maker is not None:
                tower = _towers[backbone] = GraphedTextTower(backbone, maker)
    if tower is not None:
        return tower(parts.embeds() if parts is not None else prompts, ids)
    if parts is not None:
        encode = getattr(backbone, "encode_text_parts", None)  # a plugin that is not a Backbone subclass lacks it
        return encode(parts, ids) if encode is not None else backbone.encode_text_embeds(parts.embeds(), ids)
    return backbone.encode_text_embeds(prompts, ids)


def graph_status(backbone) -> str:
    """What the last training on `backbone` did about CUDA graphs, in a few words (for metrics.json)."""
    if not getattr(backbone, "cuda_graphs", False):
        return "not declared by the backbone"
    if getattr(backbone, "plain_text_tower", False):
        return "off (the reference mode runs the plain text tower eagerly)"
    tower = _towers.get(backbone)
    if tower is None:
        if getattr(backbone, "device", None) is not None and backbone.device.type == "cuda":
            return "off (VIP_CUDA_GRAPHS=0 or an earlier failure in this process)" if graph_maker(
                backbone.device) is None else "not used (no training step)"
        return "not used (not on CUDA)"
    if tower.failed:
        return f"off: {tower.failed}"
    return f"used ({len(tower.graphs)} graph(s) kept)"
