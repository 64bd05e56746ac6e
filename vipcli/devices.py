"""Choosing the torch device: `auto` prefers CUDA, then MPS, then the CPU."""

from __future__ import annotations

from vipcli.errors import UsageError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto"):
    """Return the torch.device for `name`, failing clearly if it is not available here.

    Args:
        name: one of auto, cpu, cuda, cuda:N, mps.
    Returns:
        torch.device
    """
    import torch

    from vipcli.compat import check_torch_numpy

    check_torch_numpy()  # every command that uses torch picks its device first: fail before any work
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is visible to torch", "use --device cpu or auto")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple MPS is not available here", "use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'", f"choose one of {', '.join(DEVICE_CHOICES)}")


def autocast_dtype(device):
    """The dtype vip's autocast computes in on `device`: bfloat16 on CUDA, None (float32) elsewhere."""
    import torch

    return torch.bfloat16 if torch.device(device).type == "cuda" else None


def autocast(device):
    """bf16 autocast on CUDA, a no-op context elsewhere (see `autocast_dtype`).

    Without autocast's weight cache: the text tower's weights are frozen (the cache keeps only
    casts of trainable leaves, so it saves nothing here), and CUDA graph capture refuses it.
    """
    import contextlib

    import torch

    dtype = autocast_dtype(device)
    if dtype is not None:
        return torch.autocast(torch.device(device).type, dtype=dtype, cache_enabled=False)
    return contextlib.nullcontext()
