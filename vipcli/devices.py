"""Choosing the torch device: `auto` prefers CUDA, then MPS, then the CPU."""

from __future__ import annotations

from vipcli.errors import UsageError, VipError

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
        return _cuda_device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple MPS is not available here", "use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}'", "choose one of auto, cpu, cuda, cuda:N (N the GPU's number) or mps")


def _cuda_device(name: str):
    """`cuda` or `cuda:N` as a torch.device, N one of this machine's GPUs; a UsageError naming them otherwise."""
    import re

    import torch

    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UsageError(f"unknown device '{name}'", "write cuda, or cuda:N with N the GPU's number (cuda:0)")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA GPU is visible to torch", "use --device cpu or auto")
    count = torch.cuda.device_count()
    if match[1] is not None and int(match[1]) >= count:
        listed = ", ".join(f"cuda:{index}" for index in range(count))
        raise UsageError(f"--device {name}: this machine has {count} CUDA {'GPU' if count == 1 else 'GPUs'} "
                         f"visible to torch ({listed})", "pass one of them, or cuda")
    return torch.device(name)


def where_run(device) -> dict[str, str]:
    """Where a run or a benchmark row ran, as metrics.json and results.json record it:
    {"device": "cuda:0", "machine": "x86_64, NVIDIA H200"} (the GPU's name on CUDA)."""
    import platform

    import torch

    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    name = gpu_name(device)
    return {"device": str(torch.device(device)), "machine": f"{machine}, {name}" if name else machine}


def gpu_name(device) -> str | None:
    """The name of CUDA `device` ("NVIDIA H200"); None for another device, or one that cannot be asked."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return None
    try:
        return torch.cuda.get_device_name(device)
    except (RuntimeError, AssertionError):
        return None


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


def out_of_memory(error: BaseException) -> VipError | None:
    """The one-line error for a GPU that ran out of memory (CUDA, or Apple MPS), naming what to lower; None
    for any other error. Where it happened is in the progress lines above it."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(error, RuntimeError):
        return None
    cuda = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    said = str(error).strip().splitlines()[0] if str(error).strip() else ""
    apple = "MPS backend out of memory" in said
    if not ((cuda is not None and isinstance(error, cuda)) or apple):
        return None
    said = said.split(". ")[0]  # "CUDA out of memory", without the allocator's figures
    free = ("quit the apps that hold the Mac's memory (Activity Monitor's Memory tab lists them), which its GPU "
            "shares" if apple else "free the GPU (nvidia-smi lists what holds it)")
    return VipError(f"the GPU ran out of memory ({said})",
                    f"pass a smaller --encode-batch (images per encoder call, 64 by default), or {free}; README's "
                    "'Out of memory' lists the rest")
